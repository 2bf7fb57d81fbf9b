// Alert rules: which events alert, for which task (or every task), through which channels and
// how often. Operators manage rules of one task; global rules (no task) are an admin's.

import { get, post, patch, del, getAll } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, toast, confirmDialog, put, fmtDuration } from '../dom.js';
import { alertTabs } from './alerts.js';
import { t, label } from '../i18n.js';

// The events a rule may alert on (`event.*` labels them).
const EVENTS = ['failed', 'timed_out', 'lost', 'consecutive_failures', 'recovered', 'long_running',
  'worker_offline', 'schedule_misfired', 'queue_backlog'];

const invalid = (detail) => Object.assign(new Error(detail), { title: t('common.invalid_input'), detail });

/** A whole number from an input, or undefined when it is empty. */
function num(input, what) {
  const v = input.value.trim();
  if (!v) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw invalid(t('rules.whole_number', { what }));
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
  const tname = Object.fromEntries(tasks.map((x) => [x.id, x.name]));
  const cname = Object.fromEntries((channels || []).map((c) => [c.id, c.name]));
  const mayEdit = (rule) => admin || (ctx.session.can('operator') && !!rule.task_id);

  // --- the form (create, or edit the rule picked in the list) ---------------------------------
  let editing = null;
  const title = h('h2', {}, t('rules.add'));
  const name = h('input', { name: 'rule-name', required: true, maxlength: 128, autocomplete: 'off' });
  const task = h('select', { name: 'rule-task' },
    admin ? h('option', { value: '' }, t('rules.every_task_global')) : h('option', { value: '' }, t('rules.choose_task')),
    tasks.map((x) => h('option', { value: x.id }, x.name)));
  const channelChecks = (channels || []).map((c) => h('input', { type: 'checkbox', name: 'rule-channel', value: c.id }));
  const channelIds = channels ? null : h('input', { name: 'rule-channel-ids', class: 'mono', spellcheck: 'false', autocomplete: 'off' });
  const channelBox = channels
    ? h('fieldset', { id: 'rule-channels' }, h('legend', {}, t('alerts.channels')),
      channels.length
        ? channels.map((c, i) => h('label', { class: 'check' }, channelChecks[i], ` ${c.name}`, c.enabled ? '' : t('rules.disabled_suffix')))
        : h('p', { class: 'empty' }, t('rules.no_channels'), h('a', { href: '#/alerts/channels' }, t('rules.add_one')), t('rules.first')))
    : field(t('rules.channel_ids'), channelIds, t('rules.channel_ids_hint'));
  const onChecks = EVENTS.map((v) => h('input', { type: 'checkbox', name: 'rule-on', value: v }));
  const onBox = h('fieldset', { id: 'rule-on' }, h('legend', {}, t('rules.alert_on')),
    EVENTS.map((v, i) => h('label', { class: 'check' }, onChecks[i], ` ${label('event', v)}`)));
  const consecutive = h('input', { name: 'rule-consecutive', type: 'number', min: 1, max: 100, value: '3' });
  const longRunning = h('input', { name: 'rule-long-running', type: 'number', min: 1 });
  const backlog = h('input', { name: 'rule-backlog', type: 'number', min: 0 });
  const queue = h('input', { name: 'rule-queue', autocomplete: 'off' });
  const throttle = h('input', { name: 'rule-throttle', type: 'number', min: 0, value: '300' });
  const titleTpl = h('input', { name: 'rule-title', autocomplete: 'off', spellcheck: 'false' });
  const bodyTpl = h('textarea', { name: 'rule-body', rows: 3, spellcheck: 'false' });
  const enabled = h('input', { type: 'checkbox', name: 'rule-enabled', checked: true });
  const save = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, t('rules.create'));
  const cancelEdit = h('button', { type: 'button', hidden: true }, t('rules.cancel_edit'));
  const ferr = errorBox();
  const form = h('form', { class: 'card form', id: 'rule-form' }, title, ferr,
    field(t('common.name'), name), field(t('common.task'), task), channelBox, onBox,
    h('div', { class: 'row wrap' },
      field(t('rules.consecutive'), consecutive, t('rules.for_event', { event: label('event', 'consecutive_failures') })),
      field(t('rules.long_running'), longRunning, t('rules.for_event', { event: label('event', 'long_running') }))),
    h('div', { class: 'row wrap' },
      field(t('rules.backlog'), backlog, t('rules.for_event', { event: label('event', 'queue_backlog') })),
      field(t('common.queue'), queue, t('rules.queue_hint'))),
    field(t('rules.throttle'), throttle, t('rules.throttle_hint')),
    field(t('rules.title_tpl'), titleTpl, t('rules.tpl_hint')),
    field(t('rules.body_tpl'), bodyTpl, t('rules.tpl_hint')),
    h('div', { class: 'field' }, h('label', { class: 'check' }, enabled, ' ', t('common.enabled'))),
    h('div', { class: 'row' }, save, cancelEdit));

  const fill = (r) => {
    editing = r;
    title.textContent = r ? t('rules.edit_title', { name: r.name }) : t('rules.add');
    save.textContent = r ? t('rules.save') : t('rules.create');
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
    if (!chosen.length) throw invalid(t('rules.need_channel'));
    const on = onChecks.filter((c) => c.checked).map((c) => c.value);
    if (!on.length) throw invalid(t('rules.need_event'));
    const body = {
      name: name.value.trim(),
      task_id: task.value || null,
      channels: chosen,
      on,
      consecutive: num(consecutive, t('rules.consecutive')) ?? 3,
      long_running_s: num(longRunning, t('rules.long_running')) ?? null,
      backlog: num(backlog, t('rules.backlog')) ?? null,
      queue: queue.value.trim() || null,
      throttle_s: num(throttle, t('rules.throttle')) ?? 300,
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
        toast(t('rules.saved', { name: r.name }));
      } else {
        const r = await post('/notifications/rules', body);
        toast(t('rules.created', { name: r.name }));
      }
      fill(null);
      await load();
    });
  });

  // --- the list --------------------------------------------------------------------------------------
  const load = async () => {
    const res = await get('/notifications/rules');
    put(clear(box), table([t('common.name'), t('common.task'), t('alerts.channels'), t('rules.on'), t('rules.throttle_col'), t('common.enabled'), t('common.actions')], res.items.map((r) => {
      const actions = [h('a', { href: `#/alerts/deliveries?rule=${encodeURIComponent(r.id)}` }, t('alerts.deliveries'))];
      if (mayEdit(r)) {
        const edit = h('button', { type: 'button', 'data-mutates': '' }, t('common.edit'));
        edit.addEventListener('click', () => { fill(r); ferr.show(null); name.focus(); });
        const toggle = h('button', { type: 'button', 'data-mutates': '' }, r.enabled ? t('common.disable') : t('common.enable'));
        toggle.addEventListener('click', () => busy(toggle, errors, async () => {
          await patch(`/notifications/rules/${r.id}`, { enabled: !r.enabled });
          await load();
        }));
        const rm = h('button', { type: 'button', class: 'danger', 'data-mutates': '' }, t('common.delete'));
        rm.addEventListener('click', async () => {
          if (!(await confirmDialog(t('rules.confirm_delete', { name: r.name }), t('common.delete')))) return;
          await busy(rm, errors, async () => {
            await del(`/notifications/rules/${r.id}`);
            if (editing && editing.id === r.id) fill(null);
            toast(t('rules.deleted'));
            await load();
          });
        });
        actions.push(edit, toggle, rm);
      }
      return [
        h('strong', {}, r.name),
        r.task_id ? h('a', { href: `#/tasks/${r.task_id}` }, tname[r.task_id] || r.task_id) : t('rules.every_task'),
        r.channels.map((c) => h('span', { class: 'tag', translate: 'no' }, cname[c] || c)),
        r.on.map((o) => h('span', { class: 'tag', 'data-event': o }, label('event_short', o))),
        r.throttle_s ? fmtDuration(r.throttle_s * 1000) : t('common.none'),
        r.enabled ? t('common.yes') : t('common.no'),
        h('div', { class: 'row' }, actions),
      ];
    }), t('rules.none_yet')));
  };

  const canWrite = ctx.session.can('operator');
  put(page, heading(t('rules.title')), alertTabs(ctx, '/alerts/rules'), errors,
    h('div', { class: 'grid2' }, h('section', { class: 'card' }, box), canWrite ? form : null));
  await load();
}
