// A project's files and versions: the file browser on the project page (a version picker, the
// version's files by folder, a read-only viewer) and the compare page, the per-file diff of two
// versions (`#/projects/ID/compare?from=N&to=M`).

import { get } from '../api.js';
import { h, clear, heading, field, errorBox, busy, fmtBytes, put } from '../dom.js';
import { t, label } from '../i18n.js';
import { hashQuery } from '../app.js';
import { codeView } from '../highlight.js';

/** `path` as URL path segments, each encoded. */
function encodePath(path) {
  return path.split('/').map(encodeURIComponent).join('/');
}

/** The version picker: newest first, the current one marked. */
function versionSelect(name, versions, current, selected) {
  const options = versions.slice().sort((a, b) => b.version - a.version).map((v) => h('option', { value: v.version, selected: v.version === selected },
    v.version === current ? t('projects.version_current', { version: v.version }) : `v${v.version}`));
  return h('select', { name }, options);
}

/** The files as a list by folder: a folder's row, then its files, folders in path order. */
function fileTree(files, open) {
  const dirOf = (path) => path.slice(0, Math.max(0, path.lastIndexOf('/')));
  const byFolder = (a, b) => dirOf(a.path).localeCompare(dirOf(b.path)) || (a.path < b.path ? -1 : 1);
  const rows = [];
  let dir = null;
  for (const f of files.slice().sort(byFolder)) {
    const cut = f.path.lastIndexOf('/');
    const here = dirOf(f.path);
    if (here !== dir) {
      dir = here;
      if (here) rows.push(h('li', { class: 'dir' }, `${here}/`));
    }
    const button = h('button', { type: 'button', 'data-path': f.path, title: fmtBytes(f.size) }, f.path.slice(cut + 1));
    button.addEventListener('click', () => open(f.path));
    rows.push(h('li', { class: here ? 'nested' : null }, button));
  }
  return h('ul', { class: 'file-tree', translate: 'no', 'aria-label': t('projects.file_list') }, rows);
}

/** What the viewer shows of one file: its text, or why it shows none. */
function fileBody(file) {
  if (file.link) return h('p', { class: 'muted' }, t('projects.file_link'), ' ', h('code', {}, file.link));
  if (file.too_large) return h('p', { class: 'muted' }, t('projects.file_too_large', { size: fmtBytes(file.size) }));
  if (file.binary) return h('p', { class: 'muted' }, t('projects.file_binary', { size: fmtBytes(file.size) }));
  return codeView(file.text, file.path);
}

/** The project page's file browser for `project`'s versions, drawn once the current version's
 * entrypoint (or first file) is open. */
export async function fileBrowser(project, versions) {
  const id = project.id;
  const errors = errorBox();
  const picker = versionSelect('files-version', versions.items, project.current_version, project.current_version);
  const tree = h('div', {});
  const viewer = h('div', { id: 'file-view', 'aria-live': 'polite' });
  let version = project.current_version;
  let opened = 0;
  const open = async (path) => {
    // Only the last file asked for is drawn, however the answers arrive.
    const seq = ++opened;
    for (const b of tree.querySelectorAll('button')) b.setAttribute('aria-current', String(b.dataset.path === path));
    errors.show(null);
    put(clear(viewer), h('p', { class: 'muted' }, t('projects.loading')));
    try {
      const file = await get(`/projects/${id}/versions/${version}/files/${encodePath(path)}`);
      if (seq !== opened) return;
      put(clear(viewer), h('div', { class: 'file-head' }, h('code', {}, file.path), h('span', { class: 'muted' }, fmtBytes(file.size))), fileBody(file));
    } catch (e) {
      clear(viewer);
      errors.show(e);
    }
  };
  const show = async () => {
    version = Number(picker.value);
    const listing = await get(`/projects/${id}/versions/${version}/files`);
    const v = versions.items.find((x) => x.version === version);
    put(clear(tree), fileTree(listing.files, open), listing.truncated ? h('p', { class: 'muted' }, t('projects.files_truncated')) : null);
    clear(viewer);
    const first = listing.files.find((f) => v && f.path === v.entrypoint) || listing.files[0];
    if (first) await open(first.path);
  };
  picker.addEventListener('change', () => busy(picker, errors, show));
  const compare = versions.items.length > 1
    ? h('a', { class: 'button', href: `#/projects/${id}/compare?from=${Math.max(1, project.current_version - 1)}&to=${project.current_version}` }, t('projects.compare'))
    : null;
  const section = h('section', { class: 'card', id: 'file-browser' },
    h('h2', {}, t('projects.file_browser')), errors,
    h('div', { class: 'row' }, field(t('projects.version'), picker), compare),
    h('div', { class: 'browser' }, tree, viewer));
  await show().catch((e) => errors.show(e));
  return section;
}

/** The lines of a unified diff, each coloured by what it does. */
function diffLines(text) {
  const rows = text.replace(/\n$/, '').split('\n').map((line, i) => {
    let kind = '';
    // The `---`/`+++` header is the first two lines; later, `---x` is a removed `--x`.
    if (i < 2) kind = 'meta';
    else if (line.startsWith('@@')) kind = 'hunk';
    else if (line.startsWith('+')) kind = 'add';
    else if (line.startsWith('-')) kind = 'del';
    else if (line.startsWith('\\')) kind = 'meta';
    return h('span', { class: `line ${kind}` }, line, '\n');
  });
  return h('pre', { class: 'diff', translate: 'no', tabindex: '0' }, h('code', {}, rows));
}

/** One changed file of a diff: its path, status, sizes and lines. */
function changedFile(f) {
  const sizes = [f.old_size, f.new_size].filter((n) => n !== null && n !== undefined).map(fmtBytes).join(' → ');
  let body = null;
  if (f.binary) body = h('p', { class: 'muted' }, t('projects.diff_binary'));
  else if (f.diff) body = diffLines(f.diff);
  const cut = f.truncated ? h('p', { class: 'muted' }, t('projects.diff_file_truncated')) : null;
  return h('section', { class: 'diff-file', 'data-path': f.path, 'data-status': f.status },
    h('h3', {}, h('code', {}, f.path), h('span', { class: `badge diff-${f.status}` }, label('diff', f.status)), h('span', { class: 'muted' }, sizes)),
    body, cut);
}

/** The diff's summary and its files. */
function diffView(d) {
  const counts = { added: 0, removed: 0, modified: 0 };
  for (const f of d.files) counts[f.status] += 1;
  return h('div', { id: 'diff' },
    h('p', {}, t('projects.diff_summary', { added: counts.added, removed: counts.removed, modified: counts.modified, unchanged: d.unchanged })),
    d.truncated ? h('p', { class: 'notice', role: 'status' }, t('projects.diff_truncated')) : null,
    d.files.length ? d.files.map(changedFile) : h('p', { class: 'muted' }, t('projects.diff_none')));
}

/** `#/projects/ID/compare?from=N&to=M`: two version pickers and the diff between them. */
export async function render(page, params, ctx) {
  const [id] = params;
  const [project, versions] = await Promise.all([get(`/projects/${id}`), get(`/projects/${id}/versions`)]);
  const q = hashQuery();
  const cur = project.current_version;
  const from = Number(q.get('from')) || Math.max(1, cur - 1);
  const to = Number(q.get('to')) || cur;
  const errors = errorBox();
  const pickFrom = versionSelect('from', versions.items, cur, from);
  const pickTo = versionSelect('to', versions.items, cur, to);
  const submit = h('button', { type: 'submit', class: 'primary' }, t('projects.compare_run'));
  const form = h('form', { class: 'card form', id: 'compare-form' }, errors,
    h('div', { class: 'row' }, field(t('projects.compare_from'), pickFrom), field(t('projects.compare_to'), pickTo), submit));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.navigate(`/projects/${id}/compare?from=${pickFrom.value}&to=${pickTo.value}`);
  });
  const out = h('section', { class: 'card' });
  put(page, heading(t('projects.compare_title', { name: project.name }), h('a', { class: 'button', href: `#/projects/${id}` }, t('projects.back'))), form, out);
  try {
    put(out, diffView(await get(`/projects/${id}/diff?from=${from}&to=${to}`)));
  } catch (e) {
    errors.show(e);
  }
}
