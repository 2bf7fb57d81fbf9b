// The UI's languages: every string a page shows comes from `t(key, params)` (dotted ids, with
// `{name}` placeholders), looked up in the catalogs under ./locales/ (plain ES modules whose
// object is JSON, so the Rust test in ui.rs reads them too). A value may be `{one, other}` for
// the plural forms a language needs (picked by Intl.PluralRules on the `n` parameter).
//
// The language is the one chosen in the header (localStorage `antcode.lang`, a preference only)
// or else the browser's (`navigator.languages`: any zh → zh-CN, else en). Dates, numbers and
// relative times are formatted for it with Intl (see dom.js).

import en from './locales/en.js';
import zhCN from './locales/zh-CN.js';

const CATALOGS = { en, 'zh-CN': zhCN };

/** The languages offered by the switch, each named in its own language. */
export const LANGUAGES = [['en', 'English'], ['zh-CN', '简体中文']];

const KEY = 'antcode.lang';

/** The catalog for a browser language tag, or null when none fits. */
export function match(tag) {
  const t = String(tag || '').toLowerCase();
  if (t === 'zh' || t.startsWith('zh-')) return 'zh-CN';
  if (t === 'en' || t.startsWith('en-')) return 'en';
  return null;
}

function stored() {
  try {
    const v = localStorage.getItem(KEY);
    return v && CATALOGS[v] ? v : null;
  } catch (_) {
    return null;
  }
}

function detect() {
  const s = stored();
  if (s) return s;
  const tags = (navigator.languages && navigator.languages.length) ? navigator.languages : [navigator.language];
  for (const tag of tags) {
    const m = match(tag);
    if (m) return m;
  }
  return 'en';
}

let lang = detect();
document.documentElement.lang = lang;

/** The current language tag (`en` or `zh-CN`), also the locale for Intl. */
export function locale() {
  return lang;
}

/** Switches the language and remembers the choice (callers redraw). */
export function setLocale(next) {
  if (!CATALOGS[next]) return;
  lang = next;
  document.documentElement.lang = lang;
  try { localStorage.setItem(KEY, lang); } catch (_) { /* storage is off: it lasts as long as the page */ }
}

/** Whether the current catalog (or English) has `key`. */
export function has(key) {
  return key in CATALOGS[lang] || key in en;
}

const plurals = {};
function pluralForm(n) {
  plurals[lang] ||= new Intl.PluralRules(lang);
  return plurals[lang].select(Number(n));
}

/** The text for `key` with `{name}` replaced by `params.name`; plural values pick a form by `params.n`. */
export function t(key, params = {}) {
  let v = CATALOGS[lang][key];
  if (v === undefined) v = en[key];
  if (v === undefined) return key;
  if (typeof v === 'object') v = v[pluralForm(params.n)] ?? v.other;
  return v.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

/**
 * The label of an API value of a `group` (`state.succeeded`, `trigger.manual`, …); a value the
 * catalog does not know yet is shown as it is, underscores as spaces.
 */
export function label(group, value) {
  const key = `${group}.${value}`;
  return has(key) ? t(key) : String(value).replace(/_/g, ' ');
}

/** A number in the current language's digits and grouping. */
export function fmtNumber(n, opts) {
  return new Intl.NumberFormat(lang, opts).format(n);
}

/** Translates the static page (index.html): `data-i18n` sets the text, `data-i18n-aria` the aria-label. */
export function translateStatic(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.dataset.i18nAria));
}
