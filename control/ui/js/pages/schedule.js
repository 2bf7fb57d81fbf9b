// The schedule builder: none / once / interval / cron (with presets), and the schedule in words
// with its next five fire times, computed by the server (`POST /schedules/validate`, the
// scheduler's own rules) as you type.

import { post, query } from '../api.js';
import { h, clear, field, fmtTime, put, fromLocalInput, toLocalInput } from '../dom.js';
import { t, locale } from '../i18n.js';
import { describeInto } from '../reading.js';

// Cron's day names (the values); the options show the current language's.
const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
const UNITS = [['seconds', 1], ['minutes', 60], ['hours', 3600], ['days', 86400]];

/** Day `i` of the week (0 = Monday) in the current language, short. */
function dayName(i) {
  // 2024-01-01 was a Monday.
  return new Date(Date.UTC(2024, 0, 1 + i, 12)).toLocaleDateString(locale(), { weekday: 'short', timeZone: 'UTC' });
}

function browserZone() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'; } catch (_) { return 'UTC'; }
}

/**
 * One fire time as a list item: in the reader's local time, and also in the schedule's own zone
 * when that differs (a cron of 03:30 Europe/Paris reads as 03:30 there, whatever the reader's zone).
 */
export function fireTime(iso, schedule) {
  const zone = schedule && schedule.kind === 'cron' ? schedule.timezone : '';
  let there = '';
  if (zone && zone !== browserZone()) {
    try {
      there = new Date(iso).toLocaleString(locale(), { timeZone: zone, weekday: 'short', hour: '2-digit', minute: '2-digit' });
    } catch (_) { /* an unknown zone: the server says so in the message */ }
  }
  return h('li', {}, h('time', { datetime: iso }, fmtTime(iso)), there ? h('span', { class: 'muted' }, ` (${there} ${zone})`) : null);
}

/** Reads a cron expression back into a preset when it has one of the preset shapes. */
function presetOf(expr) {
  const f = expr.trim().split(/\s+/);
  if (f.length !== 5) return { preset: 'custom' };
  const [mi, hr, dom, mon, dow] = f;
  const num = (x) => /^\d+$/.test(x);
  if (/^\*\/\d+$/.test(mi) && hr === '*' && dom === '*' && mon === '*' && dow === '*') return { preset: 'minutes', n: mi.slice(2) };
  if (num(mi) && hr === '*' && dom === '*' && mon === '*' && dow === '*') return { preset: 'hourly', minute: mi };
  if (num(mi) && num(hr) && dom === '*' && mon === '*' && dow === '*') return { preset: 'daily', minute: mi, hour: hr };
  if (num(mi) && num(hr) && dom === '*' && mon === '*' && DAYS.includes(dow)) return { preset: 'weekly', minute: mi, hour: hr, dow };
  if (num(mi) && num(hr) && num(dom) && mon === '*' && dow === '*') return { preset: 'monthly', minute: mi, hour: hr, dom };
  return { preset: 'custom' };
}

/**
 * Returns {el, value()} where value() is the schedule object for the API (or null for none).
 * `initial` is a task's schedule; `anchor` its creation time (intervals count from it).
 */
export function scheduleBuilder(initial, anchor) {
  const kind = h('select', { name: 'schedule-kind' },
    h('option', { value: '' }, t('schedule.kind_none')),
    h('option', { value: 'cron' }, t('schedule.kind_cron')),
    h('option', { value: 'interval' }, t('schedule.kind_interval')),
    h('option', { value: 'once' }, t('schedule.kind_once')));
  // cron
  const preset = h('select', { name: 'cron-preset' },
    h('option', { value: 'minutes' }, t('schedule.preset_minutes')),
    h('option', { value: 'hourly' }, t('schedule.preset_hourly')),
    h('option', { value: 'daily' }, t('schedule.preset_daily')),
    h('option', { value: 'weekly' }, t('schedule.preset_weekly')),
    h('option', { value: 'monthly' }, t('schedule.preset_monthly')),
    h('option', { value: 'custom' }, t('schedule.preset_custom')));
  const everyMin = h('input', { name: 'cron-every', type: 'number', min: 1, max: 59, value: '15' });
  const minute = h('input', { name: 'cron-minute', type: 'number', min: 0, max: 59, value: '0' });
  const hour = h('input', { name: 'cron-hour', type: 'number', min: 0, max: 23, value: '9' });
  const dow = h('select', { name: 'cron-dow' }, DAYS.map((d, i) => h('option', { value: d }, dayName(i))));
  const dom = h('input', { name: 'cron-dom', type: 'number', min: 1, max: 31, value: '1' });
  const expr = h('input', { name: 'cron', class: 'mono', value: '*/15 * * * *', spellcheck: 'false' });
  const zones = h('datalist', { id: 'tz-list' });
  try { for (const z of Intl.supportedValuesOf('timeZone')) zones.append(h('option', { value: z })); } catch (_) { /* older browsers */ }
  const tz = h('input', { name: 'timezone', list: 'tz-list', value: browserZone() });
  // interval
  const every = h('input', { name: 'every', type: 'number', min: 1, value: '10' });
  const unitLabel = { seconds: t('schedule.unit_seconds'), minutes: t('schedule.unit_minutes'), hours: t('schedule.unit_hours'), days: t('schedule.unit_days') };
  const unit = h('select', { name: 'every-unit' }, UNITS.map(([u, n]) => h('option', { value: String(n) }, unitLabel[u])));
  unit.value = '60';
  // Optional bounds: the first fire (the interval counts from it) and the last possible one.
  const start = h('input', { name: 'interval-start', type: 'datetime-local' });
  const end = h('input', { name: 'interval-end', type: 'datetime-local' });
  // once
  const at = h('input', { name: 'at', type: 'datetime-local' });

  if (initial) {
    kind.value = initial.kind;
    if (initial.kind === 'cron') {
      expr.value = initial.cron;
      tz.value = initial.timezone || 'UTC';
      const p = presetOf(initial.cron);
      preset.value = p.preset;
      if (p.n) everyMin.value = p.n;
      if (p.minute) minute.value = p.minute;
      if (p.hour) hour.value = p.hour;
      if (p.dow) dow.value = p.dow;
      if (p.dom) dom.value = p.dom;
    } else if (initial.kind === 'interval') {
      const [, n] = UNITS.slice().reverse().find(([, n]) => initial.every_s % n === 0) || UNITS[0];
      unit.value = String(n);
      every.value = String(initial.every_s / n);
      if (initial.start) start.value = toLocalInput(initial.start);
      if (initial.end) end.value = toLocalInput(initial.end);
    } else if (initial.kind === 'once') {
      at.value = toLocalInput(initial.at);
    }
  } else {
    preset.value = 'minutes';
  }

  // Built on each switch: the same inputs are shared by several presets, and a node can only
  // sit in one place.
  const presetFields = {
    minutes: () => [field(t('schedule.every_minutes'), everyMin)],
    hourly: () => [field(t('schedule.at_minute'), minute)],
    daily: () => [field(t('schedule.hour'), hour), field(t('schedule.minute'), minute)],
    weekly: () => [field(t('schedule.day_of_week'), dow), field(t('schedule.hour'), hour), field(t('schedule.minute'), minute)],
    monthly: () => [field(t('schedule.day_of_month'), dom), field(t('schedule.hour'), hour), field(t('schedule.minute'), minute)],
    custom: () => [],
  };
  const presetBox = h('div', { class: 'row wrap' });
  const cronBox = h('div', {}, field(t('schedule.repeat'), preset), presetBox,
    field(t('schedule.cron_expr'), expr, t('schedule.cron_hint')),
    field(t('schedule.time_zone'), tz, t('schedule.tz_hint')), zones);
  const intervalBox = h('div', {}, h('div', { class: 'row wrap' }, field(t('schedule.every'), every), field(t('schedule.unit'), unit)),
    h('div', { class: 'row wrap' },
      field(t('schedule.starting'), start, t('schedule.starting_hint')),
      field(t('schedule.ending'), end, t('schedule.ending_hint'))));
  const onceBox = h('div', {}, field(t('schedule.at'), at));
  const next = h('ol', { class: 'next-times', id: 'next-fires' });
  const nextMsg = h('p', { class: 'muted', id: 'next-msg', 'aria-live': 'polite' });
  // The schedule in words, so a misread expression shows at once (see reading.js).
  const described = h('p', { class: 'schedule-description', id: 'schedule-description', 'aria-live': 'polite' });
  const nextBox = h('div', { class: 'preview' }, described, h('h3', {}, t('tasks.next_5')), nextMsg, next);

  const buildExpr = () => {
    const p = preset.value;
    if (p === 'minutes') expr.value = `*/${everyMin.value || 1} * * * *`;
    else if (p === 'hourly') expr.value = `${minute.value || 0} * * * *`;
    else if (p === 'daily') expr.value = `${minute.value || 0} ${hour.value || 0} * * *`;
    else if (p === 'weekly') expr.value = `${minute.value || 0} ${hour.value || 0} * * ${dow.value}`;
    else if (p === 'monthly') expr.value = `${minute.value || 0} ${hour.value || 0} ${dom.value || 1} * *`;
  };

  // The inputs show minutes; a bound the API set to the second is kept as it was unless edited.
  const bound = (input, was) => (was && input.value === toLocalInput(was) ? was : fromLocalInput(input.value));

  const value = () => {
    switch (kind.value) {
      case 'cron': return { kind: 'cron', cron: expr.value.trim(), timezone: tz.value.trim() || 'UTC' };
      case 'interval': {
        const s = { kind: 'interval', every_s: Math.round(Number(every.value) * Number(unit.value)) };
        if (start.value) s.start = bound(start, initial && initial.start);
        if (end.value) s.end = bound(end, initial && initial.end);
        return s;
      }
      case 'once': return { kind: 'once', at: fromLocalInput(at.value) };
      default: return null;
    }
  };

  // Each edit starts a new reading; only the latest one is shown, and the list is marked busy
  // (`aria-busy`) from the edit until that reading is shown, so nobody reads a stale answer.
  let seq = 0;
  let timer = null;
  const refresh = () => {
    clearTimeout(timer);
    const my = ++seq;
    next.setAttribute('aria-busy', 'true');
    const shown = () => next.removeAttribute('aria-busy');
    timer = setTimeout(async () => {
      const sched = value();
      clear(next);
      described.textContent = '';
      if (!sched) { nextMsg.textContent = t('schedule.none_msg'); shown(); return; }
      nextMsg.textContent = t('schedule.computing');
      try {
        const res = await post(`/schedules/validate${query({ anchor })}`, sched);
        if (my !== seq) return;
        describeInto(described, sched, res.description);
        nextMsg.textContent = res.next.length ? '' : t('schedule.never_again');
        put(clear(next), ...res.next.map((x) => fireTime(x, sched)));
      } catch (e) {
        if (my !== seq) return;
        nextMsg.textContent = t('schedule.invalid', { error: e.detail || e.message });
        nextMsg.classList.add('bad');
        shown();
        return;
      }
      nextMsg.classList.remove('bad');
      shown();
    }, 250);
  };

  const show = () => {
    cronBox.hidden = kind.value !== 'cron';
    intervalBox.hidden = kind.value !== 'interval';
    onceBox.hidden = kind.value !== 'once';
    put(clear(presetBox), ...presetFields[preset.value]());
    expr.readOnly = preset.value !== 'custom';
    refresh();
  };
  for (const el of [everyMin, minute, hour, dow, dom]) el.addEventListener('input', () => { buildExpr(); refresh(); });
  dow.addEventListener('change', () => { buildExpr(); refresh(); });
  preset.addEventListener('change', () => { if (preset.value !== 'custom') buildExpr(); show(); });
  kind.addEventListener('change', show);
  for (const el of [expr, tz, every, unit, start, end, at]) { el.addEventListener('input', refresh); el.addEventListener('change', refresh); }

  const el = h('fieldset', { class: 'schedule' }, h('legend', {}, t('tasks.schedule')),
    field(t('schedule.kind'), kind), cronBox, intervalBox, onceBox, nextBox);
  show();
  return { el, value };
}
