// Retention (admin): how long ended runs and the audit trail are kept, and a preview of what
// the pruner would delete now. An empty field keeps forever; a pinned run is never pruned.

import { get, api, getAll } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, toast, put } from '../dom.js';
import { t } from '../i18n.js';

// Built on each render: the labels are in the current language.
const fields = () => [
  ['runs_days', t('retention.runs_days'), t('retention.runs_days_hint')],
  ['runs_keep_last', t('retention.keep_last'), t('retention.keep_last_hint')],
  ['audit_days', t('retention.audit_days'), t('retention.audit_days_hint')],
];

export async function render(page, params, ctx) {
  const errors = errorBox();
  const policy = await get('/retention');
  const FIELDS = fields();
  const inputs = Object.fromEntries(FIELDS.map(([k]) => [k, h('input', { name: k, type: 'number', min: 1, value: policy[k] ?? '' })]));
  const save = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, t('retention.save'));
  const ferr = errorBox();
  const form = h('form', { class: 'card form', id: 'retention-form' }, h('h2', {}, t('retention.global')), ferr,
    FIELDS.map(([k, label, hint]) => field(label, inputs[k], hint)),
    h('p', { class: 'hint' }, t('retention.task_hint')),
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
      toast(t('retention.saved'));
      preview.hidden = true;
    });
  });

  const preview = h('div', { id: 'retention-preview', 'aria-live': 'polite', hidden: true });
  const show = h('button', { type: 'button', id: 'retention-preview-button' }, t('retention.preview'));
  show.addEventListener('click', () => busy(show, errors, async () => {
    const [p, tasks] = await Promise.all([get('/retention/preview'), getAll('/tasks')]);
    const tname = Object.fromEntries(tasks.map((x) => [x.id, x.name]));
    put(clear(preview),
      h('p', {}, t('retention.would_delete', { runs: t('retention.n_runs', { n: p.runs }), audit: t('retention.n_audit', { n: p.audit }) })),
      table([t('retention.applies_to'), t('retention.ended_before'), t('nav.runs')], p.slices.map((s) => [
        s.task_id ? h('a', { href: `#/tasks/${s.task_id}` }, tname[s.task_id] || s.task_id) : t('retention.tasks_without'),
        timeEl(s.ended_before), String(s.runs),
      ]), t('retention.none_due')));
    preview.hidden = false;
  }));
  const previewCard = h('section', { class: 'card' }, h('h2', {}, t('retention.what')),
    h('p', { class: 'muted' }, t('retention.counts_hint')), show, preview);

  put(page, heading(t('retention.title')), errors, h('div', { class: 'grid2' }, form, previewCard));
}
