// Runs: a filterable list, and a run's page with its state timeline, a live log tail over SSE
// that follows and can be searched, an attempt picker (each attempt's archived log), download,
// cancel, retry, and keep (pin against retention).

import { api, get, post, query, getAll } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, badge, shortId, idText, fmtDuration, toast, confirmDialog, put, pagedList } from '../dom.js';
import { hashQuery } from '../app.js';
import { runGraph } from '../graph.js';

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

  // --- the log ---------------------------------------------------------------------------------
  const logLines = [''];
  const pre = h('pre', { class: 'log', id: 'log', tabindex: '0', 'aria-label': 'Run log', 'aria-live': 'off' });
  const search = h('input', { type: 'search', name: 'log-search', placeholder: 'Filter lines' });
  const follow = h('input', { type: 'checkbox', name: 'follow', checked: true });
  const status = h('span', { class: 'muted', id: 'log-status', 'aria-live': 'polite' }, 'connecting…');
  const count = h('span', { class: 'muted', id: 'log-count' });
  const download = h('a', { class: 'button', href: `/api/v1/runs/${id}/logs`, download: `run-${id}.log` }, 'Download log');
  // '' is the live log of every attempt; a number is that attempt's log alone.
  const attemptPick = h('select', { name: 'log-attempt', id: 'log-attempt' });
  const drawAttempts = () => {
    const chosen = attemptPick.value;
    const options = [h('option', { value: '' }, 'All attempts (live)')];
    for (let n = 1; n <= run.attempt; n++) options.push(h('option', { value: String(n) }, `Attempt ${n}`));
    put(clear(attemptPick), ...options);
    attemptPick.value = chosen;
  };
  const matches = (line) => {
    const q = search.value.trim().toLowerCase();
    return !q || line.toLowerCase().includes(q);
  };
  const redraw = () => {
    const shown = logLines.filter(matches);
    pre.textContent = shown.join('\n');
    count.textContent = search.value.trim() ? `${shown.filter((l) => l !== '').length} matching lines` : '';
    if (follow.checked) pre.scrollTop = pre.scrollHeight;
  };
  const appendText = (text) => {
    const parts = text.split('\n');
    logLines[logLines.length - 1] += parts[0];
    for (const p of parts.slice(1)) logLines.push(p);
    // Cheap path: without a filter, append the new text to the pre instead of redrawing.
    if (!search.value.trim()) {
      pre.append(document.createTextNode(text));
      if (follow.checked) pre.scrollTop = pre.scrollHeight;
    } else redraw();
  };
  search.addEventListener('input', redraw);
  follow.addEventListener('change', () => { if (follow.checked) pre.scrollTop = pre.scrollHeight; });
  pre.addEventListener('scroll', () => {
    // Scrolling up stops following; scrolling back to the bottom resumes.
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
    if (follow.checked !== atBottom) follow.checked = atBottom;
  });

  let source = null;
  let stateSource = null;
  const open = () => {
    source = new EventSource(`/api/v1/runs/${id}/logs?follow=true`);
    source.addEventListener('open', () => { status.textContent = 'live'; });
    source.addEventListener('log', (e) => {
      if (status.textContent !== 'live') status.textContent = 'live';
      try { appendText(JSON.parse(e.data).data); } catch (_) { /* skip a malformed chunk */ }
    });
    // What the run waits on before its process starts (its environment being built).
    source.addEventListener('progress', (e) => {
      try { status.textContent = JSON.parse(e.data).data; } catch (_) { /* skip a malformed step */ }
    });
    source.addEventListener('end', () => {
      status.textContent = 'run ended';
      source.close();
      refresh().catch((err) => errors.show(err));
    });
    source.addEventListener('error', () => {
      // EventSource reconnects by itself (resuming after the last chunk via Last-Event-ID).
      status.textContent = source.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting…';
    });
    stateSource = new EventSource(`/api/v1/runs/${id}/events`);
    stateSource.addEventListener('state', (e) => {
      try {
        const r = JSON.parse(e.data);
        if (r.state !== run.state || r.cancel_requested !== run.cancel_requested || r.attempt !== run.attempt) refresh().catch((err) => errors.show(err));
      } catch (_) { /* ignore */ }
    });
    stateSource.addEventListener('end', () => stateSource.close());
  };

  const close = () => {
    if (source) source.close();
    if (stateSource) stateSource.close();
    source = stateSource = null;
  };
  attemptPick.addEventListener('change', async () => {
    close();
    logLines.splice(0, logLines.length, '');
    pre.textContent = '';
    const n = attemptPick.value;
    download.href = n ? `/api/v1/runs/${id}/logs?attempt=${n}` : `/api/v1/runs/${id}/logs`;
    download.download = n ? `run-${id}-attempt-${n}.log` : `run-${id}.log`;
    if (!n) {
      open();
      return;
    }
    status.textContent = `attempt ${n}`;
    try {
      appendText(await api('GET', `/runs/${id}/logs?attempt=${n}`, undefined, { text: true }));
    } catch (err) {
      errors.show(err);
    }
  });

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
  put(page, head, errors,
    h('div', { class: 'grid2' }, facts, tl),
    groupCard,
    h('section', { class: 'card' },
      h('div', { class: 'row wrap log-tools' }, h('h2', {}, 'Log'), status,
        field('Attempt', attemptPick), field('Search', search), h('label', { class: 'check' }, follow, ' Follow'), count, download),
      pre));
  open();
  return close;
}
