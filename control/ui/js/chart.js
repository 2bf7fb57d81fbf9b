// An inline SVG stacked bar chart (no library): one bar per bucket, one segment per series.

import { s, h } from './dom.js';
import { t } from './i18n.js';

/**
 * buckets: [{label, values: {series: n}}]; series: [{key, label, cls}]
 * Returns a <figure> with the chart, a legend and a text summary for screen readers.
 */
export function stackedBars(buckets, series, title) {
  const W = 720, H = 220, padL = 36, padB = 24, padT = 8;
  const max = Math.max(1, ...buckets.map((b) => series.reduce((n, x) => n + (b.values[x.key] || 0), 0)));
  const step = niceStep(max);
  const top = Math.ceil(max / step) * step;
  const bw = (W - padL) / buckets.length;
  const y = (v) => padT + (H - padT - padB) * (1 - v / top);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, class: 'chart' });
  for (let v = 0; v <= top; v += step) {
    svg.append(s('line', { x1: padL, x2: W, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(s('text', { x: padL - 4, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, String(v)));
  }
  buckets.forEach((b, i) => {
    let acc = 0;
    const x = padL + i * bw + 2;
    for (const ser of series) {
      const n = b.values[ser.key] || 0;
      if (!n) continue;
      const rect = s('rect', { x, y: y(acc + n), width: Math.max(1, bw - 4), height: y(acc) - y(acc + n), class: ser.cls });
      rect.append(s('title', {}, t('chart.bar', { bucket: b.label, n, series: ser.label })));
      svg.append(rect);
      acc += n;
    }
    if (i % 3 === 0) svg.append(s('text', { x: x + bw / 2 - 2, y: H - 6, 'text-anchor': 'middle', class: 'axis' }, b.label));
  });
  const legend = h('ul', { class: 'legend' }, series.map((x) => h('li', {}, h('span', { class: `swatch ${x.cls}` }), x.label)));
  const totals = series.map((x) => t('chart.total', { n: buckets.reduce((n, b) => n + (b.values[x.key] || 0), 0), series: x.label })).join(t('common.list_sep'));
  return h('figure', { class: 'chart-box' }, svg, legend, h('figcaption', { class: 'sr-only' }, `${title}${t('common.colon')}${totals}`));
}

function niceStep(max) {
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  for (const m of [1, 2, 5, 10]) if (raw <= m * mag) return Math.max(1, m * mag);
  return Math.max(1, 10 * mag);
}
