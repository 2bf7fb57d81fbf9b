// Users (admin): list, create, change role, disable or enable, reset password, delete.

import { get, post, patch, del } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, toast, confirmDialog, put } from '../dom.js';
import { signedOut } from '../app.js';

const ROLES = ['viewer', 'operator', 'admin'];
// Changing your own role or disabling yourself ends every session of yours (the server revokes
// them): ask first, and say so on the login page after.
const ENDS_SESSION = 'Every session of yours ends at once: you will be signed out.';

export async function render(page, params, ctx) {
  const errors = errorBox();
  const box = h('div', {});
  const load = async () => {
    const res = await get('/users');
    put(clear(box), table(['User', 'Role', 'Status', 'Created', 'Actions'], res.items.map((u) => {
      const self = u.id === ctx.session.me.user.id;
      const role = h('select', { 'aria-label': `Role of ${u.username}`, 'data-mutates': '' }, ROLES.map((r) => h('option', { value: r }, r)));
      role.value = u.role;
      role.addEventListener('change', async () => {
        const to = role.value;
        if (self && !(await confirmDialog(`Make yourself ${to}? ${ENDS_SESSION}`, `Become ${to}`))) {
          role.value = u.role;
          return;
        }
        const left = await busy(role, errors, async () => {
          await patch(`/users/${u.id}`, { role: to });
          if (self) { signedOut(`You made yourself ${to}. Sign in again.`); return true; }
          toast(`${u.username} is now ${to}`);
          return false;
        });
        // Also after a refusal: the select shows the role as it is.
        if (!left) await load();
      });
      const toggle = h('button', { type: 'button', 'data-mutates': '' }, u.disabled ? 'Enable' : 'Disable');
      toggle.addEventListener('click', async () => {
        if (self && !u.disabled && !(await confirmDialog(`Disable your own account? ${ENDS_SESSION} Only another admin can enable you again.`, 'Disable me'))) return;
        const left = await busy(toggle, errors, async () => {
          await patch(`/users/${u.id}`, { disabled: !u.disabled });
          if (self) { signedOut('You disabled your own account.'); return true; }
          return false;
        });
        if (!left) await load();
      });
      const reset = h('button', { type: 'button', 'data-mutates': '' }, 'Set password');
      reset.addEventListener('click', async () => {
        const pw = h('input', { type: 'password', autocomplete: 'new-password', minlength: 8 });
        const ok = h('button', { type: 'submit', class: 'primary' }, 'Set');
        const no = h('button', { type: 'button' }, 'Cancel');
        const err = errorBox();
        const dlg = h('dialog', { 'aria-label': `New password for ${u.username}` },
          h('form', { method: 'dialog', class: 'form' }, h('h2', {}, `New password for ${u.username}`), err, field('Password (at least 8 characters)', pw), h('div', { class: 'row' }, ok, no)));
        no.addEventListener('click', () => dlg.close());
        // However it closes (Set, Cancel or Escape), the dialog leaves the page.
        dlg.addEventListener('close', () => dlg.remove());
        dlg.querySelector('form').addEventListener('submit', (e) => {
          e.preventDefault();
          busy(ok, err, async () => { await patch(`/users/${u.id}`, { password: pw.value }); dlg.close(); toast('Password changed'); });
        });
        document.body.append(dlg);
        dlg.showModal();
        pw.focus();
      });
      const rm = h('button', { type: 'button', class: 'danger', 'data-mutates': '' }, 'Delete');
      rm.addEventListener('click', async () => {
        if (!(await confirmDialog(`Delete user ${u.username}? Their tokens stop working.`, 'Delete'))) return;
        await busy(rm, errors, async () => { await del(`/users/${u.id}`); await load(); });
      });
      return [h('strong', {}, u.username, self ? ' (you)' : ''), role, u.disabled ? 'disabled' : 'active', timeEl(u.created_at),
        h('div', { class: 'row' }, toggle, reset, self ? null : rm)];
    })));
  };
  const username = h('input', { name: 'new-username', required: true, autocomplete: 'off' });
  const password = h('input', { name: 'new-password', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const role = h('select', { name: 'new-role' }, ROLES.map((r) => h('option', { value: r }, r)));
  const create = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, 'Create user');
  const ferr = errorBox();
  const form = h('form', { class: 'card form', id: 'user-form' }, h('h2', {}, 'Add a user'), ferr,
    field('Username', username), field('Password', password, 'At least 8 characters.'), field('Role', role), create);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(create, ferr, async () => {
      await post('/users', { username: username.value.trim(), password: password.value, role: role.value });
      toast(`User ${username.value} created`);
      form.reset();
      await load();
    });
  });
  put(page, heading('Users'), errors, h('div', { class: 'grid2' }, h('section', { class: 'card' }, box), form));
  await load();
}
