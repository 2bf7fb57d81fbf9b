// Projects: list, upload or follow a Git repository; a project's versions and files; upload a
// new version or sync from Git; roll back; and a plain editor for single-file projects (save = a
// new version).

import { get, post, patch, del, query, api } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, fmtBytes, toast, confirmDialog, put } from '../dom.js';

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
  const reqs = h('textarea', { name: 'requirements', rows: 3, placeholder: 'requests==2.32.3' });
  const desc = h('input', { name: 'description' });
  const submit = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, projectId ? 'Upload version' : 'Upload project');
  const form = h('form', { class: 'card form', id: projectId ? 'version-form' : 'upload-form' },
    h('h2', {}, projectId ? 'Upload a new version' : 'Upload a project'),
    errors,
    projectId ? null : field('Name', name),
    field('File (.py, .zip or .tar.gz)', file),
    field('Entrypoint', entry, 'Optional. Default main.py, or the single .py uploaded.'),
    field('Requirements', reqs, 'Optional, for a single .py file; an archive brings its own requirements.txt, pyproject.toml or uv.lock.'),
    projectId ? null : field('Description', desc),
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
        toast(`Version ${v.version} uploaded`);
        ctx.navigate(`/projects/${projectId}`);
      } else {
        const p = await post('/projects', fd);
        toast(`Project ${p.name} created`);
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
  const url = h('input', { name: 'url', required: true, maxlength: 2048, placeholder: 'https://git.example.com/team/repo.git' });
  const ref = h('input', { name: 'ref', maxlength: 512, placeholder: 'main' });
  const subdir = h('input', { name: 'subdir', maxlength: 512 });
  const entry = h('input', { name: 'entrypoint', maxlength: 512, placeholder: 'main.py' });
  const cred = h('input', { name: 'credential', maxlength: 100 });
  const every = h('input', { name: 'interval_s', type: 'number', min: 60, placeholder: '3600' });
  const shown = h('div', {});
  const submit = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, 'Create from Git');
  const form = h('form', { class: 'card form', id: 'git-form' },
    h('h2', {}, 'Follow a Git repository'),
    errors,
    field('Name', name),
    field('Repository URL', url, 'https://, ssh:// or user@host:path.'),
    field('Branch, tag or commit', ref, 'Optional. Default: the repository\'s default branch.'),
    field('Directory', subdir, 'Optional: the project\'s directory inside the repository.'),
    field('Entrypoint', entry, 'Optional. Default main.py, or the single .py.'),
    field('Credential', cred, 'Optional: the name of a Git credential an admin stored.'),
    field('Sync every (seconds)', every, 'Optional, 60 or more. Pushes and "Sync now" sync too.'),
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
      toast(`Project ${p.name} created from ${p.version.origin.commit.slice(0, 12)}`);
      if (!p.push || !p.push.secret) { ctx.navigate(`/projects/${p.id}`); return; }
      put(clear(shown), h('div', { class: 'notice', role: 'status' },
        h('p', {}, 'Push webhook (shown only now): add it to the repository with content type application/json.'),
        h('dl', { class: 'facts' },
          h('dt', {}, 'URL'), h('dd', {}, h('code', {}, p.push.url)),
          h('dt', {}, 'Secret'), h('dd', {}, h('code', {}, p.push.secret))),
        h('a', { class: 'button', href: `#/projects/${p.id}` }, 'Open the project')));
    });
  });
  return form;
}

function gitFacts(project) {
  const src = project.source;
  if (!src) return [];
  const sync = project.sync;
  const where = `${src.url}${src.ref ? ` @ ${src.ref}` : ''}${src.subdir ? ` / ${src.subdir}` : ''}`;
  let last = 'never';
  if (sync) {
    last = sync.outcome === 'failed'
      ? `failed (${sync.trigger}): ${sync.error || ''}`
      : `${sync.outcome} (${sync.trigger}) at ${(sync.commit || '').slice(0, 12)}`;
  }
  return [
    h('dt', {}, 'Git source'), h('dd', {}, h('code', {}, where)),
    h('dt', {}, 'Last sync'), h('dd', { class: sync && sync.outcome === 'failed' ? 'sync-failed' : '' }, last, ' ', sync ? timeEl(sync.at) : ''),
    h('dt', {}, 'Sync interval'), h('dd', {}, src.interval_s ? `every ${src.interval_s} s` : 'on demand and on push'),
  ];
}

async function list(page, ctx) {
  const errors = errorBox();
  const tbody = h('div', {});
  const more = h('button', { type: 'button', hidden: true }, 'Load more');
  let cursor = '';
  const rows = [];
  const load = async () => {
    const res = await get(`/projects${query({ limit: 50, cursor })}`);
    rows.push(...res.items);
    cursor = res.next_cursor || '';
    more.hidden = !cursor;
    put(clear(tbody), table(['Name', 'Current version', 'Description', 'Updated'], rows.map((p) => [
      h('a', { href: `#/projects/${p.id}` }, p.name), `v${p.current_version}`, p.description || '', timeEl(p.updated_at),
    ]), 'No projects yet.'));
  };
  more.addEventListener('click', () => busy(more, errors, load));
  put(page, heading('Projects'), errors,
    h('div', { class: 'grid2' }, h('section', { class: 'card' }, h('h2', {}, 'All projects'), tbody, more),
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
  if (canWrite && single) actions.push(h('a', { class: 'button', href: `#/projects/${id}/edit`, 'data-mutates': '' }, 'Edit code'));
  actions.push(h('a', { class: 'button', href: `#/tasks${canWrite ? '/new' : ''}?project=${id}` }, canWrite ? 'New task' : 'Tasks'));
  if (canWrite && project.source) {
    const sync = h('button', { type: 'button', class: 'primary', 'data-mutates': '' }, 'Sync now');
    sync.addEventListener('click', () => busy(sync, errors, async () => {
      const st = await post(`/projects/${id}/sync`);
      toast(st.outcome === 'created' ? `Version ${st.version} from ${st.commit.slice(0, 12)}` : `Unchanged at ${st.commit.slice(0, 12)}`);
      ctx.navigate(`/projects/${id}`);
    }));
    actions.push(sync);
  }
  if (canWrite) {
    const rm = h('button', { type: 'button', class: 'danger', 'data-mutates': '' }, 'Delete');
    rm.addEventListener('click', async () => {
      if (!(await confirmDialog(`Delete project ${project.name}? Its versions stay archived.`, 'Delete'))) return;
      await busy(rm, errors, async () => { await del(`/projects/${id}`); toast('Project deleted'); ctx.navigate('/projects'); });
    });
    actions.push(rm);
  }
  const vrows = versions.items.slice().sort((a, b) => b.version - a.version).map((v) => {
    const cells = [
      `v${v.version}${v.version === project.current_version ? ' (current)' : ''}`,
      v.entrypoint, v.origin ? h('span', { title: `${v.origin.author}: ${v.origin.message}` }, h('code', {}, v.origin.commit.slice(0, 12)), ` ${v.origin.message}`) : 'upload',
      fmtBytes(v.bundle.size_bytes), String(v.files.length), timeEl(v.created_at),
      h('a', { href: `/api/v1/projects/${id}/versions/${v.version}/download`, download: '' }, 'Download'),
    ];
    if (canWrite) {
      if (v.version !== project.current_version) {
        const b = h('button', { type: 'button', 'data-mutates': '' }, `Make v${v.version} current`);
        b.addEventListener('click', () => busy(b, errors, async () => {
          await patch(`/projects/${id}`, { current_version: v.version });
          toast(`v${v.version} is now current`);
          ctx.navigate(`/projects/${id}`);
        }));
        cells.push(b);
      } else cells.push('');
    }
    return cells;
  });
  const vheaders = ['Version', 'Entrypoint', 'Source', 'Size', 'Files', 'Created', 'Bundle'];
  if (canWrite) vheaders.push('Rollback');
  put(page, 
    heading(project.name, ...actions), errors,
    h('p', { class: 'muted' }, project.description || 'No description.'),
    h('dl', { class: 'facts card' },
      h('dt', {}, 'Current version'), h('dd', {}, `v${project.current_version}`),
      ...gitFacts(project),
      h('dt', {}, 'Entrypoint'), h('dd', {}, h('code', {}, cur.entrypoint)),
      h('dt', {}, 'Requirements'), h('dd', {}, cur.requirements ? h('pre', { class: 'small' }, cur.requirements) : 'none'),
      h('dt', {}, 'Bundle'), h('dd', {}, `${cur.bundle.format}, ${fmtBytes(cur.bundle.size_bytes)}, sha256 `, h('code', {}, cur.bundle.sha256.slice(0, 16))),
      h('dt', {}, 'Id'), h('dd', {}, h('code', {}, project.id))),
    h('section', { class: 'card' }, h('h2', {}, 'Versions'), table(vheaders, vrows)),
    h('section', { class: 'card' }, h('h2', {}, `Files in v${project.current_version}`),
      h('ul', { class: 'files' }, cur.files.map((f) => h('li', {}, h('code', {}, f))))),
    canWrite && !project.source ? uploadForm(ctx, { projectId: id }) : null);
}

async function editor(page, id, ctx) {
  const project = await get(`/projects/${id}`);
  const cur = project.version;
  if (cur.bundle.format !== 'py') {
    put(page, heading(`Edit ${project.name}`), h('p', {}, 'Only single-file projects can be edited here; upload a new archive instead.'));
    return;
  }
  const code = await api('GET', `/projects/${id}/versions/${cur.version}/download`, undefined, { text: true });
  const errors = errorBox();
  const area = h('textarea', { name: 'code', class: 'code', rows: 24, spellcheck: 'false', value: code });
  const reqs = h('textarea', { name: 'requirements', rows: 3, value: cur.requirements || '' });
  const save = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, 'Save as new version');
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
    field(`${cur.entrypoint} (v${cur.version})`, area, 'Tab indents; press Escape first to move focus out with Tab.'),
    field('Requirements', reqs),
    h('div', { class: 'row' }, save, h('a', { class: 'button', href: `#/projects/${id}` }, 'Back')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(save, errors, async () => {
      const v = await post(`/projects/${id}/versions`, { code: area.value, entrypoint: cur.entrypoint, requirements: reqs.value });
      toast(`Saved as v${v.version}`);
      ctx.navigate(`/projects/${id}`);
    });
  });
  put(page, heading(`Edit ${project.name}`), form);
}
