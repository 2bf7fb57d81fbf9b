// The dashboard: runs by state over the last 24 hours, success rate, workers, queue depth (jobs
// waiting in each broker queue) and the latest failures. Refreshes itself every 15 s while open.

import { get, getAll, query } from '../api.js';
import { h, clear, heading, badge, timeEl, shortId, table, errorBox, put } from '../dom.js';
import { stackedBars } from '../chart.js';

export const STATES = [
  { key: 'succeeded', label: 'succeeded', cls: 'st-succeeded' },
  { key: 'failed', label: 'failed', cls: 'st-failed' },
  { key: 'timed_out', label: 'timed out', cls: 'st-timed_out' },
  { key: 'lost', label: 'lost', cls: 'st-lost' },
  { key: 'cancelled', label: 'cancelled', cls: 'st-cancelled' },
  { key: 'running', label: 'running', cls: 'st-running' },
  { key: 'queued', label: 'queued', cls: 'st-queued' },
];

function stat(label, value, note) {
  return h('div', { class: 'stat card' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value), note ? h('small', {}, note) : null);
}

export async function render(page) {
  const errors = errorBox();
  const body = h('div', {});
  put(page, heading('Dashboard'), errors, body);
  const load = async () => {
    const since = new Date(Date.now() - 24 * 3600 * 1000);
    const [runs, workers, tasks, queues] = await Promise.all([
      getAll('/runs', { since: since.toISOString() }, 5000),
      get('/workers'),
      getAll('/tasks', {}, 2000),
      get('/queues'),
    ]);
    const taskName = Object.fromEntries(tasks.map((t) => [t.id, t.name]));
    // 24 hourly buckets ending now.
    const hourMs = 3600 * 1000;
    const end = Math.ceil(Date.now() / hourMs) * hourMs;
    const buckets = [];
    for (let i = 23; i >= 0; i--) {
      const start = end - (i + 1) * hourMs;
      buckets.push({ start, label: new Date(start).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' }), values: {} });
    }
    const counts = {};
    for (const r of runs) {
      counts[r.state] = (counts[r.state] || 0) + 1;
      const t = Date.parse(r.queued_at);
      const i = Math.floor((t - (end - 24 * hourMs)) / hourMs);
      if (i >= 0 && i < 24) buckets[i].values[r.state] = (buckets[i].values[r.state] || 0) + 1;
    }
    const ended = ['succeeded', 'failed', 'timed_out', 'lost', 'cancelled'].reduce((n, k) => n + (counts[k] || 0), 0);
    const rate = ended ? `${Math.round((100 * (counts.succeeded || 0)) / ended)}%` : '—';
    const live = workers.items.filter((w) => !w.draining).length;
    const waiting = queues.items.reduce((n, q) => n + q.depth, 0);
    const failures = runs.filter((r) => ['failed', 'timed_out', 'lost'].includes(r.state)).slice(0, 10);
    put(clear(body), 
      h('div', { class: 'stats' },
        stat('Runs (24 h)', String(runs.length)),
        stat('Success rate (24 h)', rate, `${counts.succeeded || 0} of ${ended} finished`),
        stat('Active workers', String(live), `${workers.items.length} heartbeating`),
        stat('Queue depth', String(waiting), `jobs waiting in ${queues.items.length} queue${queues.items.length === 1 ? '' : 's'}`),
        stat('Running', String(counts.running || 0))),
      h('div', { class: 'grid2' },
        h('section', { class: 'card' }, h('h2', {}, 'Runs by state, last 24 hours'), stackedBars(buckets, STATES, 'Runs per hour by state')),
        h('section', { class: 'card', id: 'queues' }, h('h2', {}, 'Queue depth'),
          table(['Queue', 'Jobs waiting'], queues.items.map((q) => [h('code', {}, q.name), String(q.depth)]), 'No queue has been used yet.'))),
      h('section', { class: 'card' }, h('h2', {}, 'Recent failures'),
        table(['Run', 'Task', 'State', 'Exit', 'Finished', 'Error'], failures.map((r) => [
          h('a', { href: `#/runs/${r.id}` }, shortId(r.id)),
          h('a', { href: `#/tasks/${r.task_id}` }, taskName[r.task_id] || r.task_id),
          badge(r.state), r.exit_code ?? '—', timeEl(r.finished_at), r.error || '',
        ]), 'No failures in the last 24 hours.')));
  };
  const tick = async () => {
    try { await load(); errors.show(null); } catch (e) { errors.show(e); }
  };
  await tick();
  const timer = setInterval(tick, 15000);
  return () => clearInterval(timer);
}
