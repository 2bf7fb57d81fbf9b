// Retention (admin): how long ended runs and the audit trail are kept, and a preview of what
// the pruner would delete now. An empty field keeps forever; a pinned run is never pruned.

import { get, api, getAll } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, toast, put } from '../dom.js';

const FIELDS = [
  ['runs_days', 'Delete ended runs after (days)', 'Empty keeps runs whatever their age.'],
  ['runs_keep_last', 'Keep only the newest runs per task', 'Empty keeps runs whatever their number.'],
  ['audit_days', 'Delete audit entries after (days)', 'Empty keeps the audit trail forever.'],
];

export async function render(page, params, ctx) {
  const errors = errorBox();
  const policy = await get('/retention');
  const inputs = Object.fromEntries(FIELDS.map(([k]) => [k, h('input', { name: k, type: 'number', min: 1, value: policy[k] ?? '' })]));
  const save = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, 'Save policy');
  const ferr = errorBox();
  const form = h('form', { class: 'card form', id: 'retention-form' }, h('h2', {}, 'Global policy'), ferr,
    FIELDS.map(([k, label, hint]) => field(label, inputs[k], hint)),
    h('p', { class: 'hint' }, 'A task’s own retention replaces these for its runs; a run marked “keep” is never pruned.'),
    save);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(save, ferr, async () => {
      const body = {};
      for (const [k] of FIELDS) {
        const v = inputs[k].value.trim();
        body[k] = v ? Number(v) : null;
      }
      await api('PUT', '/retention', body);
      toast('Retention policy saved');
      preview.hidden = true;
    });
  });

  const preview = h('div', { id: 'retention-preview', 'aria-live': 'polite', hidden: true });
  const show = h('button', { type: 'button', id: 'retention-preview-button' }, 'Preview');
  show.addEventListener('click', () => busy(show, errors, async () => {
    const [p, tasks] = await Promise.all([get('/retention/preview'), getAll('/tasks')]);
    const tname = Object.fromEntries(tasks.map((t) => [t.id, t.name]));
    put(clear(preview),
      h('p', {}, `The pruner would delete ${p.runs} run${p.runs === 1 ? '' : 's'} (at most) and ${p.audit} audit entr${p.audit === 1 ? 'y' : 'ies'} now.`),
      table(['Applies to', 'Ended before', 'Runs'], p.slices.map((s) => [
        s.task_id ? h('a', { href: `#/tasks/${s.task_id}` }, tname[s.task_id] || s.task_id) : 'tasks without their own age limit',
        timeEl(s.ended_before), String(s.runs),
      ]), 'No run is due for deletion.'));
    preview.hidden = false;
  }));
  const previewCard = h('section', { class: 'card' }, h('h2', {}, 'What would be deleted'),
    h('p', { class: 'muted' }, 'Counts under the saved policy; nothing is deleted here.'), show, preview);

  put(page, heading('Retention'), errors, h('div', { class: 'grid2' }, form, previewCard));
}
