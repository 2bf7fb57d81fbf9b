// Your account: change your password; your API tokens (create, shown once; revoke).

import { get, post, patch, del } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, toast, confirmDialog, put } from '../dom.js';
import { t, label } from '../i18n.js';
import { signedOut } from '../app.js';

const SCOPES = { viewer: ['read'], operator: ['read', 'write'], admin: ['read', 'write', 'admin'] };

export async function render(page, params, ctx) {
  const me = ctx.session.me;
  const errors = errorBox();
  const box = h('div', {});
  const load = async () => {
    const res = await get('/tokens');
    // The list holds API tokens only (login sessions end with Log out).
    put(clear(box), table([t('common.name'), t('account.scopes'), t('common.created'), t('common.expires'), t('common.action')], res.items.map((tok) => {
      const rm = h('button', { type: 'button', class: 'danger', 'aria-label': t('account.revoke_label', { name: tok.name, created: tok.created_at }) }, t('common.revoke'));
      rm.addEventListener('click', async () => {
        if (!(await confirmDialog(t('account.confirm_revoke', { name: tok.name }), t('common.revoke')))) return;
        await busy(rm, errors, async () => { await del(`/tokens/${tok.id}`); toast(t('account.revoked')); await load(); });
      });
      return [tok.name, tok.scopes.map((s) => label('scope', s)).join(t('common.list_sep')), timeEl(tok.created_at), timeEl(tok.expires_at), rm];
    }), t('account.no_tokens')));
  };
  // create a token
  const name = h('input', { name: 'token-name', required: true, maxlength: 100 });
  const checks = SCOPES[me.role].map((s) => h('input', { type: 'checkbox', name: 'scope', value: s, checked: s === 'read' }));
  const days = h('input', { name: 'token-days', type: 'number', min: 1, max: 366, value: '90' });
  const make = h('button', { type: 'submit', class: 'primary' }, t('account.create_token'));
  const shown = h('div', { class: 'secret', hidden: true, role: 'status' });
  const terr = errorBox();
  const tform = h('form', { class: 'card form', id: 'token-form' }, h('h2', {}, t('account.new_token')), terr,
    field(t('common.name'), name),
    h('fieldset', {}, h('legend', {}, t('account.scopes')), checks.map((c) => h('label', { class: 'check' }, c, ` ${label('scope', c.value)}`))),
    field(t('account.expires_in'), days), make, shown);
  tform.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(make, terr, async () => {
      const scopes = checks.filter((c) => c.checked).map((c) => c.value);
      const tok = await post('/tokens', { name: name.value.trim(), scopes, expires_in_s: Number(days.value) * 86400 });
      const value = h('input', { readonly: true, value: tok.token, class: 'mono', 'aria-label': t('account.new_token_label') });
      const copy = h('button', { type: 'button' }, t('common.copy'));
      copy.addEventListener('click', async () => {
        try { await navigator.clipboard.writeText(tok.token); toast(t('common.copied')); } catch (_) { value.select(); }
      });
      put(clear(shown), h('p', {}, h('strong', {}, t('account.copy_now'))), h('div', { class: 'row' }, value, copy));
      shown.hidden = false;
      tform.querySelector('input[name=token-name]').value = '';
      await load();
    });
  });
  // change password (the current one is required; every session, this one included, and every
  // token of the account is revoked, so the page goes to the login page)
  const pw0 = h('input', { name: 'pw0', type: 'password', required: true, autocomplete: 'current-password' });
  const pw1 = h('input', { name: 'pw1', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const pw2 = h('input', { name: 'pw2', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const change = h('button', { type: 'submit' }, t('account.change_password'));
  const perr = errorBox();
  const pform = h('form', { class: 'card form', id: 'password-form' }, h('h2', {}, t('account.change_yours')), perr,
    field(t('account.current_password'), pw0), field(t('account.new_password'), pw1, t('common.at_least_8')), field(t('account.repeat'), pw2), change);
  pform.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(change, perr, async () => {
      if (pw1.value !== pw2.value) throw Object.assign(new Error(t('account.differ')), { title: t('common.password'), detail: t('account.differ') });
      await patch(`/users/${me.user.id}`, { password: pw1.value, current_password: pw0.value });
      pform.reset();
      toast(t('account.password_changed'));
      // Every session ended, this one too, and on purpose: the login page, not the dialog that
      // renews a session that ran out.
      signedOut(t('account.changed_sign_in'));
    });
  });
  put(page, heading(t('nav.account')), errors,
    h('p', {}, t('account.signed_in_as', { name: me.user.username, role: label('role', me.role) })),
    h('section', { class: 'card' }, h('h2', {}, t('account.your_tokens')), box),
    h('div', { class: 'grid2' }, tform, pform));
  await load();
}
