// Tasks: list; create and edit (with the schedule builder); a task's page with its next fire
// times, pause/resume, trigger now, stats and run history.

import { get, post, patch, del, query, getAll } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, badge, shortId, fmtDuration, toast, confirmDialog, put } from '../dom.js';
import { scheduleBuilder, fireTime } from './schedule.js';
import { hashQuery } from '../app.js';

export async function render(page, params, ctx) {
  const [id] = params;
  if (ctx.path === '/tasks/new') return form(page, null, ctx);
  if (!id) return list(page, ctx);
  if (ctx.path.endsWith('/edit')) return form(page, id, ctx);
  return detail(page, id, ctx);
}

export function scheduleText(s) {
  if (!s) return 'manual';
  if (s.kind === 'cron') return `cron ${s.cron} (${s.timezone})`;
  if (s.kind === 'interval') return `every ${fmtDuration(s.every_s * 1000)}`;
  return `once at ${new Date(s.at).toLocaleString()}`;
}

async function list(page, ctx) {
  const [tasks, projects] = await Promise.all([getAll('/tasks'), getAll('/projects')]);
  const pname = Object.fromEntries(projects.map((p) => [p.id, p.name]));
  put(page, 
    heading('Tasks', ctx.session.can('operator') ? h('a', { class: 'button primary', href: '#/tasks/new', 'data-mutates': '' }, 'New task') : null),
    h('section', { class: 'card' }, table(['Name', 'Project', 'Schedule', 'Next fire', 'Status', 'Queue'], tasks.map((t) => [
      h('a', { href: `#/tasks/${t.id}` }, t.name),
      h('a', { href: `#/projects/${t.project_id}` }, pname[t.project_id] || t.project_id),
      scheduleText(t.schedule),
      t.schedule && !t.paused ? timeEl(t.next_fire_at) : '—',
      t.paused ? badge('paused') : badge('active'),
      t.queue,
    ]), 'No tasks yet.')));
}

function lines(text) {
  return text.split('\n').map((l) => l.trim()).filter(Boolean);
}

function pairs(text, what) {
  const out = {};
  for (const l of lines(text)) {
    const i = l.indexOf('=');
    if (i <= 0) throw Object.assign(new Error(`${what}: "${l}" is not KEY=VALUE`), { title: 'Invalid input', detail: `${what}: "${l}" is not KEY=VALUE` });
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
    h('option', { value: '' }, '— choose a project —'),
    projects.map((p) => h('option', { value: p.id }, p.name)));
  project.value = task ? task.project_id : (hashQuery().get('project') || '');
  const entry = h('select', { name: 'entrypoint' });
  const fillEntries = async () => {
    put(clear(entry), h('option', { value: '' }, 'project default'));
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
  const overlap = h('select', { name: 'overlap' }, ['allow', 'skip', 'queue_one', 'cancel_previous'].map((v) => h('option', { value: v }, v.replace('_', ' '))));
  overlap.value = spec.overlap;
  const misfire = h('select', { name: 'misfire' }, ['fire_once', 'skip', 'catch_up'].map((v) => h('option', { value: v }, v.replace('_', ' '))));
  misfire.value = spec.misfire;
  const priority = h('input', { name: 'priority', type: 'number', min: -1000, max: 1000, value: String(spec.priority) });
  const sched = scheduleBuilder(task ? task.schedule : null, task ? task.created_at : '');
  const submit = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, task ? 'Save task' : 'Create task');
  const f = h('form', { class: 'card form', id: 'task-form' }, errors,
    h('div', { class: 'grid2' },
      h('div', {}, field('Name', name), field('Project', project), field('Entrypoint', entry),
        field('Arguments', args, 'One per line.'), field('Environment', env, 'KEY=VALUE, one per line.'),
        field('Secrets', secrets, 'Names of secrets to pass as environment variables, comma separated.'),
        field('Queue', queue), field('Labels', labels, 'KEY=VALUE, one per line.')),
      h('div', {}, sched.el,
        h('fieldset', {}, h('legend', {}, 'Execution'),
          h('div', { class: 'row wrap' }, field('Timeout (s)', timeout), field('Max attempts', attempts), field('Retry backoff (s)', backoff), field('Priority', priority)),
          h('div', { class: 'row wrap' }, field('When runs overlap', overlap), field('Missed fire times', misfire))))),
    h('div', { class: 'row' }, submit, h('a', { class: 'button', href: task ? `#/tasks/${id}` : '#/tasks' }, 'Cancel')));
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, errors, async () => {
      const body = {
        name: name.value.trim(),
        project_id: project.value,
        entrypoint: entry.value || null,
        args: lines(args.value),
        env: pairs(env.value, 'Environment'),
        secrets: secrets.value.split(/[\s,]+/).filter(Boolean),
        queue: queue.value.trim() || 'default',
        labels: pairs(labels.value, 'Labels'),
        schedule: sched.value(),
        timeout_s: Number(timeout.value),
        retry: { max_attempts: Number(attempts.value), backoff_s: Number(backoff.value) },
        overlap: overlap.value,
        misfire: misfire.value,
        priority: Number(priority.value),
      };
      if (!body.project_id) throw Object.assign(new Error('choose a project'), { title: 'Project', detail: 'choose a project' });
      const saved = task ? await patch(`/tasks/${id}`, body) : await post('/tasks', body);
      toast(task ? 'Task saved' : 'Task created');
      ctx.navigate(`/tasks/${saved.id}`);
    });
  });
  put(page, heading(task ? `Edit ${task.name}` : 'New task'), f);
  await fillEntries();
  name.focus();
}

/** What a task's runs start when they end, and what it waits for: `dt`/`dd` pairs, none when empty. */
function links(s, names) {
  const name = (id) => h('a', { href: `#/tasks/${id}` }, names[id] || shortId(id));
  const list = (entries) => entries.flatMap((e, i) => [i ? ', ' : '', name(e.task || e), e.for_each ? ` (each of ${e.for_each})` : '']);
  return [['On success', s.on_success], ['On failure', s.on_failure], ['On complete', s.on_complete], ['Needs', (s.needs || []).map((t) => ({ task: t }))]]
    .filter(([, entries]) => entries && entries.length)
    .flatMap(([label, entries]) => [h('dt', {}, label), h('dd', { class: 'task-links' }, list(entries))]);
}

async function detail(page, id, ctx) {
  const [task, preview, stats, all] = await Promise.all([get(`/tasks/${id}`), get(`/tasks/${id}/preview`), get(`/tasks/${id}/stats`), getAll('/tasks')]);
  const names = Object.fromEntries(all.map((t) => [t.id, t.name]));
  let project = null;
  try { project = await get(`/projects/${task.project_id}`); } catch (_) { /* deleted */ }
  const errors = errorBox();
  const can = ctx.session.can('operator');
  const actions = [];
  if (can) {
    const trigger = h('button', { type: 'button', class: 'primary', id: 'trigger', 'data-mutates': '' }, 'Trigger now');
    trigger.addEventListener('click', () => busy(trigger, errors, async () => {
      const run = await post(`/tasks/${id}/trigger`);
      toast('Run queued');
      ctx.navigate(`/runs/${run.id}`);
    }));
    const pause = h('button', { type: 'button', 'data-mutates': '' }, task.paused ? 'Resume' : 'Pause');
    pause.addEventListener('click', () => busy(pause, errors, async () => {
      await post(`/tasks/${id}/${task.paused ? 'resume' : 'pause'}`);
      toast(task.paused ? 'Task resumed' : 'Task paused');
      ctx.navigate(`/tasks/${id}`);
    }));
    const edit = h('a', { class: 'button', href: `#/tasks/${id}/edit`, 'data-mutates': '' }, 'Edit');
    const rm = h('button', { type: 'button', class: 'danger', 'data-mutates': '' }, 'Delete');
    rm.addEventListener('click', async () => {
      if (!(await confirmDialog(`Delete task ${task.name}?`, 'Delete'))) return;
      await busy(rm, errors, async () => { await del(`/tasks/${id}`); toast('Task deleted'); ctx.navigate('/tasks'); });
    });
    actions.push(trigger, pause, edit, rm);
  }
  const history = h('div', {});
  const more = h('button', { type: 'button', hidden: true }, 'Load more');
  let cursor = '';
  const runs = [];
  const loadRuns = async () => {
    const res = await get(`/runs${query({ task_id: id, limit: 25, cursor })}`);
    runs.push(...res.items);
    cursor = res.next_cursor || '';
    more.hidden = !cursor;
    put(clear(history), table(['Run', 'State', 'Attempt', 'Trigger', 'Queued', 'Duration', 'Exit'], runs.map((r) => [
      h('a', { href: `#/runs/${r.id}` }, shortId(r.id)), badge(r.state), `${r.attempt}/${r.max_attempts}`, r.trigger,
      timeEl(r.queued_at), fmtDuration(r.duration_ms), r.exit_code ?? '—',
    ]), 'No runs yet.'));
  };
  more.addEventListener('click', () => busy(more, errors, loadRuns));
  const s = task;
  put(page, 
    heading(task.name, ...actions), errors,
    h('div', { class: 'grid2' },
      h('dl', { class: 'facts card' },
        h('dt', {}, 'Status'), h('dd', {}, task.paused ? badge('paused') : badge('active')),
        h('dt', {}, 'Project'), h('dd', {}, project ? h('a', { href: `#/projects/${project.id}` }, `${project.name} (v${project.current_version})`) : task.project_id),
        h('dt', {}, 'Entrypoint'), h('dd', {}, h('code', {}, s.entrypoint || (project ? project.version.entrypoint : 'default'))),
        h('dt', {}, 'Arguments'), h('dd', {}, s.args.length ? h('code', {}, s.args.join(' ')) : 'none'),
        h('dt', {}, 'Environment'), h('dd', {}, Object.keys(s.env).length ? Object.keys(s.env).join(', ') : 'none'),
        h('dt', {}, 'Secrets'), h('dd', {}, (s.secrets || []).length ? s.secrets.join(', ') : 'none'),
        h('dt', {}, 'Queue'), h('dd', {}, s.queue),
        h('dt', {}, 'Timeout'), h('dd', {}, fmtDuration(s.timeout_s * 1000)),
        h('dt', {}, 'Retries'), h('dd', {}, `${s.retry.max_attempts} attempt(s), backoff ${s.retry.backoff_s} s`),
        h('dt', {}, 'Overlap / misfire'), h('dd', {}, `${s.overlap} / ${s.misfire}`),
        links(s, names)),
      h('section', { class: 'card' }, h('h2', {}, 'Schedule'), h('p', {}, scheduleText(task.schedule)),
        preview.description ? h('p', { class: 'schedule-description' }, preview.description) : null,
        task.schedule ? h('div', {}, h('h3', {}, task.paused ? 'Next fire times when resumed (your local time)' : 'Next 5 fire times (your local time)'),
          preview.next.length ? h('ol', { class: 'next-times' }, preview.next.map((t) => fireTime(t, task.schedule))) : h('p', {}, 'Never fires again.')) : null,
        h('h3', {}, 'Stats (latest runs)'),
        h('p', {}, Object.entries(stats.counts).filter(([, n]) => n).map(([k, n]) => h('span', { class: 'stat-pill' }, badge(k), ` ${n}`)),
          stats.runs ? ` p50 ${fmtDuration(stats.duration_ms_p50)}, p95 ${fmtDuration(stats.duration_ms_p95)}` : 'No runs yet.'))),
    h('section', { class: 'card' }, h('h2', {}, 'Run history'), history, more));
  await loadRuns();
}
