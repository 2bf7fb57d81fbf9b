// The REST client. Authentication is the HttpOnly session cookie set at login; every request
// that changes state echoes the CSRF double-submit cookie in X-CSRF-Token. No token is ever kept
// in script-readable storage.

import { t } from './i18n.js';

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

let onUnauthorized = null;

/** Called when the server answers 401 (session expired or revoked). */
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

async function problemOf(resp) {
  const type = resp.headers.get('content-type') || '';
  let title = resp.statusText || `HTTP ${resp.status}`;
  let detail = '';
  try {
    if (type.includes('json')) {
      const p = await resp.json();
      title = p.title || title;
      detail = p.detail || '';
    } else {
      detail = (await resp.text()).slice(0, 300);
    }
  } catch (_) {
    // An unreadable error body still leaves the status line.
  }
  return new ApiError(resp.status, title, detail);
}

/**
 * Calls `/api/v1{path}` (or `path` itself when it starts with `/ui/`). `body` is JSON unless it
 * is a FormData; `opts.headers` are sent too. Resolves to the parsed JSON (or text with
 * {text: true}, the Response itself with {response: true}, or null for 204); rejects with an
 * ApiError carrying the problem+json title and detail.
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
  let resp;
  try {
    resp = await fetch(url, { method, headers, body: payload, credentials: 'same-origin' });
  } catch (e) {
    throw new ApiError(0, t('api.network_error'), t('api.unreachable', { error: e.message }));
  }
  if (!resp.ok) {
    const err = await problemOf(resp);
    if (resp.status === 401 && !opts.quiet401 && onUnauthorized) onUnauthorized();
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
