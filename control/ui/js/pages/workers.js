// Workers as their heartbeats describe them: status, queues, labels, slots, CPU, memory, disk;
// drain and undrain. For admins: enrolled (gateway) identities, revocable whether or not they are
// heartbeating, and enrollment keys with the runner command ready to copy. Refreshes every 5 s
// while open.

import { get, post, del } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, fmtAgo, timeEl, toast, confirmDialog, put, shortId, redrawKeepingFocus, lostFocus } from '../dom.js';
import { t, label, fmtNumber } from '../i18n.js';

// The list shows what workers report, so a drain shows a heartbeat later. What was asked is
// shown at once, until the worker reports the same or ASKED_MS pass.
const ASKED_MS = 30000;

function lines(text) {
  return text.split(/[\n,]/).map((l) => l.trim()).filter(Boolean);
}

/** Enrollment keys (admin): list, create one and show it once with the runner command. */
function enrollment(errors) {
  const box = h('div', {});
  const load = async () => {
    const res = await get('/worker-keys');
    put(clear(box), table([t('workers.note'), t('workers.queues'), t('common.labels'), t('workers.created_by'), t('common.created'), t('common.expires'), t('workers.used')], res.items.map((k) => [
      k.note || '—', (k.queues || []).join(', '), Object.entries(k.labels || {}).map(([a, b]) => h('span', { class: 'tag', translate: 'no' }, `${a}=${b}`)),
      k.created_by, timeEl(k.created_at), timeEl(k.expires_at), k.used_at ? h('span', {}, timeEl(k.used_at), k.used_by ? [t('workers.by'), shortId(k.used_by)] : '') : t('workers.unused'),
    ]), t('workers.no_keys')));
  };
  const note = h('input', { name: 'key-note', maxlength: 200 });
  const queues = h('input', { name: 'key-queues', value: 'default' });
  const labels = h('input', { name: 'key-labels', placeholder: 'region=eu, gpu=1', translate: 'no' });
  const hours = h('input', { name: 'key-hours', type: 'number', min: 1, max: 720, value: '24' });
  // The edge's address as the server knows it (`up` knows its own; control takes --edge-url),
  // else a guess from this page's host and the default port.
  const edge = h('input', { name: 'edge-url', value: `https://${location.hostname}:50051` });
  const ca = h('a', { class: 'button', id: 'edge-ca', href: '/api/v1/edge/ca.pem', download: 'ca.pem', hidden: true }, t('workers.download_ca'));
  get('/edge').then((e) => {
    if (e.url) edge.value = e.url;
    ca.hidden = !e.ca;
  }).catch(() => { /* an older server: keep the guess */ });
  const make = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, t('workers.create_key'));
  const shown = h('div', { class: 'secret', hidden: true, role: 'status' });
  const ferr = errorBox();
  const form = h('form', { class: 'form', id: 'key-form' }, ferr,
    h('div', { class: 'row wrap' }, field(t('workers.note'), note), field(t('workers.queues'), queues, t('common.comma_separated')), field(t('common.labels'), labels, t('workers.labels_hint')), field(t('workers.valid_hours'), hours)),
    h('div', { class: 'row wrap' }, field(t('workers.edge'), edge), ca), make, shown);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(make, ferr, async () => {
      const lab = {};
      for (const l of lines(labels.value)) {
        const i = l.indexOf('=');
        if (i <= 0) throw Object.assign(new Error('labels'), { title: t('common.labels'), detail: t('workers.not_pair', { line: l }) });
        lab[l.slice(0, i).trim()] = l.slice(i + 1).trim();
      }
      const qs = lines(queues.value);
      const k = await post('/worker-keys', { note: note.value.trim(), queues: qs, labels: lab, ttl_s: Number(hours.value) * 3600 });
      const cmd = ['antcode runner --mode gateway', `--edge ${edge.value.trim()}`, '--ca ca.pem', `--enroll ${k.key}`,
        ...qs.map((q) => `--queue ${q}`), ...Object.entries(lab).map(([a, b]) => `--label ${a}=${b}`)].join(' ');
      const out = h('textarea', { readonly: true, rows: 3, class: 'mono', 'aria-label': t('workers.runner_command'), value: cmd });
      const copy = h('button', { type: 'button' }, t('workers.copy_command'));
      copy.addEventListener('click', async () => {
        try { await navigator.clipboard.writeText(cmd); toast(t('common.copied')); } catch (_) { out.select(); }
      });
      put(clear(shown), h('p', {}, h('strong', {}, t('workers.key_once'))), out, copy);
      shown.hidden = false;
      await load();
    });
  });
  return { el: h('section', { class: 'card', id: 'enrollment' }, h('h2', {}, t('workers.keys')), box, h('h3', {}, t('workers.new_key')), form), load };
}

/** A Revoke button for an enrolled worker; `after` runs once the credential is revoked. */
function revokeButton(w, errors, after) {
  const rv = h('button', { type: 'button', class: 'danger', 'data-mutates': '', 'data-key': `revoke-${w.id}`, 'aria-label': t('workers.revoke_label', { name: w.name || w.id }) }, t('common.revoke'));
  rv.addEventListener('click', async () => {
    if (!(await confirmDialog(t('workers.confirm_revoke', { name: w.name || w.id }), t('common.revoke')))) return;
    await busy(rv, errors, async () => { await del(`/workers/${encodeURIComponent(w.id)}`); toast(t('workers.revoked')); await after(); });
  });
  return rv;
}

/** Enrolled identities (admin), newest first, revoked ones included. */
function enrolled(errors, after) {
  const box = h('div', {});
  let revoked = new Set();
  const load = async () => {
    const res = await get('/enrolled-workers');
    revoked = new Set(res.items.filter((w) => w.revoked).map((w) => w.id));
    put(clear(box), table([t('common.worker'), t('common.labels'), t('workers.enrolled'), t('workers.last_seen'), t('projects.credential'), t('common.action')], res.items.map((w) => [
      h('span', {}, h('strong', {}, w.name), h('br'), shortId(w.id)),
      Object.entries(w.labels || {}).map(([k, v]) => h('span', { class: 'tag', translate: 'no' }, `${k}=${v}`)),
      timeEl(w.created_at), timeEl(w.last_seen_at),
      w.revoked ? h('span', { class: 'badge st-failed' }, t('common.revoked')) : h('span', { class: 'badge st-succeeded' }, w.cert_fingerprint ? t('workers.key_and_cert') : t('workers.key')),
      w.revoked ? '' : revokeButton(w, errors, after),
    ]), t('workers.none_enrolled')));
  };
  const el = h('section', { class: 'card', id: 'enrolled' }, h('h2', {}, t('workers.enrolled_workers')), box);
  return { el, load, isRevoked: (id) => revoked.has(id) };
}

function meter(name, pct) {
  const v = Math.max(0, Math.min(100, Number(pct) || 0));
  return h('span', { class: 'meter-wrap' }, h('meter', { min: 0, max: 100, value: v, 'aria-label': name }), ` ${fmtNumber(v / 100, { style: 'percent' })}`);
}

export async function render(page, params, ctx) {
  const errors = errorBox();
  const box = h('div', {});
  const can = ctx.session.can('operator');
  const admin = ctx.session.can('admin');
  // Drains asked from this page: worker id → { draining, until }.
  const asked = new Map();
  const asReported = (w) => {
    const a = asked.get(w.id);
    if (!a) return w;
    if (a.draining === w.draining || Date.now() > a.until) {
      asked.delete(w.id);
      return w;
    }
    return { ...w, draining: a.draining };
  };
  const drainButton = (w) => {
    const b = h('button', { type: 'button', 'data-mutates': '', 'data-key': `drain-${w.id}` }, w.draining ? t('workers.undrain') : t('workers.drain'));
    b.addEventListener('click', async () => {
      await busy(b, errors, async () => {
        const now = await post(`/workers/${encodeURIComponent(w.id)}/${w.draining ? 'undrain' : 'drain'}`);
        asked.set(w.id, { draining: now.draining, until: Date.now() + ASKED_MS });
        toast(now.draining ? t('workers.drained') : t('workers.undrained'));
        await load();
      });
      // The row was drawn again: the focus goes to its new button.
      const again = [...box.querySelectorAll('[data-key]')].find((el) => el.dataset.key === `drain-${w.id}`);
      if (again && lostFocus()) again.focus();
    });
    return b;
  };
  const load = async () => {
    const res = await get('/workers');
    const status = (w) => {
      if (ids && ids.isRevoked(w.id)) return h('span', { class: 'badge st-failed' }, t('common.revoked'));
      return w.draining ? h('span', { class: 'badge st-cancelled' }, t('workers.draining')) : h('span', { class: 'badge st-succeeded' }, t('common.active'));
    };
    const headers = [t('common.worker'), t('common.status'), t('workers.queues_labels'), t('workers.slots'), t('workers.resources'), t('workers.last_seen')];
    if (can) headers.push(t('common.action'));
    redrawKeepingFocus(box, () => put(clear(box), table(headers, res.items.map(asReported).map((w) => {
      const cells = [
        h('span', {}, h('strong', {}, w.name || w.id), h('br'), shortId(w.id), h('br'), h('small', { class: 'muted' }, `${label('mode', w.mode)} · v${w.version}`)),
        status(w),
        h('span', {}, w.queues.map((q) => h('span', { class: 'tag', translate: 'no' }, q)), h('br'),
          Object.entries(w.labels).map(([k, v]) => h('span', { class: 'tag', translate: 'no' }, `${k}=${v}`))),
        t('workers.busy', { n: w.running, slots: w.slots }),
        h('div', { class: 'meters' },
          h('div', {}, t('workers.cpu'), ' ', meter(t('workers.cpu_of', { name: w.name }), w.cpu_percent)),
          h('div', {}, t('workers.mem'), ' ', meter(t('workers.mem_of', { name: w.name }), w.memory_percent)),
          h('div', {}, t('workers.disk'), ' ', meter(t('workers.disk_of', { name: w.name }), w.disk_percent))),
        fmtAgo(w.last_seen_ms),
      ];
      if (can) {
        const actions = [drainButton(w)];
        if (ids && w.mode === 'gateway' && !ids.isRevoked(w.id)) actions.push(revokeButton(w, errors, reload));
        cells.push(h('div', { class: 'row' }, actions));
      }
      return cells;
    }), [t('workers.none_live'), ' ', h('code', {}, 'antcode runner --mode direct')])));
  };
  // Enrolled identities first: the live table hides Revoke for a revoked one.
  const reload = async () => {
    if (ids) await Promise.all([ids.load(), keys.load()]);
    await load();
  };
  const ids = admin ? enrolled(errors, reload) : null;
  const keys = admin ? enrollment(errors) : null;
  put(page, heading(t('workers.title')), errors, h('section', { class: 'card' }, box), ids ? ids.el : null, keys ? keys.el : null);
  const tick = async () => { try { await reload(); } catch (e) { errors.show(e); } };
  await tick();
  const timer = setInterval(tick, 5000);
  return () => clearInterval(timer);
}
