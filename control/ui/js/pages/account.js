// Your account: change your password; your API tokens (create, shown once; revoke).

import { get, post, patch, del } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, toast, confirmDialog, put } from '../dom.js';

const SCOPES = { viewer: ['read'], operator: ['read', 'write'], admin: ['read', 'write', 'admin'] };

export async function render(page, params, ctx) {
  const me = ctx.session.me;
  const errors = errorBox();
  const box = h('div', {});
  const load = async () => {
    const res = await get('/tokens');
    // The list holds API tokens only (login sessions end with Log out).
    put(clear(box), table(['Name', 'Scopes', 'Created', 'Expires', 'Action'], res.items.map((t) => {
      const rm = h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke token ${t.name} created ${t.created_at}` }, 'Revoke');
      rm.addEventListener('click', async () => {
        if (!(await confirmDialog(`Revoke token ${t.name}? Programs using it are refused from now on.`, 'Revoke'))) return;
        await busy(rm, errors, async () => { await del(`/tokens/${t.id}`); toast('Revoked'); await load(); });
      });
      return [t.name, t.scopes.join(', '), timeEl(t.created_at), timeEl(t.expires_at), rm];
    }), 'No API tokens yet.'));
  };
  // create a token
  const name = h('input', { name: 'token-name', required: true, maxlength: 100 });
  const checks = SCOPES[me.role].map((s) => h('input', { type: 'checkbox', name: 'scope', value: s, checked: s === 'read' }));
  const days = h('input', { name: 'token-days', type: 'number', min: 1, max: 366, value: '90' });
  const make = h('button', { type: 'submit', class: 'primary' }, 'Create token');
  const shown = h('div', { class: 'secret', hidden: true, role: 'status' });
  const terr = errorBox();
  const tform = h('form', { class: 'card form', id: 'token-form' }, h('h2', {}, 'New API token'), terr,
    field('Name', name),
    h('fieldset', {}, h('legend', {}, 'Scopes'), checks.map((c) => h('label', { class: 'check' }, c, ` ${c.value}`))),
    field('Expires in (days)', days), make, shown);
  tform.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(make, terr, async () => {
      const scopes = checks.filter((c) => c.checked).map((c) => c.value);
      const t = await post('/tokens', { name: name.value.trim(), scopes, expires_in_s: Number(days.value) * 86400 });
      const value = h('input', { readonly: true, value: t.token, class: 'mono', 'aria-label': 'New token' });
      const copy = h('button', { type: 'button' }, 'Copy');
      copy.addEventListener('click', async () => {
        try { await navigator.clipboard.writeText(t.token); toast('Copied'); } catch (_) { value.select(); }
      });
      put(clear(shown), h('p', {}, h('strong', {}, 'Copy this token now: it is not shown again.')), h('div', { class: 'row' }, value, copy));
      shown.hidden = false;
      tform.querySelector('input[name=token-name]').value = '';
      await load();
    });
  });
  // change password (the current one is required; every session, this one included, and every
  // token of the account is revoked, so the next request goes back to the login page)
  const pw0 = h('input', { name: 'pw0', type: 'password', required: true, autocomplete: 'current-password' });
  const pw1 = h('input', { name: 'pw1', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const pw2 = h('input', { name: 'pw2', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const change = h('button', { type: 'submit' }, 'Change password');
  const perr = errorBox();
  const pform = h('form', { class: 'card form', id: 'password-form' }, h('h2', {}, 'Change your password'), perr,
    field('Current password', pw0), field('New password', pw1, 'At least 8 characters.'), field('Repeat it', pw2), change);
  pform.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(change, perr, async () => {
      if (pw1.value !== pw2.value) throw Object.assign(new Error('the passwords differ'), { title: 'Password', detail: 'the two passwords differ' });
      await patch(`/users/${me.user.id}`, { password: pw1.value, current_password: pw0.value });
      pform.reset();
      toast('Password changed: sign in again with the new one');
      // The session is gone: this answers 401, which leads to the login page.
      await get('/auth/me').catch(() => {});
    });
  });
  put(page, heading('Account & tokens'), errors,
    h('p', {}, `Signed in as ${me.user.username} (${me.role}).`),
    h('section', { class: 'card' }, h('h2', {}, 'Your API tokens'), box),
    h('div', { class: 'grid2' }, tform, pform));
  await load();
}
