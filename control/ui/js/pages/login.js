// The sign-in form. Login sets the HttpOnly session cookie and the CSRF cookie.

import { post } from '../api.js';
import { h, field, errorBox, busy, put } from '../dom.js';
import { signedIn, hashQuery, session } from '../app.js';
import { t, locale, setLocale, translateStatic, LANGUAGES } from '../i18n.js';

export async function render(page, params, ctx) {
  if (session.me) {
    await signedIn('/');
    return;
  }
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, t('login.sign_in'));
  const errors = errorBox();
  const note = session.note ? h('p', { id: 'login-note', role: 'status' }, session.note) : null;
  session.note = null;
  const form = h('form', { class: 'login card', id: 'login-form' },
    h('h1', { tabindex: '-1' }, t('login.title')),
    note,
    errors,
    field(t('common.username'), user),
    field(t('common.password'), pass),
    submit);
  // The header (and its switch) is hidden here: the same choice, before signing in.
  const lang = h('select', { id: 'login-lang', name: 'lang' }, LANGUAGES.map(([value, name]) => h('option', { value, lang: value }, name)));
  lang.value = locale();
  lang.addEventListener('change', () => {
    setLocale(lang.value);
    translateStatic();
    ctx.navigate(location.hash.slice(1) || '/login');
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, errors, async () => {
      await post('/auth/login', { username: user.value.trim(), password: pass.value }, { quiet401: true });
      await signedIn(hashQuery().get('next'));
    });
  });
  put(page, form, h('div', { class: 'login-lang' }, field(t('chrome.language'), lang)));
  user.focus();
}
