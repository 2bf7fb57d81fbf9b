// Alert channels (admin): where alerts go. List, create (the form follows the chosen kind),
// enable or disable, delete, and send a test alert whose delivery is followed until it is sent
// or has failed. A channel's configuration is write-only: the list shows its summary.

import { get, post, patch, del } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, badge, toast, confirmDialog, put } from '../dom.js';
import { alertTabs } from './alerts.js';
import { t, label } from '../i18n.js';

const KINDS = ['webhook', 'smtp', 'dingtalk', 'feishu', 'wecom', 'slack'];

/** How long a test delivery is followed before the page stops asking. */
const TEST_PATIENCE_MS = 60000;

/** Where a channel sends, from its redacted summary. */
export function channelSummary(c) {
  const s = c.summary || {};
  if (c.kind === 'smtp') {
    const to = Array.isArray(s.to) ? s.to.join(', ') : '';
    return `${s.host}:${s.port} (${s.tls})${to ? ` → ${to}` : ''}`;
  }
  const parts = [s.url || '—'];
  if (s.secret_set) parts.push(t('channels.signed'));
  return parts.join(' · ');
}

/** The kind-specific fields of the create form; `read()` builds the `config` object. */
function kindFields(kind) {
  const mk = (name, attrs = {}) => h('input', { name, autocomplete: 'off', spellcheck: 'false', ...attrs });
  if (kind === 'smtp') {
    const host = mk('smtp-host', { required: true });
    const port = mk('smtp-port', { type: 'number', min: 1, max: 65535, placeholder: t('channels.port_placeholder') });
    const tls = h('select', { name: 'smtp-tls' },
      h('option', { value: 'starttls' }, 'STARTTLS'), h('option', { value: 'tls' }, 'TLS'), h('option', { value: 'none' }, t('channels.tls_none')));
    const username = mk('smtp-username');
    const password = mk('smtp-password', { type: 'password', autocomplete: 'new-password' });
    const from = mk('smtp-from', { required: true, placeholder: 'AntCode <alerts@example.com>', translate: 'no' });
    const to = h('textarea', { name: 'smtp-to', rows: 2, required: true, spellcheck: 'false' });
    return {
      nodes: [field(t('channels.smtp_server'), host), h('div', { class: 'row wrap' }, field(t('channels.port'), port), field('TLS', tls)),
        field(t('common.username'), username, t('channels.username_hint')), field(t('common.password'), password),
        field(t('channels.from'), from), field(t('channels.to'), to, t('channels.to_hint'))],
      read: () => {
        const c = { kind, host: host.value.trim(), tls: tls.value, from: from.value.trim(),
          to: to.value.split(/[\n,]/).map((x) => x.trim()).filter(Boolean) };
        if (port.value) c.port = Number(port.value);
        if (username.value.trim()) c.username = username.value.trim();
        if (password.value) c.password = password.value;
        return c;
      },
    };
  }
  const url = mk('channel-url', { type: 'url', required: true, class: 'mono' });
  const hints = {
    webhook: t('channels.hint_webhook'),
    dingtalk: t('channels.hint_dingtalk'),
    feishu: t('channels.hint_feishu'),
    wecom: t('channels.hint_wecom'),
    slack: t('channels.hint_slack'),
  };
  const nodes = [field('URL', url, hints[kind])];
  let secret = null;
  if (kind === 'webhook' || kind === 'dingtalk' || kind === 'feishu') {
    secret = mk('channel-secret', { type: 'password', autocomplete: 'new-password', required: kind === 'webhook', minlength: kind === 'webhook' ? 16 : null });
    nodes.push(field(t('projects.secret'), secret, kind === 'webhook'
      ? t('channels.secret_hint_webhook')
      : t('channels.secret_hint_robot')));
  }
  return {
    nodes,
    read: () => {
      const c = { kind, url: url.value.trim() };
      if (secret && (secret.value || kind === 'webhook')) c.secret = secret.value;
      return c;
    },
  };
}

export async function render(page, params, ctx) {
  const errors = errorBox();
  const box = h('div', {});
  const result = h('div', { id: 'test-result', class: 'card', 'aria-live': 'polite', hidden: true });
  let timer = null;
  let alive = true;

  // --- a test alert, followed until it is sent or has failed -----------------------------------
  const showResult = (channel, d, note) => {
    const outcome = d.state === 'sent' ? (d.detail || t('channels.delivered')) : (d.last_error || d.detail || '');
    put(clear(result), h('h2', {}, t('channels.test_of', { name: channel.name })),
      h('p', {}, badge(d.state), t('channels.after_attempts', { n: d.attempts }), outcome ? `${t('common.colon')}${outcome}` : ''),
      note ? h('p', { class: 'muted' }, note) : null,
      h('p', {}, h('a', { href: `#/alerts/deliveries?channel=${encodeURIComponent(channel.id)}` }, t('channels.its_deliveries'))));
    result.hidden = false;
  };
  const follow = (channel, d, started) => {
    showResult(channel, d, d.state === 'pending' ? t('channels.waiting') : null);
    if (d.state !== 'pending' || !alive) return;
    if (Date.now() - started > TEST_PATIENCE_MS) {
      showResult(channel, d, t('channels.still_pending'));
      return;
    }
    timer = setTimeout(async () => {
      try {
        follow(channel, await get(`/notifications/deliveries/${d.id}`), started);
      } catch (e) { errors.show(e); }
    }, 1000);
  };
  const sendTest = (button, channel) => busy(button, errors, async () => {
    clearTimeout(timer);
    const d = await post(`/notifications/channels/${channel.id}/test`);
    toast(t('channels.test_queued', { name: channel.name }));
    follow(channel, d, Date.now());
  });

  // --- the list ------------------------------------------------------------------------------------
  const load = async () => {
    const res = await get('/notifications/channels');
    put(clear(box), table([t('common.name'), t('channels.kind'), t('channels.sends_to'), t('common.enabled'), t('common.updated'), t('common.actions')], res.items.map((c) => {
      const toggle = h('button', { type: 'button', 'data-mutates': '' }, c.enabled ? t('common.disable') : t('common.enable'));
      toggle.addEventListener('click', () => busy(toggle, errors, async () => {
        await patch(`/notifications/channels/${c.id}`, { enabled: !c.enabled });
        toast(c.enabled ? t('channels.disabled_toast', { name: c.name }) : t('channels.enabled_toast', { name: c.name }));
        await load();
      }));
      const test = h('button', { type: 'button', 'data-mutates': '' }, t('channels.send_test'));
      test.addEventListener('click', () => sendTest(test, c));
      const rm = h('button', { type: 'button', class: 'danger', 'data-mutates': '' }, t('common.delete'));
      rm.addEventListener('click', async () => {
        if (!(await confirmDialog(t('channels.confirm_delete', { name: c.name }), t('common.delete')))) return;
        await busy(rm, errors, async () => { await del(`/notifications/channels/${c.id}`); toast(t('channels.deleted')); await load(); });
      });
      return [h('strong', {}, c.name), label('channel', c.kind), h('span', { class: 'mono', translate: 'no' }, channelSummary(c)),
        c.enabled ? t('common.yes') : t('common.no'), timeEl(c.updated_at), h('div', { class: 'row' }, toggle, test, rm)];
    }), t('channels.none_yet')));
  };

  // --- the create form -----------------------------------------------------------------------------
  const name = h('input', { name: 'channel-name', required: true, maxlength: 128, autocomplete: 'off' });
  const kind = h('select', { name: 'channel-kind' }, KINDS.map((k) => h('option', { value: k }, label('channel_kind', k))));
  const enabled = h('input', { type: 'checkbox', name: 'channel-enabled', checked: true });
  const kindBox = h('fieldset', {}, h('legend', {}, t('channels.configuration')));
  let current = null;
  const drawKind = () => {
    current = kindFields(kind.value);
    put(clear(kindBox), h('legend', {}, t('channels.configuration')), current.nodes);
  };
  kind.addEventListener('change', drawKind);
  drawKind();
  const save = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, t('channels.create'));
  const ferr = errorBox();
  const form = h('form', { class: 'card form', id: 'channel-form' }, h('h2', {}, t('channels.add')), ferr,
    field(t('common.name'), name), field(t('channels.kind'), kind), kindBox,
    h('div', { class: 'field' }, h('label', { class: 'check' }, enabled, ' ', t('common.enabled'))), save,
    h('p', { class: 'hint' }, t('channels.credentials_hint')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(save, ferr, async () => {
      const c = await post('/notifications/channels', { name: name.value.trim(), enabled: enabled.checked, config: current.read() });
      toast(t('channels.created', { name: c.name }));
      form.reset();
      enabled.checked = true;
      drawKind();
      await load();
    });
  });

  put(page, heading(t('channels.title')), alertTabs(ctx, '/alerts/channels'), errors, result,
    h('div', { class: 'grid2' }, h('section', { class: 'card' }, box), form));
  await load();
  return () => { alive = false; clearTimeout(timer); };
}
