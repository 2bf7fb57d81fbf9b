// The single-page app: hash routes, the navigation, who is signed in and what they may do.
//
// While a page loads it shows a skeleton; a page still loading after SLOW_MS says the server is
// not answering and offers to retry (a read gives up by itself later, see api.js). When the
// session ends under a signed-in user, a dialog signs them in again in place, so a half-filled
// form survives and the refused request is sent again.

import { get, post, hasSession, setUnauthorizedHandler } from './api.js';
import { h, clear, errorBox, field, put } from './dom.js';
import { t, label, locale, setLocale, translateStatic, LANGUAGES } from './i18n.js';

const RANK = { viewer: 0, operator: 1, admin: 2 };

/** What every page gets: the current user and `can(role)`. */
export const session = {
  me: null,
  // Why the last session ended, for the login page to say once (`signedOut`).
  note: null,
  can(role) {
    return !!this.me && RANK[this.me.role] >= RANK[role];
  },
};

// [pattern, module, least role]
const ROUTES = [
  [/^\/login$/, 'login', null],
  [/^\/$/, 'dashboard', 'viewer'],
  [/^\/projects$/, 'projects', 'viewer'],
  [/^\/projects\/([^/]+)$/, 'projects', 'viewer'],
  [/^\/projects\/([^/]+)\/edit$/, 'projects', 'operator'],
  [/^\/projects\/([^/]+)\/compare$/, 'versions', 'viewer'],
  [/^\/tasks$/, 'tasks', 'viewer'],
  [/^\/tasks\/new$/, 'tasks', 'operator'],
  [/^\/tasks\/([^/]+)$/, 'tasks', 'viewer'],
  [/^\/tasks\/([^/]+)\/edit$/, 'tasks', 'operator'],
  [/^\/runs$/, 'runs', 'viewer'],
  [/^\/runs\/([^/]+)$/, 'runs', 'viewer'],
  [/^\/workers$/, 'workers', 'viewer'],
  [/^\/secrets$/, 'secrets', 'viewer'],
  [/^\/users$/, 'users', 'admin'],
  [/^\/account$/, 'account', 'viewer'],
  [/^\/audit$/, 'audit', 'admin'],
  [/^\/alerts$/, 'alerts', 'operator'],
  [/^\/alerts\/channels$/, 'channels', 'admin'],
  [/^\/alerts\/rules$/, 'rules', 'operator'],
  [/^\/alerts\/deliveries$/, 'deliveries', 'operator'],
  [/^\/retention$/, 'retention', 'admin'],
];

// Built on each draw: the labels are in the current language.
const navItems = () => [
  ['#/', t('nav.dashboard'), 'viewer'],
  ['#/projects', t('nav.projects'), 'viewer'],
  ['#/tasks', t('nav.tasks'), 'viewer'],
  ['#/runs', t('nav.runs'), 'viewer'],
  ['#/workers', t('nav.workers'), 'viewer'],
  ['#/secrets', t('nav.secrets'), 'viewer'],
  ['#/alerts', t('nav.alerts'), 'operator'],
  ['#/users', t('nav.users'), 'admin'],
  ['#/audit', t('nav.audit'), 'admin'],
  ['#/retention', t('nav.retention'), 'admin'],
  ['#/account', t('nav.account'), 'viewer'],
];

let cleanup = null;
let renderSeq = 0;

// A skeleton only for a load that is not instant (no flash on a fast one).
const SKELETON_MS = 250;
const SLOW_MS = 10000;

export function navigate(path) {
  if (location.hash === `#${path}`) render();
  else location.hash = `#${path}`;
}

function currentPath() {
  const p = location.hash.replace(/^#/, '') || '/';
  return p.split('?')[0];
}

export function hashQuery() {
  const i = location.hash.indexOf('?');
  return new URLSearchParams(i >= 0 ? location.hash.slice(i + 1) : '');
}

function drawChrome() {
  const nav = document.getElementById('nav');
  const top = document.getElementById('topbar');
  const who = document.getElementById('whoami');
  clear(nav);
  clear(who);
  const signedIn = !!session.me;
  nav.hidden = !signedIn;
  top.hidden = !signedIn;
  if (!signedIn) return;
  const path = currentPath();
  const list = h('ul', {});
  for (const [href, text, role] of navItems()) {
    if (!session.can(role)) continue;
    const target = href.slice(1);
    const active = target === '/' ? path === '/' : path.startsWith(target);
    list.append(h('li', {}, h('a', { href, 'aria-current': active ? 'page' : null }, text)));
  }
  nav.append(list);
  const logout = h('button', { type: 'button', class: 'link', id: 'logout' }, t('chrome.log_out'));
  logout.addEventListener('click', async () => {
    try { await post('/auth/logout', undefined, { quiet401: true }); } catch (_) { /* the cookie is cleared either way */ }
    session.me = null;
    clear(document.getElementById('toasts'));
    navigate('/login');
  });
  who.append(h('span', {}, `${session.me.user.username} · `, h('span', { class: 'role', 'data-role': session.me.role }, label('role', session.me.role))), ' ', logout);
}

async function render() {
  const seq = ++renderSeq;
  if (cleanup) { try { cleanup(); } catch (_) { /* ignore */ } cleanup = null; }
  const main = document.getElementById('main');
  const path = currentPath();
  if (!session.me && path !== '/login') {
    navigate(path === '/' ? '/login' : `/login?next=${encodeURIComponent(path)}`);
    return;
  }
  let match = null;
  for (const [re, mod, role] of ROUTES) {
    const m = path.match(re);
    if (m) { match = { mod, role, params: m.slice(1) }; break; }
  }
  drawChrome();
  document.getElementById('nav').classList.remove('open');
  document.getElementById('menu-toggle').setAttribute('aria-expanded', 'false');
  clear(main);
  const page = h('div', { class: 'page', 'aria-busy': 'true' });
  main.append(page);
  if (!match) {
    page.append(h('h1', { tabindex: '-1' }, t('app.not_found')), h('p', {}, t('app.no_page'), ' ', h('a', { href: '#/' }, t('app.go_dashboard'))));
  } else if (match.role && !session.can(match.role)) {
    page.append(h('h1', { tabindex: '-1' }, t('app.not_allowed')), h('p', {}, t('app.needs_role', { role: label('role', match.role), yours: label('role', session.me.role) })));
  } else {
    const waiting = loadingState(main, seq);
    try {
      await renderPage(page, match, path, seq);
    } finally {
      waiting.done();
    }
    if (seq !== renderSeq) return;
  }
  page.setAttribute('aria-busy', 'false');
  const title = page.querySelector('h1');
  document.title = title ? `${title.textContent} · AntCode` : 'AntCode';
  if (title && document.activeElement === document.body) title.focus({ preventScroll: true });
}

/** Whether trying again could help: no answer, or the server (or a proxy) failed for now. */
function mayPass(e) {
  const status = e && typeof e.status === 'number' ? e.status : 0;
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

/** A button that draws the current page again. */
function retryButton() {
  return h('button', { type: 'button', class: 'primary', id: 'retry-page' }, t('app.retry'));
}

/** What `main` shows while render `seq` loads: after SKELETON_MS a skeleton, after SLOW_MS a
 * notice that the server is not answering with a Retry button. `done()` takes both away. */
function loadingState(main, seq) {
  const box = h('div', { id: 'loading', class: 'loading' });
  // A render that was replaced (another page, a retry) never draws into the new one.
  const skeleton = setTimeout(() => {
    if (seq !== renderSeq) return;
    box.append(h('div', { class: 'skeleton', 'aria-hidden': 'true' }, h('span'), h('span'), h('span')),
      h('p', { role: 'status' }, t('app.loading')));
    main.append(box);
  }, SKELETON_MS);
  const slow = setTimeout(() => {
    if (seq !== renderSeq) return;
    const retry = retryButton();
    retry.addEventListener('click', render);
    put(clear(box), h('div', { class: 'error', role: 'alert', id: 'not-answering' },
      h('strong', {}, t('app.not_answering')), ' ', t('app.not_answering_detail')), retry);
    if (!box.isConnected) main.append(box);
  }, SLOW_MS);
  return {
    done() {
      clearTimeout(skeleton);
      clearTimeout(slow);
      box.remove();
    },
  };
}

async function renderPage(page, match, path, seq) {
  try {
    const mod = await import(`./pages/${match.mod}.js`);
    if (seq !== renderSeq) return;
    const ret = await mod.render(page, match.params, { path, session, navigate });
    if (seq !== renderSeq) { if (typeof ret === 'function') ret(); return; }
    if (typeof ret === 'function') cleanup = ret;
  } catch (e) {
    if (seq !== renderSeq) return;
    const box = errorBox();
    box.id = 'load-error';
    box.show(e);
    // A page that failed to load has no heading of its own: the error is what it says.
    if (!page.querySelector('h1')) page.append(h('h1', { tabindex: '-1' }, t('app.load_failed')));
    page.append(box);
    if (mayPass(e)) {
      const retry = retryButton();
      retry.addEventListener('click', render);
      page.append(retry);
    }
  }
}

/** Leaves the session: the login page says `note` (why) and then goes back to `next`. */
export function signedOut(note, next) {
  session.me = null;
  session.note = note;
  navigate(next && next !== '/login' ? `/login?next=${encodeURIComponent(next)}` : '/login');
}

/** After a login: remember who it is and go to `next` (or the dashboard). */
export async function signedIn(next) {
  session.me = await get('/auth/me');
  navigate(next && next !== '/login' ? next : '/');
}

let asking = null;

/**
 * The session ended under a signed-in user: a dialog signs them in again without leaving the
 * page. Resolves true once signed in (callers send their request again), false when the user
 * gave up (they go to the login page) or nobody was signed in. Requests refused meanwhile wait
 * for the same dialog.
 */
function reauthenticate() {
  if (!session.me) return Promise.resolve(false);
  asking ||= reauthDialog().finally(() => { asking = null; });
  return asking;
}

function reauthDialog() {
  return new Promise((resolve) => {
    const user = h('input', { name: 'reauth-username', autocomplete: 'username', required: true, autocapitalize: 'none', value: session.me.user.username });
    const pass = h('input', { name: 'reauth-password', type: 'password', autocomplete: 'current-password', required: true });
    const submit = h('button', { type: 'submit', class: 'primary' }, t('login.sign_in'));
    const cancel = h('button', { type: 'button' }, t('common.cancel'));
    const errors = errorBox();
    const dlg = h('dialog', { class: 'reauth', id: 'reauth', 'aria-labelledby': 'reauth-title' },
      h('form', { class: 'form' }, h('h2', { id: 'reauth-title' }, t('app.session_expired')),
        h('p', {}, t('app.session_expired_detail')), errors,
        field(t('common.username'), user), field(t('common.password'), pass), h('div', { class: 'row' }, submit, cancel)));
    const done = (ok) => { dlg.close(); dlg.remove(); resolve(ok); };
    const giveUp = () => { done(false); signedOut(t('app.session_ended'), currentPath()); };
    cancel.addEventListener('click', giveUp);
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); giveUp(); });
    dlg.querySelector('form').addEventListener('submit', async (e) => {
      e.preventDefault();
      submit.disabled = true;
      errors.show(null);
      try {
        await post('/auth/login', { username: user.value.trim(), password: pass.value }, { quiet401: true });
        session.me = await get('/auth/me', { quiet401: true });
        drawChrome();
        done(true);
      } catch (err) {
        errors.show(err);
        pass.focus();
      } finally {
        submit.disabled = false;
      }
    });
    document.body.append(dlg);
    dlg.showModal();
    (user.value ? pass : user).focus();
  });
}

/** The header's language switch: re-translates the static page and redraws the current one. */
function languageSwitch() {
  const select = document.getElementById('lang');
  for (const [value, name] of LANGUAGES) select.append(h('option', { value, lang: value }, name));
  select.value = locale();
  select.addEventListener('change', () => {
    setLocale(select.value);
    translateStatic();
    render();
  });
}

async function boot() {
  translateStatic();
  languageSwitch();
  setUnauthorizedHandler(reauthenticate);
  // The skip link must not follow its href: `#main` would replace the route (a "Not found").
  document.querySelector('a.skip').addEventListener('click', (e) => {
    e.preventDefault();
    const main = document.getElementById('main');
    const title = main.querySelector('h1');
    (title || main).focus();
  });
  document.getElementById('menu-toggle').addEventListener('click', (e) => {
    const nav = document.getElementById('nav');
    const open = nav.classList.toggle('open');
    e.currentTarget.setAttribute('aria-expanded', String(open));
  });
  // Without the CSRF cookie there is no session: skip the /auth/me round trip (and its 401).
  if (hasSession()) {
    try {
      session.me = await get('/auth/me', { quiet401: true });
    } catch (_) {
      session.me = null;
    }
  }
  window.addEventListener('hashchange', render);
  render();
}

boot();
