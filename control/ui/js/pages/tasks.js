// Tasks: list; create and edit (with the schedule builder); a task's page with its next fire
// times, pause/resume, trigger now, run analysis (`analysis.js`) and run history.

import { get, post, patch, del, query, getAll } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, fmtTime, badge, shortId, fmtDuration, toast, confirmDialog, put } from '../dom.js';
import { scheduleBuilder, fireTime } from './schedule.js';
import { runAnalysis } from './analysis.js';
import { hashQuery } from '../app.js';
import { t, label } from '../i18n.js';
import { describeInto } from '../reading.js';

export async function render(page, params, ctx) {
  const [id] = params;
  if (ctx.path === '/tasks/new') return form(page, null, ctx);
  if (!id) return list(page, ctx);
  if (ctx.path.endsWith('/edit')) return form(page, id, ctx);
  return detail(page, id, ctx);
}

export function scheduleText(s) {
  if (!s) return t('tasks.sched_manual');
  if (s.kind === 'cron') return t('tasks.sched_cron', { cron: s.cron, zone: s.timezone });
  if (s.kind === 'interval') return t('tasks.sched_every', { every: fmtDuration(s.every_s * 1000) });
  return t('tasks.sched_once', { at: fmtTime(s.at) });
}

async function list(page, ctx) {
  const [tasks, projects] = await Promise.all([getAll('/tasks'), getAll('/projects')]);
  const pname = Object.fromEntries(projects.map((p) => [p.id, p.name]));
  put(page, 
    heading(t('tasks.title'), ctx.session.can('operator') ? h('a', { class: 'button primary', href: '#/tasks/new', 'data-mutates': '' }, t('tasks.new')) : null),
    h('section', { class: 'card' }, table([t('common.name'), t('common.project'), t('tasks.schedule'), t('tasks.next_fire'), t('common.status'), t('common.queue')], tasks.map((task) => [
      h('a', { href: `#/tasks/${task.id}` }, task.name),
      h('a', { href: `#/projects/${task.project_id}` }, pname[task.project_id] || task.project_id),
      scheduleText(task.schedule),
      task.schedule && !task.paused ? timeEl(task.next_fire_at) : '—',
      task.paused ? badge('paused') : badge('active'),
      task.queue,
    ]), t('tasks.none_yet'))));
}

function lines(text) {
  return text.split('\n').map((l) => l.trim()).filter(Boolean);
}

function pairs(text, what) {
  const out = {};
  for (const l of lines(text)) {
    const i = l.indexOf('=');
    if (i <= 0) {
      const detail = t('tasks.not_pair', { what, line: l });
      throw Object.assign(new Error(detail), { title: t('common.invalid_input'), detail });
    }
    out[l.slice(0, i).trim()] = l.slice(i + 1);
  }
  return out;
}

const unpairs = (o) => Object.entries(o || {}).map(([k, v]) => `${k}=${v}`).join('\n');

async function form(page, id, ctx) {
  const [task, projects] = await Promise.all([id ? get(`/tasks/${id}`) : null, getAll('/projects')]);
  const errors = errorBox();
  const spec = task ? task : { args: [], env: {}, labels: {}, queue: 'default', timeout_s: 3600, retry: { max_attempts: 1, backoff_s: 5, max_backoff_s: 300 }, overlap: 'allow', misfire: 'fire_once', priority: 0 };
  const name = h('input', { name: 'name', required: true, maxlength: 100, value: task ? task.name : '' });
  const project = h('select', { name: 'project', required: true },
    h('option', { value: '' }, t('tasks.choose_project')),
    projects.map((p) => h('option', { value: p.id }, p.name)));
  project.value = task ? task.project_id : (hashQuery().get('project') || '');
  const entry = h('select', { name: 'entrypoint' });
  const fillEntries = async () => {
    put(clear(entry), h('option', { value: '' }, t('tasks.project_default')));
    if (!project.value) return;
    try {
      const p = await get(`/projects/${project.value}`);
      for (const f of p.version.files.filter((f) => f.endsWith('.py'))) entry.append(h('option', { value: f }, f));
      entry.value = spec.entrypoint && task && task.project_id === project.value ? spec.entrypoint : '';
    } catch (e) { errors.show(e); }
  };
  project.addEventListener('change', fillEntries);
  const args = h('textarea', { name: 'args', rows: 2, value: (spec.args || []).join('\n') });
  const env = h('textarea', { name: 'env', rows: 3, value: unpairs(spec.env), spellcheck: 'false' });
  const secrets = h('input', { name: 'secrets', value: (spec.secrets || []).join(', '), class: 'mono', spellcheck: 'false' });
  const queue = h('input', { name: 'queue', value: spec.queue });
  const labels = h('textarea', { name: 'labels', rows: 2, value: unpairs(spec.labels) });
  const timeout = h('input', { name: 'timeout_s', type: 'number', min: 1, value: String(spec.timeout_s) });
  const attempts = h('input', { name: 'max_attempts', type: 'number', min: 1, max: 100, value: String(spec.retry.max_attempts) });
  const backoff = h('input', { name: 'backoff_s', type: 'number', min: 0, value: String(spec.retry.backoff_s) });
  const overlap = h('select', { name: 'overlap' }, ['allow', 'skip', 'queue_one', 'cancel_previous'].map((v) => h('option', { value: v }, label('overlap', v))));
  overlap.value = spec.overlap;
  const misfire = h('select', { name: 'misfire' }, ['fire_once', 'skip', 'catch_up'].map((v) => h('option', { value: v }, label('misfire', v))));
  misfire.value = spec.misfire;
  const priority = h('input', { name: 'priority', type: 'number', min: -1000, max: 1000, value: String(spec.priority) });
  const sched = scheduleBuilder(task ? task.schedule : null, task ? task.created_at : '');
  const submit = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, task ? t('tasks.save') : t('tasks.create'));
  const f = h('form', { class: 'card form', id: 'task-form' }, errors,
    h('div', { class: 'grid2' },
      h('div', {}, field(t('common.name'), name), field(t('common.project'), project), field(t('common.entrypoint'), entry),
        field(t('tasks.arguments'), args, t('tasks.one_per_line')), field(t('tasks.environment'), env, t('tasks.pairs_hint')),
        field(t('common.secrets'), secrets, t('tasks.secrets_hint')),
        field(t('common.queue'), queue), field(t('common.labels'), labels, t('tasks.pairs_hint'))),
      h('div', {}, sched.el,
        h('fieldset', {}, h('legend', {}, t('tasks.execution')),
          h('div', { class: 'row wrap' }, field(t('tasks.timeout_s'), timeout), field(t('tasks.max_attempts'), attempts), field(t('tasks.backoff_s'), backoff), field(t('tasks.priority'), priority)),
          h('div', { class: 'row wrap' }, field(t('tasks.overlap'), overlap), field(t('tasks.misfire'), misfire))))),
    h('div', { class: 'row' }, submit, h('a', { class: 'button', href: task ? `#/tasks/${id}` : '#/tasks' }, t('common.cancel'))));
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, errors, async () => {
      const body = {
        name: name.value.trim(),
        project_id: project.value,
        entrypoint: entry.value || null,
        args: lines(args.value),
        env: pairs(env.value, t('tasks.environment')),
        secrets: secrets.value.split(/[\s,]+/).filter(Boolean),
        queue: queue.value.trim() || 'default',
        labels: pairs(labels.value, t('common.labels')),
        schedule: sched.value(),
        timeout_s: Number(timeout.value),
        retry: { max_attempts: Number(attempts.value), backoff_s: Number(backoff.value) },
        overlap: overlap.value,
        misfire: misfire.value,
        priority: Number(priority.value),
      };
      if (!body.project_id) throw Object.assign(new Error(t('tasks.choose_a_project')), { title: t('common.project'), detail: t('tasks.choose_a_project') });
      const saved = task ? await patch(`/tasks/${id}`, body) : await post('/tasks', body);
      toast(task ? t('tasks.saved') : t('tasks.created'));
      ctx.navigate(`/tasks/${saved.id}`);
    });
  });
  put(page, heading(task ? t('tasks.edit_title', { name: task.name }) : t('tasks.new')), f);
  await fillEntries();
  name.focus();
}

/** What a task's runs start when they end, and what it waits for: `dt`/`dd` pairs, none when empty. */
function links(s, names) {
  const name = (id) => h('a', { href: `#/tasks/${id}` }, names[id] || shortId(id));
  const list = (entries) => entries.flatMap((e, i) => [i ? t('common.list_sep') : '', name(e.task || e), e.for_each ? t('tasks.each_of', { field: e.for_each }) : '']);
  return [[t('tasks.on_success'), s.on_success], [t('tasks.on_failure'), s.on_failure], [t('tasks.on_complete'), s.on_complete], [t('tasks.needs'), (s.needs || []).map((x) => ({ task: x }))]]
    .filter(([, entries]) => entries && entries.length)
    .flatMap(([label, entries]) => [h('dt', {}, label), h('dd', { class: 'task-links' }, list(entries))]);
}

/** The schedule in words (see reading.js). */
function describedAs(schedule, text) {
  const p = h('p', { class: 'schedule-description' });
  describeInto(p, schedule, text);
  return p;
}

async function detail(page, id, ctx) {
  const [task, preview, all] = await Promise.all([get(`/tasks/${id}`), get(`/tasks/${id}/preview`), getAll('/tasks')]);
  const names = Object.fromEntries(all.map((x) => [x.id, x.name]));
  let project = null;
  try { project = await get(`/projects/${task.project_id}`); } catch (_) { /* deleted */ }
  const errors = errorBox();
  const can = ctx.session.can('operator');
  const actions = [];
  if (can) {
    const trigger = h('button', { type: 'button', class: 'primary', id: 'trigger', 'data-mutates': '' }, t('tasks.trigger_now'));
    trigger.addEventListener('click', () => busy(trigger, errors, async () => {
      const run = await post(`/tasks/${id}/trigger`);
      toast(t('tasks.run_queued'));
      ctx.navigate(`/runs/${run.id}`);
    }));
    const pause = h('button', { type: 'button', 'data-mutates': '' }, task.paused ? t('tasks.resume') : t('tasks.pause'));
    pause.addEventListener('click', () => busy(pause, errors, async () => {
      await post(`/tasks/${id}/${task.paused ? 'resume' : 'pause'}`);
      toast(task.paused ? t('tasks.resumed') : t('tasks.paused'));
      ctx.navigate(`/tasks/${id}`);
    }));
    const edit = h('a', { class: 'button', href: `#/tasks/${id}/edit`, 'data-mutates': '' }, t('common.edit'));
    const rm = h('button', { type: 'button', class: 'danger', 'data-mutates': '' }, t('common.delete'));
    rm.addEventListener('click', async () => {
      if (!(await confirmDialog(t('tasks.confirm_delete', { name: task.name }), t('common.delete')))) return;
      await busy(rm, errors, async () => { await del(`/tasks/${id}`); toast(t('tasks.deleted')); ctx.navigate('/tasks'); });
    });
    actions.push(trigger, pause, edit, rm);
  }
  const history = h('div', {});
  const more = h('button', { type: 'button', hidden: true }, t('common.load_more'));
  let cursor = '';
  const runs = [];
  const loadRuns = async () => {
    const res = await get(`/runs${query({ task_id: id, limit: 25, cursor })}`);
    runs.push(...res.items);
    cursor = res.next_cursor || '';
    more.hidden = !cursor;
    put(clear(history), table([t('common.run'), t('common.state'), t('common.attempt'), t('common.trigger'), t('common.queued'), t('common.duration'), t('common.exit')], runs.map((r) => [
      h('a', { href: `#/runs/${r.id}` }, shortId(r.id)), badge(r.state), `${r.attempt}/${r.max_attempts}`, label('trigger', r.trigger),
      timeEl(r.queued_at), fmtDuration(r.duration_ms), r.exit_code ?? '—',
    ]), t('common.no_runs_yet')));
  };
  more.addEventListener('click', () => busy(more, errors, loadRuns));
  const s = task;
  put(page, 
    heading(task.name, ...actions), errors,
    h('div', { class: 'grid2' },
      h('dl', { class: 'facts card' },
        h('dt', {}, t('common.status')), h('dd', {}, task.paused ? badge('paused') : badge('active')),
        h('dt', {}, t('common.project')), h('dd', {}, project ? h('a', { href: `#/projects/${project.id}` }, `${project.name} (v${project.current_version})`) : task.project_id),
        h('dt', {}, t('common.entrypoint')), h('dd', {}, h('code', {}, s.entrypoint || (project ? project.version.entrypoint : t('tasks.default')))),
        h('dt', {}, t('tasks.arguments')), h('dd', {}, s.args.length ? h('code', {}, s.args.join(' ')) : t('common.none')),
        h('dt', {}, t('tasks.environment')), h('dd', {}, Object.keys(s.env).length ? Object.keys(s.env).join(', ') : t('common.none')),
        h('dt', {}, t('common.secrets')), h('dd', {}, (s.secrets || []).length ? s.secrets.join(', ') : t('common.none')),
        h('dt', {}, t('common.queue')), h('dd', {}, s.queue),
        h('dt', {}, t('tasks.timeout')), h('dd', {}, fmtDuration(s.timeout_s * 1000)),
        h('dt', {}, t('tasks.retries')), h('dd', {}, t('tasks.retries_value', { n: s.retry.max_attempts, backoff: s.retry.backoff_s })),
        h('dt', {}, t('tasks.overlap_misfire')), h('dd', {}, `${label('overlap', s.overlap)} / ${label('misfire', s.misfire)}`),
        links(s, names)),
      h('section', { class: 'card' }, h('h2', {}, t('tasks.schedule')), h('p', {}, scheduleText(task.schedule)),
        preview.description ? describedAs(task.schedule, preview.description) : null,
        task.schedule ? h('div', {}, h('h3', {}, task.paused ? t('tasks.next_when_resumed') : t('tasks.next_5')),
          preview.next.length ? h('ol', { class: 'next-times' }, preview.next.map((x) => fireTime(x, task.schedule))) : h('p', {}, t('tasks.never_again'))) : null)),
    runAnalysis(id),
    h('section', { class: 'card' }, h('h2', {}, t('tasks.history')), history, more));
  await loadRuns();
}
