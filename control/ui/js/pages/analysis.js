// A task's run analysis: over a chosen window (a day, a week, a month), runs by state per bucket,
// duration percentiles and success rate over time, all counted by the server (`GET /stats/runs`).

import { get, query } from '../api.js';
import { h, put, clear, errorBox, badge, fmtDuration } from '../dom.js';
import { stackedBars, lines } from '../chart.js';
import { states } from './dashboard.js';
import { t, locale, fmtNumber } from '../i18n.js';

const HOUR = 3600 * 1000;
// Each window starts on a bucket boundary, so that the buckets read as whole hours or days.
const WINDOWS = {
  day: { name: () => t('analysis.day'), buckets: 24, bucketMs: HOUR, label: { hour: '2-digit', minute: '2-digit' } },
  week: { name: () => t('analysis.week'), buckets: 28, bucketMs: 6 * HOUR, label: { weekday: 'short', hour: '2-digit' } },
  month: { name: () => t('analysis.month'), buckets: 30, bucketMs: 24 * HOUR, label: { month: 'short', day: 'numeric' } },
};

/** A card with the charts of task `taskId`; it loads itself and reloads when the window changes. */
export function runAnalysis(taskId) {
  const errors = errorBox();
  const body = h('div', { class: 'analysis', 'aria-live': 'polite' });
  const pick = h('select', { 'aria-label': t('analysis.window'), id: 'analysis-window' },
    Object.entries(WINDOWS).map(([k, w]) => h('option', { value: k }, w.name())));
  const load = async () => {
    const w = WINDOWS[pick.value];
    // Bucket boundaries in UTC; for days, local midnight would need the server to know the zone.
    const since = (Math.floor(Date.now() / w.bucketMs) - (w.buckets - 1)) * w.bucketMs;
    try {
      const stats = await get(`/stats/runs${query({ task_id: taskId, since: new Date(since).toISOString(), bucket: w.bucketMs / 1000 })}`);
      errors.show(null);
      put(clear(body), ...figures(stats, w));
    } catch (e) {
      errors.show(e);
    }
  };
  pick.addEventListener('change', load);
  load();
  return h('section', { class: 'card', id: 'analysis' },
    h('div', { class: 'row spread' }, h('h2', {}, t('analysis.title')), pick), errors, body);
}

function figures(stats, w) {
  const total = stats.total;
  if (!total.runs) return [h('p', {}, t('analysis.no_runs'))];
  const at = (b) => new Date(b.start).toLocaleString(locale(), w.label);
  const counts = stats.buckets.map((b) => ({ label: at(b), values: b.counts }));
  const took = stats.buckets.map((b) => ({ label: at(b), values: b.duration_ms || {} }));
  const rate = stats.buckets.map((b) => ({ label: at(b), values: { rate: b.success_rate === null ? null : b.success_rate * 100 } }));
  const d = total.duration_ms;
  const summary = h('p', { class: 'analysis-summary' },
    Object.entries(total.counts).filter(([, n]) => n).map(([k, n]) => h('span', { class: 'stat-pill' }, badge(k), ` ${fmtNumber(n)}`)),
    total.success_rate === null ? null : h('span', { class: 'stat-pill' }, t('analysis.success', { rate: fmtNumber(total.success_rate, { style: 'percent', maximumFractionDigits: 1 }) })),
    d ? h('span', { class: 'stat-pill' }, t('analysis.percentiles', { p50: fmtDuration(d.p50), p90: fmtDuration(d.p90), p99: fmtDuration(d.p99) })) : null);
  const pct = (v) => fmtNumber(v / 100, { style: 'percent' });
  return [
    summary,
    // One chart a row: side by side, their axis labels would shrink below reading size.
    h('div', {}, h('h3', {}, t('analysis.by_state')), stackedBars(counts, states(), t('analysis.by_state'))),
    // Durations and success need runs that ended.
    ...(d ? [
      h('div', {}, h('h3', {}, t('analysis.durations')), lines(took, [
        { key: 'p50', label: 'p50', cls: 'st-running' },
        { key: 'p90', label: 'p90', cls: 'st-timed_out' },
        { key: 'p99', label: 'p99', cls: 'st-failed' },
      ], t('analysis.durations'), fmtDuration)),
      h('div', {}, h('h3', {}, t('analysis.success_rate')), lines(rate, [{ key: 'rate', label: t('analysis.success_rate'), cls: 'st-succeeded' }], t('analysis.success_rate'), pct, 100)),
    ] : [h('p', {}, t('analysis.none_ended'))]),
    h('p', { class: 'muted' }, t('analysis.estimated')),
  ];
}
