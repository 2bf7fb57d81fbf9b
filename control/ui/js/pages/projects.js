// Projects: list, upload or follow a Git repository; a project's versions and its file browser
// (`versions.js`); upload a new version or sync from Git; roll back; and a plain editor for
// single-file projects (save = a new version).

import { get, post, patch, del, query, api } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, fmtBytes, toast, confirmDialog, put } from '../dom.js';
import { t, label } from '../i18n.js';
import { fileBrowser } from './versions.js';

export async function render(page, params, ctx) {
  const [id] = params;
  if (!id) return list(page, ctx);
  if (ctx.path.endsWith('/edit')) return editor(page, id, ctx);
  return detail(page, id, ctx);
}

function uploadForm(ctx, { projectId } = {}) {
  const errors = errorBox();
  const name = h('input', { name: 'name', required: true, maxlength: 100 });
  const file = h('input', { name: 'file', type: 'file', accept: '.py,.zip,.tar.gz,.tgz', required: true });
  const entry = h('input', { name: 'entrypoint', placeholder: 'main.py' });
  const reqs = h('textarea', { name: 'requirements', rows: 3, placeholder: 'requests==2.32.3', translate: 'no' });
  const desc = h('input', { name: 'description' });
  const submit = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, projectId ? t('projects.upload_version') : t('projects.upload_project'));
  const form = h('form', { class: 'card form', id: projectId ? 'version-form' : 'upload-form' },
    h('h2', {}, projectId ? t('projects.upload_new_version') : t('projects.upload_a_project')),
    errors,
    projectId ? null : field(t('common.name'), name),
    field(t('projects.file'), file),
    field(t('common.entrypoint'), entry, t('projects.entry_hint')),
    field(t('common.requirements'), reqs, t('projects.reqs_hint')),
    projectId ? null : field(t('common.description'), desc),
    submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, errors, async () => {
      const fd = new FormData();
      if (!projectId) fd.set('name', name.value.trim());
      if (file.files[0]) fd.set('file', file.files[0]);
      if (entry.value.trim()) fd.set('entrypoint', entry.value.trim());
      if (reqs.value.trim()) fd.set('requirements', reqs.value);
      if (!projectId && desc.value.trim()) fd.set('description', desc.value);
      if (projectId) {
        const v = await post(`/projects/${projectId}/versions`, fd);
        toast(t('projects.version_uploaded', { version: v.version }));
        ctx.navigate(`/projects/${projectId}`);
      } else {
        const p = await post('/projects', fd);
        toast(t('projects.created', { name: p.name }));
        ctx.navigate(`/projects/${p.id}`);
      }
    });
  });
  return form;
}

// A project that follows a Git repository: created by fetching the ref now. The push webhook's
// secret is in the answer only, so it is shown here before leaving.
function gitForm(ctx) {
  const errors = errorBox();
  const name = h('input', { name: 'name', required: true, maxlength: 100 });
  const url = h('input', { name: 'url', required: true, maxlength: 2048, placeholder: 'https://git.example.com/team/repo.git', translate: 'no' });
  const ref = h('input', { name: 'ref', maxlength: 512, placeholder: 'main' });
  const subdir = h('input', { name: 'subdir', maxlength: 512 });
  const entry = h('input', { name: 'entrypoint', maxlength: 512, placeholder: 'main.py' });
  const cred = h('input', { name: 'credential', maxlength: 100 });
  const every = h('input', { name: 'interval_s', type: 'number', min: 60, placeholder: '3600' });
  const shown = h('div', {});
  const submit = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, t('projects.create_from_git'));
  const form = h('form', { class: 'card form', id: 'git-form' },
    h('h2', {}, t('projects.follow_git')),
    errors,
    field(t('common.name'), name),
    field(t('projects.repo_url'), url, t('projects.repo_url_hint')),
    field(t('projects.ref'), ref, t('projects.ref_hint')),
    field(t('projects.directory'), subdir, t('projects.directory_hint')),
    field(t('common.entrypoint'), entry, t('projects.git_entry_hint')),
    field(t('projects.credential'), cred, t('projects.credential_hint')),
    field(t('projects.sync_every'), every, t('projects.sync_every_hint')),
    submit, shown);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, errors, async () => {
      const git = { url: url.value.trim() };
      if (ref.value.trim()) git.ref = ref.value.trim();
      if (subdir.value.trim()) git.subdir = subdir.value.trim();
      if (entry.value.trim()) git.entrypoint = entry.value.trim();
      if (cred.value.trim()) git.credential = cred.value.trim();
      if (every.value) git.interval_s = Number(every.value);
      const p = await post('/projects', { name: name.value.trim(), git });
      toast(t('projects.created_from', { name: p.name, commit: p.version.origin.commit.slice(0, 12) }));
      if (!p.push || !p.push.secret) { ctx.navigate(`/projects/${p.id}`); return; }
      put(clear(shown), h('div', { class: 'notice', role: 'status' },
        h('p', {}, t('projects.push_webhook')),
        h('dl', { class: 'facts' },
          h('dt', {}, t('projects.url')), h('dd', {}, h('code', {}, p.push.url)),
          h('dt', {}, t('projects.secret')), h('dd', {}, h('code', {}, p.push.secret))),
        h('a', { class: 'button', href: `#/projects/${p.id}` }, t('projects.open'))));
    });
  });
  return form;
}

function gitFacts(project) {
  const src = project.source;
  if (!src) return [];
  const sync = project.sync;
  const where = `${src.url}${src.ref ? ` @ ${src.ref}` : ''}${src.subdir ? ` / ${src.subdir}` : ''}`;
  let last = t('projects.never');
  if (sync) {
    const trigger = label('trigger', sync.trigger);
    last = sync.outcome === 'failed'
      ? t('projects.sync_failed', { trigger, error: sync.error || '' })
      : t('projects.sync_ok', { outcome: label('sync', sync.outcome), trigger, commit: (sync.commit || '').slice(0, 12) });
  }
  return [
    h('dt', {}, t('projects.git_source')), h('dd', {}, h('code', {}, where)),
    h('dt', {}, t('projects.last_sync')), h('dd', { class: sync && sync.outcome === 'failed' ? 'sync-failed' : '' }, last, ' ', sync ? timeEl(sync.at) : ''),
    h('dt', {}, t('projects.sync_interval')), h('dd', {}, src.interval_s ? t('projects.every_s', { n: src.interval_s }) : t('projects.on_demand')),
  ];
}

async function list(page, ctx) {
  const errors = errorBox();
  const tbody = h('div', {});
  const more = h('button', { type: 'button', hidden: true }, t('common.load_more'));
  let cursor = '';
  const rows = [];
  const load = async () => {
    const res = await get(`/projects${query({ limit: 50, cursor })}`);
    rows.push(...res.items);
    cursor = res.next_cursor || '';
    more.hidden = !cursor;
    put(clear(tbody), table([t('common.name'), t('projects.current_version'), t('common.description'), t('common.updated')], rows.map((p) => [
      h('a', { href: `#/projects/${p.id}` }, p.name), `v${p.current_version}`, p.description || '', timeEl(p.updated_at),
    ]), t('projects.none_yet')));
  };
  more.addEventListener('click', () => busy(more, errors, load));
  put(page, heading(t('projects.title')), errors,
    h('div', { class: 'grid2' }, h('section', { class: 'card' }, h('h2', {}, t('projects.all')), tbody, more),
      ctx.session.can('operator') ? h('div', {}, uploadForm(ctx), gitForm(ctx)) : null));
  await load();
}

async function detail(page, id, ctx) {
  const [project, versions] = await Promise.all([get(`/projects/${id}`), get(`/projects/${id}/versions`)]);
  const errors = errorBox();
  const canWrite = ctx.session.can('operator');
  const cur = project.version;
  const single = cur.bundle.format === 'py';
  const actions = [];
  if (canWrite && single) actions.push(h('a', { class: 'button', href: `#/projects/${id}/edit`, 'data-mutates': '' }, t('projects.edit_code')));
  actions.push(h('a', { class: 'button', href: `#/tasks${canWrite ? '/new' : ''}?project=${id}` }, canWrite ? t('tasks.new') : t('nav.tasks')));
  if (canWrite && project.source) {
    const sync = h('button', { type: 'button', class: 'primary', 'data-mutates': '' }, t('projects.sync_now'));
    sync.addEventListener('click', () => busy(sync, errors, async () => {
      const st = await post(`/projects/${id}/sync`);
      toast(st.outcome === 'created' ? t('projects.synced_version', { version: st.version, commit: st.commit.slice(0, 12) }) : t('projects.unchanged', { commit: st.commit.slice(0, 12) }));
      ctx.navigate(`/projects/${id}`);
    }));
    actions.push(sync);
  }
  if (canWrite) {
    const rm = h('button', { type: 'button', class: 'danger', 'data-mutates': '' }, t('common.delete'));
    rm.addEventListener('click', async () => {
      if (!(await confirmDialog(t('projects.confirm_delete', { name: project.name }), t('common.delete')))) return;
      await busy(rm, errors, async () => { await del(`/projects/${id}`); toast(t('projects.deleted')); ctx.navigate('/projects'); });
    });
    actions.push(rm);
  }
  const vrows = versions.items.slice().sort((a, b) => b.version - a.version).map((v) => {
    const cells = [
      v.version === project.current_version ? t('projects.version_current', { version: v.version }) : `v${v.version}`,
      v.entrypoint, v.origin ? h('span', { title: `${v.origin.author}: ${v.origin.message}` }, h('code', {}, v.origin.commit.slice(0, 12)), ` ${v.origin.message}`) : t('projects.upload'),
      fmtBytes(v.bundle.size_bytes), String(v.files.length), timeEl(v.created_at),
      h('a', { href: `/api/v1/projects/${id}/versions/${v.version}/download`, download: '' }, t('projects.download')),
    ];
    if (canWrite) {
      if (v.version !== project.current_version) {
        const b = h('button', { type: 'button', 'data-mutates': '' }, t('projects.make_current', { version: v.version }));
        b.addEventListener('click', () => busy(b, errors, async () => {
          await patch(`/projects/${id}`, { current_version: v.version });
          toast(t('projects.now_current', { version: v.version }));
          ctx.navigate(`/projects/${id}`);
        }));
        cells.push(b);
      } else cells.push('');
    }
    return cells;
  });
  const vheaders = [t('projects.version'), t('common.entrypoint'), t('projects.source'), t('projects.size'), t('projects.files'), t('common.created'), t('projects.bundle')];
  if (canWrite) vheaders.push(t('projects.rollback'));
  put(page, 
    heading(project.name, ...actions), errors,
    h('p', { class: 'muted' }, project.description || t('projects.no_description')),
    h('dl', { class: 'facts card' },
      h('dt', {}, t('projects.current_version')), h('dd', {}, `v${project.current_version}`),
      ...gitFacts(project),
      h('dt', {}, t('common.entrypoint')), h('dd', {}, h('code', {}, cur.entrypoint)),
      h('dt', {}, t('common.requirements')), h('dd', {}, cur.requirements ? h('pre', { class: 'small' }, cur.requirements) : t('common.none')),
      h('dt', {}, t('projects.bundle')), h('dd', {}, `${cur.bundle.format}${t('common.list_sep')}${fmtBytes(cur.bundle.size_bytes)}${t('common.list_sep')}sha256 `, h('code', {}, cur.bundle.sha256.slice(0, 16))),
      h('dt', {}, t('projects.id')), h('dd', {}, h('code', {}, project.id))),
    h('section', { class: 'card' }, h('h2', {}, t('projects.versions')), table(vheaders, vrows)),
    await fileBrowser(project, versions),
    canWrite && !project.source ? uploadForm(ctx, { projectId: id }) : null);
}

async function editor(page, id, ctx) {
  const project = await get(`/projects/${id}`);
  const cur = project.version;
  if (cur.bundle.format !== 'py') {
    put(page, heading(t('projects.edit_title', { name: project.name })), h('p', {}, t('projects.single_only')));
    return;
  }
  const code = await api('GET', `/projects/${id}/versions/${cur.version}/download`, undefined, { text: true });
  const errors = errorBox();
  const area = h('textarea', { name: 'code', class: 'code', rows: 24, spellcheck: 'false', value: code });
  const reqs = h('textarea', { name: 'requirements', rows: 3, value: cur.requirements || '' });
  const save = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, t('projects.save_new_version'));
  area.addEventListener('keydown', (e) => {
    // Tab inserts four spaces; Escape then Tab leaves the editor (keyboard users are not trapped).
    if (e.key === 'Tab' && !e.shiftKey && !area.dataset.escaped) {
      e.preventDefault();
      const { selectionStart: a, selectionEnd: b } = area;
      area.setRangeText('    ', a, b, 'end');
    }
    if (e.key === 'Escape') area.dataset.escaped = '1';
  });
  area.addEventListener('focus', () => { delete area.dataset.escaped; });
  const form = h('form', { class: 'card form', id: 'editor-form' }, errors,
    field(`${cur.entrypoint} (v${cur.version})`, area, t('projects.tab_hint')),
    field(t('common.requirements'), reqs),
    h('div', { class: 'row' }, save, h('a', { class: 'button', href: `#/projects/${id}` }, t('projects.back'))));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(save, errors, async () => {
      const v = await post(`/projects/${id}/versions`, { code: area.value, entrypoint: cur.entrypoint, requirements: reqs.value });
      toast(t('projects.saved_as', { version: v.version }));
      ctx.navigate(`/projects/${id}`);
    });
  });
  put(page, heading(t('projects.edit_title', { name: project.name })), form);
}
