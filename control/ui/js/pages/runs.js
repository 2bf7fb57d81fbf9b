// Runs: a filterable list, and a run's page with its log (logview.js), its state timeline, its
// run group, cancel, retry, and keep (pin against retention).

import { api, get, post, query, getAll } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, badge, shortId, idText, fmtDuration, toast, confirmDialog, put, pagedList } from '../dom.js';
import { hashQuery } from '../app.js';
import { runGraph } from '../graph.js';
import { logViewer } from '../logview.js';

const STATES = ['queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'lost'];

export async function render(page, params, ctx) {
  const [id] = params;
  return id ? detail(page, id, ctx) : list(page, ctx);
}

async function list(page, ctx) {
  const q = hashQuery();
  const tasks = await getAll('/tasks');
  const tname = Object.fromEntries(tasks.map((t) => [t.id, t.name]));
  const state = h('select', { name: 'state' }, h('option', { value: '' }, 'any'), STATES.map((s) => h('option', { value: s }, s.replace('_', ' '))));
  state.value = q.get('state') || '';
  const task = h('select', { name: 'task' }, h('option', { value: '' }, 'any'), tasks.map((t) => h('option', { value: t.id }, t.name)));
  task.value = q.get('task') || '';
  const apply = h('button', { type: 'submit' }, 'Filter');
  const filters = h('form', { class: 'row wrap filters', role: 'search' }, field('State', state), field('Task', task), apply);
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.navigate(`/runs${query({ state: state.value, task: task.value })}`);
  });
  const errors = errorBox();
  const { box, more, load } = pagedList(
    (cursor) => get(`/runs${query({ state: state.value, task_id: task.value, limit: 50, cursor })}`),
    (rows) => table(['Run', 'Task', 'State', 'Attempt', 'Trigger', 'Worker', 'Queued', 'Duration', 'Exit'], rows.map((r) => [
      h('a', { href: `#/runs/${r.id}` }, shortId(r.id)),
      h('a', { href: `#/tasks/${r.task_id}` }, tname[r.task_id] || r.task_id),
      badge(r.state), `${r.attempt}/${r.max_attempts}`, r.trigger, r.worker_id ? shortId(r.worker_id) : '—',
      timeEl(r.queued_at), fmtDuration(r.duration_ms), r.exit_code ?? '—',
    ]), 'No runs match.'),
    errors);
  put(page, heading('Runs'), filters, errors, h('section', { class: 'card' }, box, more));
  await load();
}

/** History details are often JSON (an outcome); show them as `key value` pairs without nulls. */
function detailText(detail) {
  try {
    const v = JSON.parse(detail);
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.entries(v).filter(([, x]) => x !== null && x !== '')
        .map(([k, x]) => `${k.replace(/_/g, ' ')}: ${typeof x === 'object' ? JSON.stringify(x) : x}`).join(' · ');
    }
  } catch (_) { /* plain text */ }
  return detail;
}

function timeline(history) {
  if (!history.length) return h('p', { class: 'muted' }, 'No history yet.');
  return h('ol', { class: 'timeline' }, history.map((e) => h('li', { class: `tl-${e.kind}` },
    h('span', { class: 'tl-kind' }, e.kind), ' ', h('span', { class: 'muted' }, `attempt ${e.attempt}`), ' ', timeEl(e.at),
    e.detail ? h('div', { class: 'tl-detail' }, detailText(e.detail)) : null)));
}

async function detail(page, id, ctx) {
  let run = await get(`/runs/${id}`);
  const task = await get(`/tasks/${run.task_id}`).catch(() => null);
  const errors = errorBox();
  const can = ctx.session.can('operator');
  const head = h('div', {});
  const facts = h('dl', { class: 'facts card', id: 'run-facts' });
  const tl = h('section', { class: 'card' }, h('h2', {}, 'Timeline'), h('div', { id: 'timeline' }));
  const cancel = h('button', { type: 'button', class: 'danger', id: 'cancel-run', 'data-mutates': '' }, 'Cancel run');
  const retry = h('button', { type: 'button', id: 'retry-run', 'data-mutates': '' }, 'Retry');
  cancel.addEventListener('click', async () => {
    if (!(await confirmDialog('Cancel this run? Its process is stopped.', 'Cancel run'))) return;
    await busy(cancel, errors, async () => { await post(`/runs/${id}/cancel`); toast('Cancel requested'); await refresh(); });
  });
  retry.addEventListener('click', () => busy(retry, errors, async () => {
    const r = await post(`/runs/${id}/retry`);
    toast('Retry queued');
    ctx.navigate(`/runs/${r.id}`);
  }));

  // Pinning: a kept run is never pruned by a retention policy.
  const keep = h('input', { type: 'checkbox', id: 'run-keep', name: 'keep', 'data-mutates': '' });
  const keepLabel = h('label', { class: 'check' }, keep, ' Keep (never prune)');
  const kept = () => (run.keep ? 'yes, never pruned' : 'no');
  keep.addEventListener('change', () => busy(keep, errors, async () => {
    try {
      // The answer is the run without its history: keep the timeline already shown.
      const r = await api('PATCH', `/runs/${id}`, { keep: keep.checked });
      run = { ...run, keep: r.keep };
      toast(run.keep ? 'This run is kept (never pruned)' : 'This run may be pruned again');
    } finally {
      keep.checked = !!run.keep;
      const dd = facts.querySelector('#run-kept');
      if (dd) dd.textContent = kept();
    }
  }));

  const drawHead = () => {
    const terminal = !['queued', 'running'].includes(run.state);
    const actions = [];
    if (can && !terminal) actions.push(cancel);
    if (can && terminal) actions.push(retry);
    if (can) actions.push(keepLabel);
    keep.checked = !!run.keep;
    put(clear(head), heading(`Run ${idText(run.id)}`, ...actions),
      h('p', {}, 'State: ', h('span', { id: 'run-state' }, badge(run.state)), run.cancel_requested && !terminal ? ' (cancel requested)' : ''));
    put(clear(facts), 
      h('dt', {}, 'Task'), h('dd', {}, task ? h('a', { href: `#/tasks/${task.id}` }, task.name) : run.task_id),
      h('dt', {}, 'Project version'), h('dd', {}, h('a', { href: `#/projects/${run.project_id}` }, `v${run.project_version}`)),
      h('dt', {}, 'Attempt'), h('dd', {}, `${run.attempt} of ${run.max_attempts}`),
      h('dt', {}, 'Trigger'), h('dd', {}, run.trigger),
      run.parent_id ? h('dt', {}, 'Started by') : null,
      run.parent_id ? h('dd', {}, h('a', { href: `#/runs/${run.parent_id}`, id: 'run-parent' }, `run ${shortId(run.parent_id)}`)) : null,
      h('dt', {}, 'Queue'), h('dd', {}, run.queue),
      h('dt', {}, 'Worker'), h('dd', {}, run.worker_id ? h('code', {}, run.worker_id) : '—'),
      h('dt', {}, 'Queued'), h('dd', {}, timeEl(run.queued_at)),
      h('dt', {}, 'Started'), h('dd', {}, timeEl(run.started_at)),
      h('dt', {}, 'Finished'), h('dd', {}, timeEl(run.finished_at)),
      h('dt', {}, 'Duration'), h('dd', {}, fmtDuration(run.duration_ms)),
      h('dt', {}, 'Exit code'), h('dd', {}, run.exit_code ?? '—', run.signal ? ` (signal ${run.signal})` : ''),
      h('dt', {}, 'Kept'), h('dd', { id: 'run-kept' }, kept()),
      run.params ? h('dt', {}, 'Params') : null,
      run.params ? h('dd', {}, h('code', { id: 'run-params' }, JSON.stringify(run.params))) : null,
      run.overrides ? h('dt', {}, 'Overrides') : null,
      run.overrides ? h('dd', {}, h('code', { id: 'run-overrides' }, JSON.stringify(run.overrides))) : null,
      run.waiting ? h('dt', {}, 'Waiting') : null,
      run.waiting ? h('dd', { id: 'run-waiting', class: 'bad' }, run.waiting) : null,
      h('dt', {}, 'Peak memory'), h('dd', {}, run.peak_rss_kb ? `${(run.peak_rss_kb / 1024).toFixed(1)} MiB` : '—'),
      run.error ? h('dt', {}, 'Error') : null, run.error ? h('dd', { class: 'bad' }, run.error) : null);
    put(clear(tl.querySelector('#timeline')), timeline(run.history || []));
    drawAttempts();
  };
  const refresh = async () => {
    run = await get(`/runs/${id}`);
    drawHead();
    drawGroup().catch((err) => errors.show(err));
  };

  // --- the log (see logview.js) -------------------------------------------------------------
  const log = logViewer(id, () => run, () => refresh(), errors);
  const drawAttempts = log.drawAttempts;

  // The run group, when this run started others or another started it.
  const groupCard = h('section', { class: 'card', id: 'run-group', hidden: true });
  const drawGroup = async () => {
    const group = await get(`/runs/${id}/group`);
    if (group.runs.length < 2) return;
    const tasks = await getAll('/tasks');
    const names = Object.fromEntries(tasks.map((t) => [t.id, t.name]));
    put(clear(groupCard), h('h2', {}, 'Run group'), runGraph(group, names, id));
    groupCard.hidden = false;
  };

  drawHead();
  drawGroup().catch((err) => errors.show(err));
  // The log first: at 1440×900 it opens above the fold, the facts below it.
  put(page, head, errors, log.card,
    h('div', { class: 'grid2' }, facts, tl),
    groupCard);
  log.open();
  return log.close;
}
