// Users (admin): list, create, change role, disable or enable, reset password, delete.

import { get, post, patch, del } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, toast, confirmDialog, put } from '../dom.js';
import { t, label } from '../i18n.js';

const ROLES = ['viewer', 'operator', 'admin'];
// Lowering a role or disabling a user takes something away at once (and ends their sessions):
// the page asks first. Your own row offers neither: an admin who demoted or disabled themselves
// would be locked out of this page, and only another admin can undo it.

export async function render(page, params, ctx) {
  const errors = errorBox();
  const box = h('div', {});
  const load = async () => {
    const res = await get('/users');
    put(clear(box), table([t('users.user'), t('common.role'), t('common.status'), t('common.created'), t('common.actions')], res.items.map((u) => {
      const self = u.id === ctx.session.me.user.id;
      const role = h('select', { 'aria-label': t('users.role_of', { name: u.username }), 'data-mutates': '' }, ROLES.map((r) => h('option', { value: r }, label('role', r))));
      role.value = u.role;
      const why = self ? h('small', { class: 'hint', id: `own-role-${u.id}` }, t('users.own_role')) : null;
      if (self) {
        role.disabled = true;
        role.title = why.textContent;
        role.setAttribute('aria-describedby', why.id);
      }
      role.addEventListener('change', async () => {
        const to = role.value;
        const lower = ROLES.indexOf(to) < ROLES.indexOf(u.role);
        if (lower && !(await confirmDialog(t('users.confirm_demote', { name: u.username, from: label('role', u.role), to: label('role', to) }), t('users.demote')))) {
          role.value = u.role;
          return;
        }
        await busy(role, errors, async () => {
          await patch(`/users/${u.id}`, { role: to });
          toast(t('users.now_role', { name: u.username, role: label('role', to) }));
        });
        // Also after a refusal: the select shows the role as it is.
        await load();
      });
      const toggle = self ? null : h('button', { type: 'button', 'data-mutates': '' }, u.disabled ? t('common.enable') : t('common.disable'));
      if (toggle) toggle.addEventListener('click', async () => {
        if (!u.disabled && !(await confirmDialog(t('users.confirm_disable', { name: u.username }), t('common.disable')))) return;
        await busy(toggle, errors, () => patch(`/users/${u.id}`, { disabled: !u.disabled }));
        await load();
      });
      const reset = h('button', { type: 'button', 'data-mutates': '' }, t('users.set_password'));
      reset.addEventListener('click', async () => {
        const pw = h('input', { type: 'password', autocomplete: 'new-password', minlength: 8 });
        const ok = h('button', { type: 'submit', class: 'primary' }, t('users.set'));
        const no = h('button', { type: 'button' }, t('common.cancel'));
        const err = errorBox();
        const dlg = h('dialog', { 'aria-label': t('users.new_password_for', { name: u.username }) },
          h('form', { method: 'dialog', class: 'form' }, h('h2', {}, t('users.new_password_for', { name: u.username })), err, field(t('users.password_8'), pw), h('div', { class: 'row' }, ok, no)));
        no.addEventListener('click', () => dlg.close());
        // However it closes (Set, Cancel or Escape), the dialog leaves the page.
        dlg.addEventListener('close', () => dlg.remove());
        dlg.querySelector('form').addEventListener('submit', (e) => {
          e.preventDefault();
          busy(ok, err, async () => { await patch(`/users/${u.id}`, { password: pw.value }); dlg.close(); toast(t('users.password_changed')); });
        });
        document.body.append(dlg);
        dlg.showModal();
        pw.focus();
      });
      const rm = h('button', { type: 'button', class: 'danger', 'data-mutates': '' }, t('common.delete'));
      rm.addEventListener('click', async () => {
        if (!(await confirmDialog(t('users.confirm_delete', { name: u.username }), t('common.delete')))) return;
        await busy(rm, errors, async () => { await del(`/users/${u.id}`); await load(); });
      });
      return [h('strong', {}, u.username, self ? t('users.you') : ''), h('div', {}, role, why), u.disabled ? t('users.disabled') : t('common.active'), timeEl(u.created_at),
        h('div', { class: 'row' }, toggle, reset, self ? null : rm)];
    })));
  };
  const username = h('input', { name: 'new-username', required: true, autocomplete: 'off' });
  const password = h('input', { name: 'new-password', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const role = h('select', { name: 'new-role' }, ROLES.map((r) => h('option', { value: r }, label('role', r))));
  const create = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, t('users.create'));
  const ferr = errorBox();
  const form = h('form', { class: 'card form', id: 'user-form' }, h('h2', {}, t('users.add')), ferr,
    field(t('common.username'), username), field(t('common.password'), password, t('common.at_least_8')), field(t('common.role'), role), create);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(create, ferr, async () => {
      await post('/users', { username: username.value.trim(), password: password.value, role: role.value });
      toast(t('users.created', { name: username.value }));
      form.reset();
      await load();
    });
  });
  put(page, heading(t('users.title')), errors, h('div', { class: 'grid2' }, h('section', { class: 'card' }, box), form));
  await load();
}
