// Alert deliveries: the outbox's history, newest first, filtered by channel, rule and state and
// read page by page.

import { get, query } from '../api.js';
import { h, heading, field, errorBox, table, timeEl, badge, put, pagedList, shortId } from '../dom.js';
import { hashQuery } from '../app.js';
import { alertTabs, DELIVERY_STATES } from './alerts.js';
import { t, label } from '../i18n.js';

/** What a delivery ended with: the receiver's answer when sent, else the last error. */
function outcome(d) {
  const text = d.state === 'sent' ? (d.detail || d.last_error) : (d.last_error || d.detail);
  return text ? h('span', { class: d.state === 'failed' ? 'bad' : null }, text) : '—';
}

export async function render(page, params, ctx) {
  const q = hashQuery();
  const [channels, rules] = await Promise.all([
    // Only admins may list channels; others filter by a channel's id.
    ctx.session.can('admin') ? get('/notifications/channels').then((r) => r.items) : Promise.resolve(null),
    get('/notifications/rules').then((r) => r.items),
  ]);
  const cname = Object.fromEntries((channels || []).map((c) => [c.id, c.name]));
  const rname = Object.fromEntries(rules.map((r) => [r.id, r.name]));
  const channel = channels
    ? h('select', { name: 'channel' }, h('option', { value: '' }, t('common.any')), channels.map((c) => h('option', { value: c.id }, c.name)))
    : h('input', { name: 'channel', class: 'mono', spellcheck: 'false', placeholder: t('deliveries.channel_id') });
  channel.value = q.get('channel') || '';
  const rule = h('select', { name: 'rule' }, h('option', { value: '' }, t('common.any')), rules.map((r) => h('option', { value: r.id }, r.name)));
  rule.value = q.get('rule') || '';
  const state = h('select', { name: 'state' }, h('option', { value: '' }, t('common.any')), DELIVERY_STATES.map((s) => h('option', { value: s }, label('state', s))));
  state.value = q.get('state') || '';
  const apply = h('button', { type: 'submit' }, t('common.filter'));
  const filters = h('form', { class: 'row wrap filters', role: 'search' },
    field(t('deliveries.channel'), channel), field(t('deliveries.rule'), rule), field(t('common.state'), state), apply);
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.navigate(`/alerts/deliveries${query({ channel: channel.value.trim(), rule: rule.value, state: state.value })}`);
  });
  const errors = errorBox();
  const { box, more, load } = pagedList(
    (cursor) => get(`/notifications/deliveries${query({
      channel_id: channel.value.trim(), rule_id: rule.value, state: state.value, limit: 50, cursor,
    })}`),
    (rows) => table([t('common.created'), t('deliveries.channel'), t('deliveries.rule'), t('deliveries.event'), t('deliveries.summary'), t('common.state'), t('deliveries.attempts'), t('deliveries.sent'), t('deliveries.result')], rows.map((d) => {
      const ev = d.event || {};
      return [
        timeEl(d.created_at),
        cname[d.channel_id] || shortId(d.channel_id),
        d.rule_id ? (rname[d.rule_id] || shortId(d.rule_id)) : h('span', { class: 'muted' }, t('deliveries.test')),
        h('code', {}, ev.kind || '—'),
        ev.summary || '—',
        badge(d.state),
        String(d.attempts),
        timeEl(d.sent_at),
        outcome(d),
      ];
    }), t('deliveries.none_match')),
    errors);
  put(page, heading(t('deliveries.title')), alertTabs(ctx, '/alerts/deliveries'), filters, errors,
    h('section', { class: 'card', id: 'deliveries' }, box, more));
  await load();
}
