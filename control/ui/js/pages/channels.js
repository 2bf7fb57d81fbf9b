// Alert channels (admin): where alerts go. List, create (the form follows the chosen kind),
// enable or disable, delete, and send a test alert whose delivery is followed until it is sent
// or has failed. A channel's configuration is write-only: the list shows its summary.

import { get, post, patch, del } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, badge, toast, confirmDialog, put } from '../dom.js';
import { alertTabs } from './alerts.js';

const KINDS = [
  ['webhook', 'Webhook (signed JSON POST)'],
  ['smtp', 'Email (SMTP)'],
  ['dingtalk', 'DingTalk robot'],
  ['feishu', 'Feishu / Lark bot'],
  ['wecom', 'WeCom robot'],
  ['slack', 'Slack incoming webhook'],
];

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
  if (s.secret_set) parts.push('signed');
  return parts.join(' · ');
}

/** The kind-specific fields of the create form; `read()` builds the `config` object. */
function kindFields(kind) {
  const mk = (name, attrs = {}) => h('input', { name, autocomplete: 'off', spellcheck: 'false', ...attrs });
  if (kind === 'smtp') {
    const host = mk('smtp-host', { required: true });
    const port = mk('smtp-port', { type: 'number', min: 1, max: 65535, placeholder: '587, 465 or 25 by TLS mode' });
    const tls = h('select', { name: 'smtp-tls' },
      h('option', { value: 'starttls' }, 'STARTTLS'), h('option', { value: 'tls' }, 'TLS'), h('option', { value: 'none' }, 'none (plain text)'));
    const username = mk('smtp-username');
    const password = mk('smtp-password', { type: 'password', autocomplete: 'new-password' });
    const from = mk('smtp-from', { required: true, placeholder: 'AntCode <alerts@example.com>' });
    const to = h('textarea', { name: 'smtp-to', rows: 2, required: true, spellcheck: 'false' });
    return {
      nodes: [field('SMTP server', host), h('div', { class: 'row wrap' }, field('Port', port), field('TLS', tls)),
        field('Username', username, 'Optional; give a password with it.'), field('Password', password),
        field('From', from), field('To', to, 'One address per line (or comma-separated).')],
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
    webhook: 'Any http(s) endpoint; each request is signed with the secret.',
    dingtalk: 'The robot’s webhook URL, with its access_token.',
    feishu: 'The bot’s webhook URL.',
    wecom: 'The robot’s webhook URL, with its key.',
    slack: 'The incoming webhook URL (it is the credential).',
  };
  const nodes = [field('URL', url, hints[kind])];
  let secret = null;
  if (kind === 'webhook' || kind === 'dingtalk' || kind === 'feishu') {
    secret = mk('channel-secret', { type: 'password', autocomplete: 'new-password', required: kind === 'webhook', minlength: kind === 'webhook' ? 16 : null });
    nodes.push(field('Secret', secret, kind === 'webhook'
      ? 'At least 16 characters; the receiver checks the HMAC signature with it.'
      : 'Optional: the signing secret, if the robot has signing turned on.'));
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
    const outcome = d.state === 'sent' ? (d.detail || 'delivered') : (d.last_error || d.detail || '');
    put(clear(result), h('h2', {}, `Test of ${channel.name}`),
      h('p', {}, badge(d.state), ` after ${d.attempts} attempt${d.attempts === 1 ? '' : 's'}`, outcome ? `: ${outcome}` : ''),
      note ? h('p', { class: 'muted' }, note) : null,
      h('p', {}, h('a', { href: `#/alerts/deliveries?channel=${encodeURIComponent(channel.id)}` }, 'This channel’s deliveries')));
    result.hidden = false;
  };
  const follow = (channel, d, started) => {
    showResult(channel, d, d.state === 'pending' ? 'Waiting for the scheduler to send it…' : null);
    if (d.state !== 'pending' || !alive) return;
    if (Date.now() - started > TEST_PATIENCE_MS) {
      showResult(channel, d, 'Still pending (it is retried with backoff); its outcome will show in the deliveries.');
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
    toast(`Test alert queued for ${channel.name}`);
    follow(channel, d, Date.now());
  });

  // --- the list ------------------------------------------------------------------------------------
  const load = async () => {
    const res = await get('/notifications/channels');
    put(clear(box), table(['Name', 'Kind', 'Sends to', 'Enabled', 'Updated', 'Actions'], res.items.map((c) => {
      const toggle = h('button', { type: 'button', 'data-mutates': '' }, c.enabled ? 'Disable' : 'Enable');
      toggle.addEventListener('click', () => busy(toggle, errors, async () => {
        await patch(`/notifications/channels/${c.id}`, { enabled: !c.enabled });
        toast(`${c.name} ${c.enabled ? 'disabled' : 'enabled'}`);
        await load();
      }));
      const test = h('button', { type: 'button', 'data-mutates': '' }, 'Send test');
      test.addEventListener('click', () => sendTest(test, c));
      const rm = h('button', { type: 'button', class: 'danger', 'data-mutates': '' }, 'Delete');
      rm.addEventListener('click', async () => {
        if (!(await confirmDialog(`Delete channel ${c.name}?`, 'Delete'))) return;
        await busy(rm, errors, async () => { await del(`/notifications/channels/${c.id}`); toast('Channel deleted'); await load(); });
      });
      return [h('strong', {}, c.name), c.kind, h('span', { class: 'mono' }, channelSummary(c)),
        c.enabled ? 'yes' : 'no', timeEl(c.updated_at), h('div', { class: 'row' }, toggle, test, rm)];
    }), 'No channels yet: add one to send alerts to.'));
  };

  // --- the create form -----------------------------------------------------------------------------
  const name = h('input', { name: 'channel-name', required: true, maxlength: 128, autocomplete: 'off' });
  const kind = h('select', { name: 'channel-kind' }, KINDS.map(([k, label]) => h('option', { value: k }, label)));
  const enabled = h('input', { type: 'checkbox', name: 'channel-enabled', checked: true });
  const kindBox = h('fieldset', {}, h('legend', {}, 'Configuration'));
  let current = null;
  const drawKind = () => {
    current = kindFields(kind.value);
    put(clear(kindBox), h('legend', {}, 'Configuration'), current.nodes);
  };
  kind.addEventListener('change', drawKind);
  drawKind();
  const save = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, 'Create channel');
  const ferr = errorBox();
  const form = h('form', { class: 'card form', id: 'channel-form' }, h('h2', {}, 'Add a channel'), ferr,
    field('Name', name), field('Kind', kind), kindBox,
    h('div', { class: 'field' }, h('label', { class: 'check' }, enabled, ' Enabled')), save,
    h('p', { class: 'hint' }, 'Credentials are encrypted at rest and never shown again.'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(save, ferr, async () => {
      const c = await post('/notifications/channels', { name: name.value.trim(), enabled: enabled.checked, config: current.read() });
      toast(`Channel ${c.name} created`);
      form.reset();
      enabled.checked = true;
      drawKind();
      await load();
    });
  });

  put(page, heading('Alert channels'), alertTabs(ctx, '/alerts/channels'), errors, result,
    h('div', { class: 'grid2' }, h('section', { class: 'card' }, box), form));
  await load();
  return () => { alive = false; clearTimeout(timer); };
}
