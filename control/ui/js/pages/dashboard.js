// The dashboard: runs by state over the last 24 hours, success rate, workers, queue depth (jobs
// waiting in each broker queue) and the latest failures. Refreshes itself every 15 s while open.

import { get, getAll, query } from '../api.js';
import { h, clear, heading, badge, timeEl, shortId, table, errorBox, put } from '../dom.js';
import { stackedBars } from '../chart.js';
import { t, label, locale, fmtNumber } from '../i18n.js';

const STATE_KEYS = ['succeeded', 'failed', 'timed_out', 'lost', 'cancelled', 'running', 'queued'];

/** The chart's series, labelled in the current language. */
export function states() {
  return STATE_KEYS.map((key) => ({ key, label: label('state', key), cls: `st-${key}` }));
}

function stat(label, value, note) {
  return h('div', { class: 'stat card' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value), note ? h('small', {}, note) : null);
}

export async function render(page) {
  const errors = errorBox();
  const body = h('div', {});
  put(page, heading(t('dashboard.title')), errors, body);
  const load = async () => {
    const since = new Date(Date.now() - 24 * 3600 * 1000);
    const [runs, workers, tasks, queues] = await Promise.all([
      getAll('/runs', { since: since.toISOString() }, 5000),
      get('/workers'),
      getAll('/tasks', {}, 2000),
      get('/queues'),
    ]);
    const taskName = Object.fromEntries(tasks.map((x) => [x.id, x.name]));
    // 24 hourly buckets ending now.
    const hourMs = 3600 * 1000;
    const end = Math.ceil(Date.now() / hourMs) * hourMs;
    const buckets = [];
    for (let i = 23; i >= 0; i--) {
      const start = end - (i + 1) * hourMs;
      buckets.push({ start, label: new Date(start).toLocaleTimeString(locale(), { hour: '2-digit', minute: '2-digit' }), values: {} });
    }
    const counts = {};
    for (const r of runs) {
      counts[r.state] = (counts[r.state] || 0) + 1;
      const t = Date.parse(r.queued_at);
      const i = Math.floor((t - (end - 24 * hourMs)) / hourMs);
      if (i >= 0 && i < 24) buckets[i].values[r.state] = (buckets[i].values[r.state] || 0) + 1;
    }
    const ended = ['succeeded', 'failed', 'timed_out', 'lost', 'cancelled'].reduce((n, k) => n + (counts[k] || 0), 0);
    const rate = ended ? fmtNumber((counts.succeeded || 0) / ended, { style: 'percent' }) : '—';
    const live = workers.items.filter((w) => !w.draining).length;
    const waiting = queues.items.reduce((n, q) => n + q.depth, 0);
    const failures = runs.filter((r) => ['failed', 'timed_out', 'lost'].includes(r.state)).slice(0, 10);
    put(clear(body), 
      h('div', { class: 'stats' },
        stat(t('dashboard.runs_24h'), fmtNumber(runs.length)),
        stat(t('dashboard.success_rate'), rate, t('dashboard.of_finished', { n: fmtNumber(counts.succeeded || 0), total: fmtNumber(ended) })),
        stat(t('dashboard.active_workers'), fmtNumber(live), t('dashboard.heartbeating', { n: fmtNumber(workers.items.length) })),
        stat(t('dashboard.queue_depth'), fmtNumber(waiting), t('dashboard.jobs_waiting_in', { n: queues.items.length })),
        stat(t('dashboard.running'), fmtNumber(counts.running || 0))),
      h('div', { class: 'grid2' },
        h('section', { class: 'card' }, h('h2', {}, t('dashboard.by_state')), stackedBars(buckets, states(), t('dashboard.chart_title'))),
        h('section', { class: 'card', id: 'queues' }, h('h2', {}, t('dashboard.queue_depth')),
          table([t('common.queue'), t('dashboard.jobs_waiting')], queues.items.map((q) => [h('code', {}, q.name), String(q.depth)]), t('dashboard.no_queue')))),
      h('section', { class: 'card' }, h('h2', {}, t('dashboard.recent_failures')),
        table([t('common.run'), t('common.task'), t('common.state'), t('common.exit'), t('common.finished'), t('common.error')], failures.map((r) => [
          h('a', { href: `#/runs/${r.id}` }, shortId(r.id)),
          h('a', { href: `#/tasks/${r.task_id}` }, taskName[r.task_id] || r.task_id),
          badge(r.state), r.exit_code ?? '—', timeEl(r.finished_at), r.error || '',
        ]), t('dashboard.no_failures'))));
  };
  const tick = async () => {
    try { await load(); errors.show(null); } catch (e) { errors.show(e); }
  };
  await tick();
  const timer = setInterval(tick, 15000);
  return () => clearInterval(timer);
}
