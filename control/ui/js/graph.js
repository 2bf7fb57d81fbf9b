// A run group drawn as a graph (inline SVG, no library): one column per step, a box per run
// coloured by its state and linking to its page, an arrow for each "this run started that one".
// A step with more runs than fit shows the first ones and a box counting the rest.

import { s, h } from './dom.js';
import { t, label } from './i18n.js';

const BOX_W = 150, BOX_H = 34, GAP_X = 50, GAP_Y = 12, PAD = 8;
/** Most boxes drawn in one column. */
const PER_COLUMN = 12;

/**
 * group: the answer of GET /runs/{id}/group; names: task id → name; current: the run whose
 * page this is. Returns a <figure> with the graph and a text summary for screen readers.
 */
export function runGraph(group, names, current) {
  const byId = new Map(group.runs.map((r) => [r.id, r]));
  const into = new Map();
  for (const e of group.edges) {
    if (byId.has(e.from) && byId.has(e.to)) (into.get(e.to) || into.set(e.to, []).get(e.to)).push(e.from);
  }
  // A run's column is its longest path from the group's first run: runs come in queued order,
  // so every run's parents are placed before it.
  const column = new Map();
  for (const r of group.runs) column.set(r.id, Math.max(0, ...(into.get(r.id) || []).map((p) => (column.get(p) ?? 0) + 1)));
  const columns = [];
  for (const r of group.runs) (columns[column.get(r.id)] ||= []).push(r);
  const pos = new Map();
  const boxes = [];
  columns.forEach((runs, c) => {
    const shown = runs.length > PER_COLUMN ? runs.slice(0, PER_COLUMN - 1) : runs;
    shown.forEach((r, i) => pos.set(r.id, { x: PAD + c * (BOX_W + GAP_X), y: PAD + i * (BOX_H + GAP_Y) }));
    if (shown.length < runs.length) {
      const rest = runs.slice(shown.length);
      const at = { x: PAD + c * (BOX_W + GAP_X), y: PAD + shown.length * (BOX_H + GAP_Y) };
      for (const r of rest) pos.set(r.id, at);
      boxes.push(more(at, rest));
    }
  });
  const rows = Math.min(PER_COLUMN, Math.max(1, ...columns.map((c) => c.length)));
  const W = PAD * 2 + columns.length * BOX_W + (columns.length - 1) * GAP_X;
  const H = PAD * 2 + rows * BOX_H + (rows - 1) * GAP_Y;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': t('graph.label'), class: 'graph' },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 8 8', refX: 8, refY: 4, markerWidth: 8, markerHeight: 8, orient: 'auto' },
      s('path', { d: 'M0,0 L8,4 L0,8 z', class: 'graph-arrow' }))));
  const drawn = new Set();
  for (const e of group.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    const key = a && b && `${a.x},${a.y}>${b.x},${b.y}`;
    if (!key || drawn.has(key)) continue;
    drawn.add(key);
    const line = s('path', { d: `M${a.x + BOX_W},${a.y + BOX_H / 2} C${a.x + BOX_W + GAP_X / 2},${a.y + BOX_H / 2} ${b.x - GAP_X / 2},${b.y + BOX_H / 2} ${b.x},${b.y + BOX_H / 2}`,
      class: `graph-edge edge-${e.kind}`, 'marker-end': 'url(#arrow)' });
    line.append(s('title', {}, label('link', e.kind)));
    svg.append(line);
  }
  for (const r of group.runs) {
    const at = pos.get(r.id);
    if (!at || boxes.some((b) => b.at === at)) continue;
    const name = names[r.task_id] || r.task_id.slice(0, 10);
    const link = s('a', { href: `#/runs/${r.id}`, class: r.id === current ? 'graph-node current' : 'graph-node' },
      s('rect', { x: at.x, y: at.y, width: BOX_W, height: BOX_H, rx: 5, class: `st-${r.state}` }),
      s('text', { x: at.x + 8, y: at.y + 14 }, name.length > 20 ? `${name.slice(0, 19)}…` : name),
      s('text', { x: at.x + 8, y: at.y + 28, class: 'graph-state' }, label('state', r.state)),
      s('title', {}, t('graph.node', { name, state: label('state', r.state), trigger: label('trigger', r.trigger) })));
    svg.append(link);
  }
  for (const b of boxes) svg.append(b.el);
  const counts = {};
  for (const r of group.runs) counts[r.state] = (counts[r.state] || 0) + 1;
  const summary = Object.entries(counts).map(([k, n]) => t('chart.total', { n, series: label('state', k) })).join(t('common.list_sep'));
  return h('figure', { class: 'graph-box', id: 'run-graph' },
    h('div', { class: 'graph-scroll' }, svg),
    h('figcaption', { class: 'muted' }, t('graph.summary', { n: group.runs.length, summary }), group.truncated ? t('graph.truncated') : ''));
}

/** The box standing for the runs of a column that did not fit. */
function more(at, runs) {
  const failed = runs.filter((r) => !['succeeded', 'queued', 'running'].includes(r.state)).length;
  const el = s('g', { class: 'graph-more' },
    s('rect', { x: at.x, y: at.y, width: BOX_W, height: BOX_H, rx: 5 }),
    s('text', { x: at.x + 8, y: at.y + 21 }, failed ? t('graph.more_failed', { n: runs.length, failed }) : t('graph.more', { n: runs.length })));
  return { at, el };
}
