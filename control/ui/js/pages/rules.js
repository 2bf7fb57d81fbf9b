// Alert rules: which events alert, for which task (or every task), through which channels and
// how often. Operators manage rules of one task; global rules (no task) are an admin's.

import { get, post, patch, del, getAll } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, toast, confirmDialog, put, fmtDuration } from '../dom.js';
import { alertTabs } from './alerts.js';

const EVENTS = [
  ['failed', 'Run failed'],
  ['timed_out', 'Run timed out'],
  ['lost', 'Run lost'],
  ['consecutive_failures', 'Consecutive failures'],
  ['recovered', 'Recovered after failures'],
  ['long_running', 'Running too long'],
  ['worker_offline', 'Worker offline'],
  ['schedule_misfired', 'Schedule misfired'],
  ['queue_backlog', 'Queue backlog'],
];

const invalid = (detail) => Object.assign(new Error(detail), { title: 'Invalid input', detail });

/** A whole number from an input, or undefined when it is empty. */
function num(input, what) {
  const v = input.value.trim();
  if (!v) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw invalid(`${what}: a whole number`);
  return n;
}

export async function render(page, params, ctx) {
  const admin = ctx.session.can('admin');
  const errors = errorBox();
  const box = h('div', {});
  const [tasks, channels] = await Promise.all([
    getAll('/tasks'),
    // Only admins may list channels; others see the ids their rules name.
    admin ? get('/notifications/channels').then((r) => r.items) : Promise.resolve(null),
  ]);
  const tname = Object.fromEntries(tasks.map((t) => [t.id, t.name]));
  const cname = Object.fromEntries((channels || []).map((c) => [c.id, c.name]));
  const mayEdit = (rule) => admin || (ctx.session.can('operator') && !!rule.task_id);

  // --- the form (create, or edit the rule picked in the list) ---------------------------------
  let editing = null;
  const title = h('h2', {}, 'Add a rule');
  const name = h('input', { name: 'rule-name', required: true, maxlength: 128, autocomplete: 'off' });
  const task = h('select', { name: 'rule-task' },
    admin ? h('option', { value: '' }, 'Every task (global)') : h('option', { value: '' }, '— choose a task —'),
    tasks.map((t) => h('option', { value: t.id }, t.name)));
  const channelChecks = (channels || []).map((c) => h('input', { type: 'checkbox', name: 'rule-channel', value: c.id }));
  const channelIds = channels ? null : h('input', { name: 'rule-channel-ids', class: 'mono', spellcheck: 'false', autocomplete: 'off' });
  const channelBox = channels
    ? h('fieldset', { id: 'rule-channels' }, h('legend', {}, 'Channels'),
      channels.length
        ? channels.map((c, i) => h('label', { class: 'check' }, channelChecks[i], ` ${c.name}`, c.enabled ? '' : ' (disabled)'))
        : h('p', { class: 'empty' }, 'No channels yet: ', h('a', { href: '#/alerts/channels' }, 'add one'), ' first.'))
    : field('Channel ids', channelIds, 'Comma-separated; an admin can tell you the ids of the channels.');
  const onChecks = EVENTS.map(([v]) => h('input', { type: 'checkbox', name: 'rule-on', value: v }));
  const onBox = h('fieldset', { id: 'rule-on' }, h('legend', {}, 'Alert on'),
    EVENTS.map(([, label], i) => h('label', { class: 'check' }, onChecks[i], ` ${label}`)));
  const consecutive = h('input', { name: 'rule-consecutive', type: 'number', min: 1, max: 100, value: '3' });
  const longRunning = h('input', { name: 'rule-long-running', type: 'number', min: 1 });
  const backlog = h('input', { name: 'rule-backlog', type: 'number', min: 0 });
  const queue = h('input', { name: 'rule-queue', autocomplete: 'off' });
  const throttle = h('input', { name: 'rule-throttle', type: 'number', min: 0, value: '300' });
  const titleTpl = h('input', { name: 'rule-title', autocomplete: 'off', spellcheck: 'false' });
  const bodyTpl = h('textarea', { name: 'rule-body', rows: 3, spellcheck: 'false' });
  const enabled = h('input', { type: 'checkbox', name: 'rule-enabled', checked: true });
  const save = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, 'Create rule');
  const cancelEdit = h('button', { type: 'button', hidden: true }, 'Cancel editing');
  const ferr = errorBox();
  const form = h('form', { class: 'card form', id: 'rule-form' }, title, ferr,
    field('Name', name), field('Task', task), channelBox, onBox,
    h('div', { class: 'row wrap' },
      field('Consecutive failures', consecutive, 'For “consecutive failures”.'),
      field('Long running (s)', longRunning, 'For “running too long”.')),
    h('div', { class: 'row wrap' },
      field('Backlog (jobs)', backlog, 'For “queue backlog”.'),
      field('Queue', queue, 'For “queue backlog”; empty watches every queue.')),
    field('Throttle (s)', throttle, 'At most one alert per this many seconds per task, worker or queue; the rest arrive as one digest.'),
    field('Title template', titleTpl, 'Optional; empty uses the default.'),
    field('Body template', bodyTpl, 'Optional; empty uses the default.'),
    h('div', { class: 'field' }, h('label', { class: 'check' }, enabled, ' Enabled')),
    h('div', { class: 'row' }, save, cancelEdit));

  const fill = (r) => {
    editing = r;
    title.textContent = r ? `Edit rule ${r.name}` : 'Add a rule';
    save.textContent = r ? 'Save rule' : 'Create rule';
    cancelEdit.hidden = !r;
    name.value = r ? r.name : '';
    task.value = r && r.task_id ? r.task_id : '';
    for (const c of channelChecks) c.checked = !!r && r.channels.includes(c.value);
    if (channelIds) channelIds.value = r ? r.channels.join(', ') : '';
    for (const c of onChecks) c.checked = !!r && r.on.includes(c.value);
    consecutive.value = String(r ? r.consecutive : 3);
    longRunning.value = r && r.long_running_s ? String(r.long_running_s) : '';
    backlog.value = r && r.backlog !== null && r.backlog !== undefined ? String(r.backlog) : '';
    queue.value = r && r.queue ? r.queue : '';
    throttle.value = String(r ? r.throttle_s : 300);
    titleTpl.value = r && r.title ? r.title : '';
    bodyTpl.value = r && r.body ? r.body : '';
    enabled.checked = r ? r.enabled : true;
  };
  const read = () => {
    const chosen = channels
      ? channelChecks.filter((c) => c.checked).map((c) => c.value)
      : channelIds.value.split(',').map((x) => x.trim()).filter(Boolean);
    if (!chosen.length) throw invalid('channels: choose at least one channel');
    const on = onChecks.filter((c) => c.checked).map((c) => c.value);
    if (!on.length) throw invalid('on: choose at least one event');
    const body = {
      name: name.value.trim(),
      task_id: task.value || null,
      channels: chosen,
      on,
      consecutive: num(consecutive, 'consecutive') ?? 3,
      long_running_s: num(longRunning, 'long_running_s') ?? null,
      backlog: num(backlog, 'backlog') ?? null,
      queue: queue.value.trim() || null,
      throttle_s: num(throttle, 'throttle_s') ?? 300,
      title: titleTpl.value.trim() ? titleTpl.value : null,
      body: bodyTpl.value.trim() ? bodyTpl.value : null,
      enabled: enabled.checked,
    };
    return body;
  };
  cancelEdit.addEventListener('click', () => { fill(null); ferr.show(null); });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(save, ferr, async () => {
      const body = read();
      if (editing) {
        const r = await patch(`/notifications/rules/${editing.id}`, body);
        toast(`Rule ${r.name} saved`);
      } else {
        const r = await post('/notifications/rules', body);
        toast(`Rule ${r.name} created`);
      }
      fill(null);
      await load();
    });
  });

  // --- the list --------------------------------------------------------------------------------------
  const load = async () => {
    const res = await get('/notifications/rules');
    put(clear(box), table(['Name', 'Task', 'Channels', 'On', 'Throttle', 'Enabled', 'Actions'], res.items.map((r) => {
      const actions = [h('a', { href: `#/alerts/deliveries?rule=${encodeURIComponent(r.id)}` }, 'Deliveries')];
      if (mayEdit(r)) {
        const edit = h('button', { type: 'button', 'data-mutates': '' }, 'Edit');
        edit.addEventListener('click', () => { fill(r); ferr.show(null); name.focus(); });
        const toggle = h('button', { type: 'button', 'data-mutates': '' }, r.enabled ? 'Disable' : 'Enable');
        toggle.addEventListener('click', () => busy(toggle, errors, async () => {
          await patch(`/notifications/rules/${r.id}`, { enabled: !r.enabled });
          await load();
        }));
        const rm = h('button', { type: 'button', class: 'danger', 'data-mutates': '' }, 'Delete');
        rm.addEventListener('click', async () => {
          if (!(await confirmDialog(`Delete rule ${r.name}?`, 'Delete'))) return;
          await busy(rm, errors, async () => {
            await del(`/notifications/rules/${r.id}`);
            if (editing && editing.id === r.id) fill(null);
            toast('Rule deleted');
            await load();
          });
        });
        actions.push(edit, toggle, rm);
      }
      return [
        h('strong', {}, r.name),
        r.task_id ? h('a', { href: `#/tasks/${r.task_id}` }, tname[r.task_id] || r.task_id) : 'every task',
        r.channels.map((c) => h('span', { class: 'tag' }, cname[c] || c)),
        r.on.map((o) => h('span', { class: 'tag' }, o.replace(/_/g, ' '))),
        r.throttle_s ? fmtDuration(r.throttle_s * 1000) : 'none',
        r.enabled ? 'yes' : 'no',
        h('div', { class: 'row' }, actions),
      ];
    }), 'No rules yet.'));
  };

  const canWrite = ctx.session.can('operator');
  put(page, heading('Alert rules'), alertTabs(ctx, '/alerts/rules'), errors,
    h('div', { class: 'grid2' }, h('section', { class: 'card' }, box), canWrite ? form : null));
  await load();
}
