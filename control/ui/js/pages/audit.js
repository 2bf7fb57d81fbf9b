// The audit trail (admin), newest first, filtered by actor, action prefix and resource.

import { get, query } from '../api.js';
import { h, heading, field, errorBox, table, timeEl, put, pagedList } from '../dom.js';
import { hashQuery } from '../app.js';

function diff(e) {
  if (!e.before && !e.after) return '';
  return h('details', {}, h('summary', {}, 'before / after'),
    h('div', { class: 'grid2' },
      h('pre', { class: 'small' }, e.before ? JSON.stringify(e.before, null, 2) : '—'),
      h('pre', { class: 'small' }, e.after ? JSON.stringify(e.after, null, 2) : '—')));
}

export async function render(page, params, ctx) {
  const q = hashQuery();
  const actor = h('input', { name: 'actor', value: q.get('actor') || '' });
  const action = h('input', { name: 'action', value: q.get('action') || '', placeholder: 'e.g. task. or run.cancel' });
  const resource = h('input', { name: 'resource', value: q.get('resource') || '' });
  const apply = h('button', { type: 'submit' }, 'Filter');
  const filters = h('form', { class: 'row wrap filters', role: 'search' },
    field('Actor', actor), field('Action (prefix)', action), field('Resource id', resource), apply);
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.navigate(`/audit${query({ actor: actor.value.trim(), action: action.value.trim(), resource: resource.value.trim() })}`);
  });
  const errors = errorBox();
  const { box, more, load } = pagedList(
    (cursor) => get(`/audit${query({ actor: actor.value.trim(), action: action.value.trim(), resource: resource.value.trim(), limit: 50, cursor })}`),
    (rows) => table(['When', 'Actor', 'Action', 'Resource', 'Outcome', 'From', 'Change'], rows.map((e) => [
      timeEl(e.at), e.actor, h('code', {}, e.action), e.resource ? h('code', {}, e.resource) : '—',
      h('span', { class: `badge ${e.outcome === 'ok' ? 'st-succeeded' : 'st-failed'}` }, e.outcome), e.address, diff(e),
    ]), 'No entries match.'),
    errors);
  put(page, heading('Audit log'), filters, errors, h('section', { class: 'card' }, box, more));
  await load();
}
