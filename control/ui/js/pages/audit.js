// The audit trail (admin), newest first, filtered by actor, action prefix and resource.

import { get, query } from '../api.js';
import { h, heading, field, errorBox, table, timeEl, put, pagedList } from '../dom.js';
import { hashQuery } from '../app.js';
import { t, label } from '../i18n.js';

function diff(e) {
  if (!e.before && !e.after) return '';
  return h('details', {}, h('summary', {}, t('audit.before_after')),
    h('div', { class: 'grid2' },
      h('pre', { class: 'small' }, e.before ? JSON.stringify(e.before, null, 2) : '—'),
      h('pre', { class: 'small' }, e.after ? JSON.stringify(e.after, null, 2) : '—')));
}

export async function render(page, params, ctx) {
  const q = hashQuery();
  const actor = h('input', { name: 'actor', value: q.get('actor') || '' });
  const action = h('input', { name: 'action', value: q.get('action') || '', placeholder: t('audit.action_placeholder') });
  const resource = h('input', { name: 'resource', value: q.get('resource') || '' });
  const apply = h('button', { type: 'submit' }, t('common.filter'));
  const filters = h('form', { class: 'row wrap filters', role: 'search' },
    field(t('audit.actor'), actor), field(t('audit.action_prefix'), action), field(t('audit.resource_id'), resource), apply);
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.navigate(`/audit${query({ actor: actor.value.trim(), action: action.value.trim(), resource: resource.value.trim() })}`);
  });
  const errors = errorBox();
  const { box, more, load } = pagedList(
    (cursor) => get(`/audit${query({ actor: actor.value.trim(), action: action.value.trim(), resource: resource.value.trim(), limit: 50, cursor })}`),
    (rows) => table([t('audit.when'), t('audit.actor'), t('common.action'), t('audit.resource'), t('audit.outcome'), t('audit.from'), t('audit.change')], rows.map((e) => [
      timeEl(e.at), e.actor, h('code', {}, e.action), e.resource ? h('code', {}, e.resource) : '—',
      h('span', { class: `badge ${e.outcome === 'ok' ? 'st-succeeded' : 'st-failed'}`, 'data-outcome': e.outcome }, label('outcome', e.outcome)), e.address, diff(e),
    ]), t('audit.none_match')),
    errors);
  put(page, heading(t('nav.audit')), filters, errors, h('section', { class: 'card' }, box, more));
  await load();
}
