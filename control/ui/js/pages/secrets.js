// Secrets: names only (values are write-only); admins set, replace and delete.

import { get, api, del } from '../api.js';
import { h, clear, heading, field, errorBox, busy, table, timeEl, toast, confirmDialog, put } from '../dom.js';
import { t } from '../i18n.js';

export async function render(page, params, ctx) {
  const admin = ctx.session.can('admin');
  const errors = errorBox();
  const box = h('div', {});
  const name = h('input', { name: 'secret-name', required: true, pattern: '[A-Z_][A-Z0-9_]*', autocomplete: 'off', spellcheck: 'false', class: 'mono' });
  const value = h('textarea', { name: 'secret-value', rows: 3, required: true, autocomplete: 'off', spellcheck: 'false' });
  const load = async () => {
    const res = await get('/secrets');
    const headers = [t('common.name'), t('common.created'), t('common.updated'), t('secrets.by')];
    if (admin) headers.push('');
    put(clear(box), table(headers, res.items.map((s) => {
      const cells = [h('code', {}, s.name), timeEl(s.created_at), timeEl(s.updated_at), s.updated_by || '—'];
      if (admin) {
        const replace = h('button', { type: 'button', 'data-mutates': '' }, t('secrets.replace'));
        replace.addEventListener('click', () => { name.value = s.name; value.value = ''; value.focus(); });
        const rm = h('button', { type: 'button', class: 'danger', 'data-mutates': '' }, t('common.delete'));
        rm.addEventListener('click', async () => {
          if (!(await confirmDialog(t('secrets.confirm_delete', { name: s.name }), t('common.delete')))) return;
          await busy(rm, errors, async () => { await del(`/secrets/${encodeURIComponent(s.name)}`); toast(t('secrets.deleted')); await load(); });
        });
        cells.push(h('div', { class: 'row' }, replace, rm));
      }
      return cells;
    }), t('secrets.none_yet')));
  };
  let form = null;
  if (admin) {
    const save = h('button', { type: 'submit', class: 'primary', 'data-mutates': '' }, t('secrets.save'));
    const ferr = errorBox();
    form = h('form', { class: 'card form', id: 'secret-form' }, h('h2', {}, t('secrets.set_or_replace')), ferr,
      field(t('common.name'), name, t('secrets.name_hint')),
      field(t('secrets.value'), value, t('secrets.value_hint')), save);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      busy(save, ferr, async () => {
        await api('PUT', `/secrets/${encodeURIComponent(name.value.trim())}`, { value: value.value });
        toast(t('secrets.saved', { name: name.value.trim() }));
        form.reset();
        await load();
      });
    });
  }
  put(page, heading(t('secrets.title')), errors, h('div', { class: 'grid2' }, h('section', { class: 'card' }, box), form));
  await load();
}
