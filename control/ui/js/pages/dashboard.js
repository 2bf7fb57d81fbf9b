// The dashboard: runs by state over the last 24 hours, success rate and durations (counted by the
// server, `GET /stats/runs`), workers, queue depth (jobs waiting in each broker queue) and the
// latest failures. Refreshes itself every 15 s while open.

import { get, query } from '../api.js';
import { h, clear, heading, badge, timeEl, shortId, table, errorBox, put, fmtDuration } from '../dom.js';
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
    // 24 hourly buckets on the hour, the last one holding now.
    const hourMs = 3600 * 1000;
    const since = new Date((Math.floor(Date.now() / hourMs) - 23) * hourMs).toISOString();
    const [stats, workers, queues, failures] = await Promise.all([
      get(`/stats/runs${query({ since, bucket: 3600 })}`),
      get('/workers'),
      get('/queues'),
      recentFailures(since),
    ]);
    const taskName = await taskNames(failures);
    const buckets = stats.buckets.map((b) => ({
      label: new Date(b.start).toLocaleTimeString(locale(), { hour: '2-digit', minute: '2-digit' }),
      values: b.counts,
    }));
    const counts = stats.total.counts;
    const ended = ['succeeded', 'failed', 'timed_out', 'lost', 'cancelled'].reduce((n, k) => n + (counts[k] || 0), 0);
    const rate = stats.total.success_rate === null ? '—' : fmtNumber(stats.total.success_rate, { style: 'percent' });
    const took = stats.total.duration_ms;
    const live = workers.items.filter((w) => !w.draining).length;
    const waiting = queues.items.reduce((n, q) => n + q.depth, 0);
    put(clear(body), 
      h('div', { class: 'stats' },
        stat(t('dashboard.runs_24h'), fmtNumber(stats.total.runs)),
        stat(t('dashboard.success_rate'), rate, t('dashboard.of_finished', { n: fmtNumber(counts.succeeded || 0), total: fmtNumber(ended) })),
        stat(t('dashboard.active_workers'), fmtNumber(live), t('dashboard.heartbeating', { n: fmtNumber(workers.items.length) })),
        stat(t('dashboard.queue_depth'), fmtNumber(waiting), t('dashboard.jobs_waiting_in', { n: queues.items.length })),
        stat(t('dashboard.running'), fmtNumber(counts.running || 0)),
        stat(t('dashboard.duration_p50'), took ? fmtDuration(took.p50) : '—', took ? t('dashboard.duration_p99', { p99: fmtDuration(took.p99) }) : null)),
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

/** The latest ten failed, timed-out or lost runs since `since`, newest first. */
async function recentFailures(since) {
  const pages = await Promise.all(['failed', 'timed_out', 'lost'].map((state) => get(`/runs${query({ state, since, limit: 10 })}`)));
  // Run ids are UUIDv7, ordered by creation: the greatest is the newest.
  return pages.flatMap((p) => p.items).sort((a, b) => (a.id < b.id ? 1 : -1)).slice(0, 10);
}

/** Names of the tasks of `runs` (a deleted task keeps its id). */
async function taskNames(runs) {
  const ids = [...new Set(runs.map((r) => r.task_id))];
  const tasks = await Promise.all(ids.map((id) => get(`/tasks/${id}`).catch(() => null)));
  return Object.fromEntries(tasks.filter(Boolean).map((x) => [x.id, x.name]));
}
