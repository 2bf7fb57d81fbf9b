// Small DOM helpers: element builders, formatting (in the UI's language), notices and
// confirmations.

import { t, label, locale, fmtNumber } from './i18n.js';

/** Creates an element: h('button', {class: 'x', onclick: fn}, 'text', child...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  let value;
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') value = v;
    else if (k === 'checked' || k === 'selected') el[k] = true;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  if (value !== undefined) el.value = value;
  return el;
}

/** Creates an SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Appends children to el, skipping null, undefined and false (native append would print them). */
export function put(el, ...children) {
  return append(el, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let uid = 0;
/** A labelled form field: the label names the control for screen readers and tests. */
export function field(label, control, hint) {
  if (!control.id) control.id = `f${++uid}`;
  const hintEl = hint ? h('small', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl);
}

/** A `datetime-local` value as the API's RFC 3339 UTC form (an unparseable one as typed, for the
 * server to name). */
export function fromLocalInput(value) {
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** An RFC 3339 time as a `datetime-local` value in local time ('' for none or a bad one). */
export function toLocalInput(iso) {
  const d = iso ? new Date(iso) : null;
  if (!d || Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fmtTime(v) {
  if (!v) return '—';
  const d = typeof v === 'number' ? new Date(v) : new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  return d.toLocaleString(locale(), {
    year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

export function timeEl(v) {
  return v ? h('time', { datetime: typeof v === 'number' ? new Date(v).toISOString() : v }, fmtTime(v)) : '—';
}

/** How long ago `ms` was, in words of the UI's language ("5 min. ago", "5分钟前"). */
export function fmtAgo(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'always', style: 'narrow' });
  if (s < 60) return rtf.format(-s, 'second');
  if (s < 3600) return rtf.format(-Math.floor(s / 60), 'minute');
  if (s < 86400) return rtf.format(-Math.floor(s / 3600), 'hour');
  return rtf.format(-Math.floor(s / 86400), 'day');
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return t('duration.ms', { n: fmtNumber(ms) });
  const s = ms / 1000;
  if (s < 60) return t('duration.s', { n: fmtNumber(s, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) });
  const m = Math.floor(s / 60);
  if (m < 60) return t('duration.min_s', { m: fmtNumber(m), s: fmtNumber(Math.round(s % 60)) });
  return t('duration.h_min', { h: fmtNumber(Math.floor(m / 60)), m: fmtNumber(m % 60) });
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${fmtNumber(n, { maximumFractionDigits: i ? 1 : 0, minimumFractionDigits: i ? 1 : 0 })} ${units[i]}`;
}

/** A state's badge: the API value stays in the class and `data-state`, the text is translated. */
export function badge(state) {
  return h('span', { class: `badge st-${state}`, 'data-state': state }, label('state', state));
}

/** A shortened id that shows the whole id on hover. */
export function shortId(id) {
  return h('code', { title: id }, idText(id));
}

/**
 * An id short enough for a table cell that still tells ids apart: ids are UUIDv7, whose head
 * is a timestamp shared by every id made within a minute, so the random tail is kept too.
 */
export function idText(id) {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}

/** A region for a page's error messages (role=alert so it is announced). */
export function errorBox() {
  const box = h('div', { class: 'error', role: 'alert', hidden: true });
  box.show = (err) => {
    clear(box);
    if (!err) { box.hidden = true; return; }
    const sep = t('common.colon');
    append(box, [h('strong', {}, err.title || t('common.error')), err.detail ? `${sep}${err.detail}` : (err.title ? '' : `${sep}${err.message}`)]);
    box.hidden = false;
  };
  return box;
}

/** A short-lived notice in the corner. */
export function toast(text, kind = 'ok') {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast ${kind}` }, text);
  box.append(t);
  setTimeout(() => t.remove(), 4000);
}

/** Runs `fn` with the button disabled; errors go to `errors` (an errorBox) or a toast. A
 * disabled button loses the focus to the page's body; it gets it back after, so a keyboard user
 * goes on from where they were, not from the top of the page. */
export async function busy(button, errors, fn) {
  const focused = document.activeElement === button;
  button.disabled = true;
  if (errors) errors.show(null);
  try {
    return await fn();
  } catch (e) {
    if (errors) errors.show(e);
    else toast(e.message, 'bad');
    return undefined;
  } finally {
    button.disabled = false;
    if (focused && button.isConnected && lostFocus()) button.focus();
  }
}

/** Redraws `box` with `draw()` and puts the focus back on the control of the same `data-key`
 * when one inside had it (a periodic refresh must not send a keyboard user to the top). */
export function redrawKeepingFocus(box, draw) {
  const had = box.contains(document.activeElement) ? document.activeElement.dataset.key : null;
  draw();
  if (!had || !lostFocus()) return;
  const again = [...box.querySelectorAll('[data-key]')].find((el) => el.dataset.key === had);
  if (again) again.focus();
}

/** Whether nothing has the focus (it fell back to the body). */
export function lostFocus() {
  return !document.activeElement || document.activeElement === document.body;
}

/** An accessible confirmation dialog (native <dialog>); resolves true on confirm. */
export function confirmDialog(message, confirmLabel = t('common.confirm')) {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'button', class: 'danger' }, confirmLabel);
    const cancel = h('button', { type: 'button' }, t('common.cancel'));
    const dlg = h('dialog', { class: 'confirm', 'aria-label': t('common.confirm') },
      h('p', {}, message), h('div', { class: 'row' }, ok, cancel));
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    ok.addEventListener('click', () => done(true));
    cancel.addEventListener('click', () => done(false));
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

/** A table with a caption-less header; rows are arrays of cells. */
export function table(headers, rows, empty = t('common.nothing_yet')) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
}

/** Page heading, focused after navigation so keyboard and screen reader users land on it. */
export function heading(text, ...actions) {
  return h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, text), h('div', { class: 'actions' }, actions));
}

export function link(href, text) {
  return h('a', { href }, text);
}

/** A list read page by page: `fetchPage(cursor)` answers `{ items, next_cursor }`, `show(rows)`
 * renders every row read so far. Returns the box it renders into, its "Load more" button (errors
 * go to `errors`) and `load`, which reads the next page. */
export function pagedList(fetchPage, show, errors) {
  const box = h('div', {});
  const more = h('button', { type: 'button', hidden: true }, t('common.load_more'));
  const rows = [];
  let cursor = '';
  const load = async () => {
    const res = await fetchPage(cursor);
    rows.push(...res.items);
    cursor = res.next_cursor || '';
    more.hidden = !cursor;
    put(clear(box), show(rows));
  };
  more.addEventListener('click', () => busy(more, errors, load));
  return { box, more, load };
}
