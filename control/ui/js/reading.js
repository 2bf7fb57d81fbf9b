// A schedule in words, in the UI's language. The server reads every schedule, but in English
// (`description` of the preview and validate answers): in another language the common shapes
// are read here from the schedule itself — intervals, one-offs, and cron expressions made of
// numbers or names, ranges, lists and `*/n` — and only what this reader does not know (L, W, #,
// odd steps) is left in the server's words, marked as English.

import { t, locale } from './i18n.js';
import { fmtDuration, fmtTime } from './dom.js';

/** Sets `el` to the schedule's reading: the server's `text` in English, or this module's. */
export function describeInto(el, schedule, text) {
  const mine = locale() === 'en' ? null : readSchedule(schedule);
  el.textContent = mine || text || '';
  if (mine) el.removeAttribute('lang');
  else el.setAttribute('lang', 'en');
}

/** The schedule in words, or null when this reader does not know its shape. */
export function readSchedule(s) {
  if (!s) return null;
  if (s.kind === 'once') return t('reading.once', { at: fmtTime(s.at) });
  if (s.kind === 'interval') {
    const parts = [t('reading.every', { every: fmtDuration(s.every_s * 1000) })];
    if (s.start) parts.push(t('reading.from', { at: fmtTime(s.start) }));
    if (s.end) parts.push(t('reading.until', { at: fmtTime(s.end) }));
    return parts.join(t('common.list_sep'));
  }
  return s.kind === 'cron' ? readCron(s.cron || '') : null;
}

// Cron's names of days (0 = Sunday) and months (1 = January).
const DAY_NAMES = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];
const MONTH_NAMES = ['', 'JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];

/** One value of a field: a number, or a name of `names`; NaN when neither. */
function value(text, names) {
  if (/^\d+$/.test(text)) return Number(text);
  const i = names.indexOf(text.toUpperCase());
  return i >= 0 && names[i] ? i : NaN;
}

/** The values a cron field allows, sorted; null for `*`; undefined when unreadable here. */
function values(field, lo, hi, names = []) {
  if (field === '*') return null;
  const out = new Set();
  for (const part of field.split(',')) {
    const m = /^(\w+)(?:-(\w+))?$/.exec(part);
    if (!m) return undefined;
    const a = value(m[1], names);
    const b = m[2] === undefined ? a : value(m[2], names);
    if (Number.isNaN(a) || Number.isNaN(b)) return undefined;
    if (a < lo || b > hi || a > b) return undefined;
    for (let v = a; v <= b; v++) out.add(v);
  }
  return [...out].sort((x, y) => x - y);
}

/** `*\/n` as n, else null. */
function step(field) {
  const m = /^\*\/(\d+)$/.exec(field);
  return m ? Number(m[1]) : null;
}

/** Values in words: runs of three or more as a range, the rest listed. */
function setText(vals, name) {
  const items = [];
  for (let i = 0; i < vals.length;) {
    let j = i;
    while (j + 1 < vals.length && vals[j + 1] === vals[j] + 1) j++;
    if (j - i >= 2) items.push(t('reading.range', { from: name(vals[i]), to: name(vals[j]) }));
    else for (let k = i; k <= j; k++) items.push(name(vals[k]));
    i = j + 1;
  }
  return items.join(t('common.list_sep'));
}

/** Cron's day of the week (0 and 7 are Sunday) in the current language, short. */
function weekday(v) {
  // 2024-01-07 was a Sunday.
  return new Date(Date.UTC(2024, 0, 7 + (v % 7), 12)).toLocaleDateString(locale(), { weekday: 'short', timeZone: 'UTC' });
}

const pad = (n) => String(n).padStart(2, '0');

/** The time-of-day part: null when unreadable; `fixed` says it names clock times. */
function cronTime(min, hour) {
  const mins = values(min, 0, 59);
  const hours = values(hour, 0, 23);
  if (mins && mins.length === 1 && hours && hours.length <= 4) {
    return { fixed: true, text: t('reading.at', { times: hours.map((x) => `${pad(x)}:${pad(mins[0])}`).join(t('common.list_sep')) }) };
  }
  if (hour !== '*' && !(mins && mins.length === 1 && step(hour))) return null;
  if (min === '*') return { text: t('reading.every_minute') };
  if (step(min)) return { text: t('reading.every_n_minutes', { n: step(min) }) };
  if (!mins || mins.length !== 1) return null;
  if (hour === '*') return { text: t('reading.hourly_at', { m: mins[0] }) };
  return { text: t('reading.every_n_hours_at', { n: step(hour), m: mins[0] }) };
}

/** The days part ('' for every day); null when unreadable. */
function cronDays(dom, month, dow) {
  const days = values(dom, 1, 31);
  const weekdays = values(dow, 0, 7, DAY_NAMES);
  const months = values(month, 1, 12, MONTH_NAMES);
  if (days === undefined || weekdays === undefined || months === undefined || (days && weekdays)) return null;
  const parts = [];
  if (days) parts.push(t('reading.monthly', { days: setText(days, String) }));
  if (weekdays) parts.push(t('reading.weekly', { days: setText([...new Set(weekdays.map((v) => v % 7))].sort((a, b) => a - b), weekday) }));
  if (months) parts.push(t('reading.in_months', { months: setText(months, String) }));
  return parts.join(t('common.list_sep'));
}

function readCron(expr) {
  const f = expr.trim().split(/\s+/);
  if (f.length === 6) {
    if (f[0] !== '0') return null;
    f.shift();
  }
  if (f.length !== 5) return null;
  const time = cronTime(f[0], f[1]);
  const days = cronDays(f[2], f[3], f[4]);
  if (!time || days === null) return null;
  if (!days) return time.fixed ? t('reading.daily', { time: time.text }) : time.text;
  return t('reading.on', { days, time: time.text });
}
