// The sign-in form. Login sets the HttpOnly session cookie and the CSRF cookie.

import { post } from '../api.js';
import { h, field, errorBox, busy, put } from '../dom.js';
import { signedIn, hashQuery, session } from '../app.js';

export async function render(page) {
  if (session.me) {
    await signedIn('/');
    return;
  }
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const errors = errorBox();
  const note = session.note ? h('p', { id: 'login-note', role: 'status' }, session.note) : null;
  session.note = null;
  const form = h('form', { class: 'login card', id: 'login-form' },
    h('h1', { tabindex: '-1' }, 'Sign in to AntCode'),
    note,
    errors,
    field('Username', user),
    field('Password', pass),
    submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, errors, async () => {
      await post('/auth/login', { username: user.value.trim(), password: pass.value }, { quiet401: true });
      await signedIn(hashQuery().get('next'));
    });
  });
  put(page, form);
  user.focus();
}
