// Runs: a filterable list, and a run's page with its log (logview.js), its state timeline, its
// run group, cancel, retry, and keep (pin against retention).

import { api, get, post, query, getAll } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, badge, shortId, idText, fmtDuration, toast, confirmDialog, put, pagedList, fromLocalInput, toLocalInput, lostFocus } from '../dom.js';
import { hashQuery } from '../app.js';
import { runGraph } from '../graph.js';
import { logViewer } from '../logview.js';
import { t, label, fmtNumber } from '../i18n.js';

const STATES = ['queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'lost'];

export async function render(page, params, ctx) {
  const [id] = params;
  return id ? detail(page, id, ctx) : list(page, ctx);
}

/** How runs are started, for the trigger filter. */
const TRIGGERS = ['manual', 'schedule', 'webhook', 'retry', 'invoke', 'on_success', 'on_failure', 'on_complete', 'needs'];

async function list(page, ctx) {
  const q = hashQuery();
  const [tasks, workers] = await Promise.all([getAll('/tasks'), get('/workers').then((r) => r.items || r).catch(() => [])]);
  const tname = Object.fromEntries(tasks.map((x) => [x.id, x.name]));
  const state = h('select', { name: 'state' }, h('option', { value: '' }, t('common.any')), STATES.map((s) => h('option', { value: s }, label('state', s))));
  state.value = q.get('state') || '';
  const task = h('select', { name: 'task' }, h('option', { value: '' }, t('common.any')), tasks.map((x) => h('option', { value: x.id }, x.name)));
  task.value = q.get('task') || '';
  const trigger = h('select', { name: 'trigger' }, h('option', { value: '' }, t('common.any')), TRIGGERS.map((x) => h('option', { value: x }, label('trigger', x))));
  trigger.value = q.get('trigger') || '';
  const from = h('input', { type: 'datetime-local', name: 'since', value: toLocalInput(q.get('since')) });
  const to = h('input', { type: 'datetime-local', name: 'until', value: toLocalInput(q.get('until')) });
  const worker = h('select', { name: 'worker' }, h('option', { value: '' }, t('common.any')),
    workers.map((w) => h('option', { value: w.id, translate: 'no' }, w.name ? `${w.name} · ${w.id.slice(-6)}` : w.id)));
  worker.value = q.get('worker') || '';
  const error = h('input', { type: 'search', name: 'error', value: q.get('error') || '', placeholder: t('runs.error_placeholder') });
  const apply = h('button', { type: 'submit' }, t('common.filter'));
  const filters = h('form', { class: 'row wrap filters', role: 'search' }, field(t('common.state'), state), field(t('common.task'), task),
    field(t('common.trigger'), trigger), field(t('runs.from'), from), field(t('runs.to'), to), field(t('common.worker'), worker),
    field(t('runs.error_contains'), error), apply);
  // What the URL keeps, and what the API is asked.
  const chosen = () => ({ state: state.value, task: task.value, trigger: trigger.value, since: from.value && fromLocalInput(from.value),
    until: to.value && fromLocalInput(to.value), worker: worker.value, error: error.value.trim() });
  const asked = (c) => ({ state: c.state, task_id: c.task, trigger: c.trigger, since: c.since, until: c.until,
    worker_id: c.worker, error: c.error });
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.navigate(`/runs${query(chosen())}`);
  });
  const errors = errorBox();
  const card = h('section', { class: 'card' });
  // Only the latest filters' answer is shown (an older, slower one may arrive after it).
  let latest = 0;
  const draw = async () => {
    const mine = ++latest;
    const c = chosen();
    const { box, more, load } = pagedList(
      (cursor) => get(`/runs${query({ ...asked(c), limit: 50, cursor })}`),
      (rows) => table([t('common.run'), t('common.task'), t('common.state'), t('common.attempt'), t('common.trigger'), t('common.worker'), t('common.queued'), t('common.duration'), t('common.exit')], rows.map((r) => [
        h('a', { href: `#/runs/${r.id}` }, shortId(r.id)),
        h('a', { href: `#/tasks/${r.task_id}` }, tname[r.task_id] || r.task_id),
        badge(r.state), `${r.attempt}/${r.max_attempts}`, label('trigger', r.trigger), r.worker_id ? shortId(r.worker_id) : '—',
        timeEl(r.queued_at), fmtDuration(r.duration_ms), r.exit_code ?? '—',
      ]), t('runs.none_match')),
      errors);
    await load();
    if (mine !== latest) return;
    errors.show(null);
    put(clear(card), box, more);
  };
  // Applied as they change (text after a pause in typing), kept in the URL without a new page.
  let typing = null;
  const changed = () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      history.replaceState(null, '', `#/runs${query(chosen())}`);
      draw().catch((err) => errors.show(err));
    }, 300);
  };
  for (const el of [state, task, trigger, from, to, worker]) el.addEventListener('change', changed);
  error.addEventListener('input', changed);
  put(page, heading(t('runs.title')), filters, errors, card);
  await draw();
}

/** History details are often JSON (an outcome); show them as `key value` pairs without nulls
 * (nor the log's storage key). The server's two short forms are translated; other text is shown
 * as sent. */
function detailText(detail) {
  let m = detail.match(/^trigger: (\S+)$/);
  if (m) return t('runs.detail_trigger', { trigger: label('trigger', m[1]) });
  m = detail.match(/^worker (\S+)$/);
  if (m) return t('runs.detail_worker', { worker: m[1] });
  try {
    const v = JSON.parse(detail);
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.entries(v).filter(([k, x]) => x !== null && x !== '' && k !== 'log_key')
        .map(([k, x]) => `${label('detail', k)}${t('common.colon')}${typeof x === 'object' ? JSON.stringify(x) : detailValue(k, x)}`).join(' · ');
    }
  } catch (_) { /* plain text */ }
  return detail;
}

/** A detail's value: a state or trigger by its label, anything else as sent. */
function detailValue(k, x) {
  if (k === 'state') return label('state', x);
  if (k === 'trigger') return label('trigger', x);
  if (k === 'duration_ms') return fmtDuration(x);
  return x;
}

/** Why a queued run waits, as the server says it; its two common forms are translated, the
 * rest shown as sent. */
function waitingText(text) {
  let m = text.match(/^no live runner serves queue (\S+)$/);
  if (m) return [t('runs.waiting_no_runner'), ' ', h('code', {}, m[1])];
  m = text.match(/^no live runner matches (\S+)$/);
  if (m) return [t('runs.waiting_no_match'), ' ', h('code', {}, m[1])];
  return h('span', { lang: 'en' }, text);
}

function timeline(history) {
  if (!history.length) return h('p', { class: 'muted' }, t('runs.no_history'));
  return h('ol', { class: 'timeline' }, history.map((e) => h('li', { class: `tl-${e.kind}` },
    h('span', { class: 'tl-kind', 'data-kind': e.kind }, label('history', e.kind)), ' ', h('span', { class: 'muted' }, t('runs.attempt_n', { n: e.attempt })), ' ', timeEl(e.at),
    e.detail ? h('div', { class: 'tl-detail' }, detailText(e.detail)) : null)));
}

async function detail(page, id, ctx) {
  let run = await get(`/runs/${id}`);
  const task = await get(`/tasks/${run.task_id}`).catch(() => null);
  const errors = errorBox();
  const can = ctx.session.can('operator');
  const head = h('div', {});
  const facts = h('dl', { class: 'facts card', id: 'run-facts' });
  const tl = h('section', { class: 'card' }, h('h2', {}, t('runs.timeline')), h('div', { id: 'timeline' }));
  const cancel = h('button', { type: 'button', class: 'danger', id: 'cancel-run', 'data-mutates': '' }, t('runs.cancel'));
  const retry = h('button', { type: 'button', id: 'retry-run', 'data-mutates': '' }, t('runs.retry'));
  cancel.addEventListener('click', async () => {
    if (!(await confirmDialog(t('runs.confirm_cancel'), t('runs.cancel')))) return;
    await busy(cancel, errors, async () => { await post(`/runs/${id}/cancel`); toast(t('runs.cancel_requested_toast')); await refresh(); });
    refocus(cancel);
  });
  retry.addEventListener('click', () => busy(retry, errors, async () => {
    const r = await post(`/runs/${id}/retry`);
    toast(t('runs.retry_queued'));
    ctx.navigate(`/runs/${r.id}`);
  }));

  // Pinning: a kept run is never pruned by a retention policy.
  const keep = h('input', { type: 'checkbox', id: 'run-keep', name: 'keep', 'data-mutates': '' });
  const keepLabel = h('label', { class: 'check' }, keep, ' ', t('runs.keep'));
  const kept = () => (run.keep ? t('runs.kept_yes') : t('common.no'));
  keep.addEventListener('change', () => busy(keep, errors, async () => {
    try {
      // The answer is the run without its history: keep the timeline already shown.
      const r = await api('PATCH', `/runs/${id}`, { keep: keep.checked });
      run = { ...run, keep: r.keep };
      toast(run.keep ? t('runs.kept_toast') : t('runs.unkept_toast'));
    } finally {
      keep.checked = !!run.keep;
      const dd = facts.querySelector('#run-kept');
      if (dd) dd.textContent = kept();
    }
  }));

  // Cancel gives way to Retry when the run ends: the focus follows to it (or to the heading),
  // never back to the top of the page.
  const refocus = (had) => {
    if (!lostFocus()) return;
    const next = [had, retry, cancel].find((el) => el.isConnected) || head.querySelector('h1');
    if (next) next.focus();
  };
  const drawHead = () => {
    const had = head.contains(document.activeElement) ? document.activeElement : null;
    const terminal = !['queued', 'running'].includes(run.state);
    const actions = [];
    if (can && !terminal) actions.push(cancel);
    if (can && terminal) actions.push(retry);
    if (can) actions.push(keepLabel);
    keep.checked = !!run.keep;
    put(clear(head), heading(t('runs.heading', { id: idText(run.id) }), ...actions),
      h('p', {}, t('runs.state_prefix'), h('span', { id: 'run-state' }, badge(run.state)), run.cancel_requested && !terminal ? t('runs.cancel_requested') : ''));
    put(clear(facts), 
      h('dt', {}, t('common.task')), h('dd', {}, task ? h('a', { href: `#/tasks/${task.id}` }, task.name) : run.task_id),
      h('dt', {}, t('runs.project_version')), h('dd', {}, h('a', { href: `#/projects/${run.project_id}` }, `v${run.project_version}`)),
      h('dt', {}, t('common.attempt')), h('dd', {}, t('runs.attempt_of', { n: run.attempt, max: run.max_attempts })),
      h('dt', {}, t('common.trigger')), h('dd', {}, label('trigger', run.trigger)),
      run.parent_id ? h('dt', {}, t('runs.started_by')) : null,
      run.parent_id ? h('dd', {}, h('a', { href: `#/runs/${run.parent_id}`, id: 'run-parent' }, t('runs.run_prefix'), shortId(run.parent_id))) : null,
      h('dt', {}, t('common.queue')), h('dd', {}, run.queue),
      h('dt', {}, t('common.worker')), h('dd', {}, run.worker_id ? h('code', {}, run.worker_id) : '—'),
      h('dt', {}, t('common.queued')), h('dd', {}, timeEl(run.queued_at)),
      h('dt', {}, t('runs.started')), h('dd', {}, timeEl(run.started_at)),
      h('dt', {}, t('common.finished')), h('dd', {}, timeEl(run.finished_at)),
      h('dt', {}, t('common.duration')), h('dd', {}, fmtDuration(run.duration_ms)),
      h('dt', {}, t('runs.exit_code')), h('dd', {}, run.exit_code ?? '—', run.signal ? t('runs.signal', { signal: run.signal }) : ''),
      h('dt', {}, t('runs.kept')), h('dd', { id: 'run-kept' }, kept()),
      run.params ? h('dt', {}, t('runs.params')) : null,
      run.params ? h('dd', {}, h('code', { id: 'run-params' }, JSON.stringify(run.params))) : null,
      run.overrides ? h('dt', {}, t('runs.overrides')) : null,
      run.overrides ? h('dd', {}, h('code', { id: 'run-overrides' }, JSON.stringify(run.overrides))) : null,
      run.waiting ? h('dt', {}, t('runs.waiting')) : null,
      run.waiting ? h('dd', { id: 'run-waiting', class: 'bad' }, waitingText(run.waiting)) : null,
      h('dt', {}, t('runs.peak_memory')), h('dd', {}, run.peak_rss_kb ? `${fmtNumber(run.peak_rss_kb / 1024, { minimumFractionDigits: 1, maximumFractionDigits: 1 })} MiB` : '—'),
      run.error ? h('dt', {}, t('common.error')) : null, run.error ? h('dd', { class: 'bad' }, run.error) : null);
    put(clear(tl.querySelector('#timeline')), timeline(run.history || []));
    drawAttempts();
    if (had) refocus(had);
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
    const names = Object.fromEntries(tasks.map((x) => [x.id, x.name]));
    put(clear(groupCard), h('h2', {}, t('graph.label')), runGraph(group, names, id));
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
