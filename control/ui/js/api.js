// The REST client. Authentication is the HttpOnly session cookie set at login; every request
// that changes state echoes the CSRF double-submit cookie in X-CSRF-Token. No token is ever kept
// in script-readable storage.
//
// A read that hangs is given up after READ_TIMEOUT_MS so the page can say so and offer a retry.
// A change waits longer (WRITE_TIMEOUT_MS) and says it may still have been made: aborting the
// request does not undo it on the server. An upload (FormData) has no bound: a large bundle on a
// slow link is slow, not hung. A 401 asks the unauthorized handler to sign in again and, when it
// did, sends the same request once more (the server refused it before acting on it).

import { t, has, label } from './i18n.js';

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

const READ_TIMEOUT_MS = 15000;
const WRITE_TIMEOUT_MS = 120000;

let onUnauthorized = null;

/** Called when the server answers 401 (session expired or revoked); resolves true when the
 * user signed in again (the request is then sent again), false when they gave up. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

function readCookie(name) {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return '';
}

/** Whether a login cookie pair is present (the session cookie itself is not readable). */
export function hasSession() {
  return readCookie('antcode_csrf') !== '';
}

/** The translated title for an HTTP status, or '' when the catalog has none. */
export function statusTitle(status) {
  return has(`http.${status}`) ? label('http', status) : '';
}

/** Short plain text of a non-JSON error body, or '' for markup (a proxy's HTML error page) or
 * anything long: the status says more than a page of HTML would. */
function plainDetail(text) {
  const s = text.trim();
  if (!s || s.length > 200 || /<[a-z!/]/i.test(s)) return '';
  return s;
}

async function problemOf(resp) {
  const type = resp.headers.get('content-type') || '';
  // The server's title is the status' English reason: the catalog's says the same in the UI's
  // language.
  let title = statusTitle(resp.status) || t('api.http_status', { status: resp.status });
  let detail = '';
  try {
    if (type.includes('json')) {
      const p = await resp.json();
      if (!statusTitle(resp.status) && typeof p.title === 'string') title = p.title;
      detail = typeof p.detail === 'string' ? p.detail : '';
    } else {
      detail = plainDetail(await resp.text());
    }
  } catch (_) {
    // An unreadable error body still leaves the status line.
  }
  if (!detail && !type.includes('json')) detail = t('api.http_status', { status: resp.status });
  return new ApiError(resp.status, title, detail);
}

/** How long a request may take before it is given up (0: no bound). */
function timeoutFor(method, payload) {
  if (method === 'GET' || method === 'HEAD') return READ_TIMEOUT_MS;
  return payload instanceof FormData ? 0 : WRITE_TIMEOUT_MS;
}

/** fetch() that gives up after `ms` (0: never) with an ApiError saying so. */
async function fetchWithin(url, init, ms) {
  if (!ms) return fetchOrThrow(url, init);
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), ms);
  try {
    return await fetchOrThrow(url, { ...init, signal: ctl.signal });
  } catch (e) {
    if (!ctl.signal.aborted) throw e;
    const read = init.method === 'GET' || init.method === 'HEAD';
    throw new ApiError(0, t('api.no_answer'), read ? t('api.timed_out') : t('api.timed_out_change'));
  } finally {
    clearTimeout(timer);
  }
}

async function fetchOrThrow(url, init) {
  try {
    return await fetch(url, init);
  } catch (e) {
    if (init.signal && init.signal.aborted) throw e;
    throw new ApiError(0, t('api.network_error'), t('api.unreachable', { error: e.message }));
  }
}

/**
 * Calls `/api/v1{path}` (or `path` itself when it starts with `/ui/`). `body` is JSON unless it
 * is a FormData; `opts.headers` are sent too. Resolves to the parsed JSON (or text with
 * {text: true}, the Response itself with {response: true}, or null for 204); rejects with an
 * ApiError carrying a title for the status and the problem+json detail. `opts.quiet401` leaves
 * a 401 to the caller (login, logout, the first /auth/me).
 */
export async function api(method, path, body, opts = {}) {
  const url = path.startsWith('/ui/') || path.startsWith('/api/') ? path : `/api/v1${path}`;
  const headers = { Accept: 'application/json', ...(opts.headers || {}) };
  let payload;
  if (body instanceof FormData) {
    payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = readCookie('antcode_csrf');
  const init = { method, headers, body: payload, credentials: 'same-origin' };
  const resp = await fetchWithin(url, init, timeoutFor(method, payload));
  if (!resp.ok) {
    const err = await problemOf(resp);
    if (resp.status === 401 && !opts.quiet401 && !opts.again && onUnauthorized && (await onUnauthorized())) {
      return api(method, path, body, { ...opts, again: true });
    }
    throw err;
  }
  if (opts.response) return resp;
  if (resp.status === 204) return null;
  if (opts.text) return resp.text();
  const type = resp.headers.get('content-type') || '';
  return type.includes('json') ? resp.json() : resp.text();
}

/**
 * Part of a text resource: `GET /api/v1{path}` with `Range: {range}`. Resolves to {bytes, start,
 * total} (a 200 answer is the whole, from 0); rejects with an ApiError (416 past the end).
 */
export async function fetchRange(path, range) {
  const resp = await api('GET', path, undefined, { headers: { Range: range }, response: true });
  const bytes = new Uint8Array(await resp.arrayBuffer());
  const m = /^bytes (\d+)-\d+\/(\d+)$/.exec(resp.headers.get('content-range') || '');
  return m ? { bytes, start: Number(m[1]), total: Number(m[2]) } : { bytes, start: 0, total: bytes.length };
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body, opts);
export const patch = (path, body) => api('PATCH', path, body);
export const del = (path) => api('DELETE', path);

/** Builds `?a=1&b=2` from the non-empty entries of an object. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Follows `next_cursor` until `max` items or the end. */
export async function getAll(path, params = {}, max = 2000) {
  const items = [];
  let cursor = '';
  for (;;) {
    const page = await get(path + query({ ...params, limit: 500, cursor }));
    items.push(...page.items);
    if (!page.next_cursor || items.length >= max) return items;
    cursor = page.next_cursor;
  }
}
