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

/**
 * An inline SVG line chart: one line per series over the buckets, a gap where a value is null.
 * buckets: [{label, values: {series: n|null}}]; series: [{key, label, cls}]; fmt formats a value
 * (the axis and the tooltips); `top`, when given, fixes the axis's maximum (100 for a percentage).
 * Returns a <figure> like stackedBars.
 */
export function lines(buckets, series, title, fmt = String, top = null) {
  const W = 720, H = 220, padL = 64, padB = 24, padT = 8;
  const all = buckets.flatMap((b) => series.map((x) => b.values[x.key])).filter((v) => v !== null && v !== undefined);
  const max = top || Math.max(1, ...all);
  const step = niceStep(max);
  top = Math.ceil(max / step) * step;
  const bw = (W - padL) / Math.max(1, buckets.length);
  const y = (v) => padT + (H - padT - padB) * (1 - v / top);
  const x = (i) => padL + i * bw + bw / 2;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, class: 'chart' });
  for (let v = 0; v <= top; v += step) {
    svg.append(s('line', { x1: padL, x2: W, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(s('text', { x: padL - 4, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, fmt(v)));
  }
  buckets.forEach((b, i) => {
    if (i % 3 === 0) svg.append(s('text', { x: x(i), y: H - 6, 'text-anchor': 'middle', class: 'axis' }, b.label));
  });
  for (const ser of series) {
    // One path per run of buckets that have a value; a lone point is drawn as a dot.
    let d = '';
    buckets.forEach((b, i) => {
      const v = b.values[ser.key];
      if (v === null || v === undefined) return;
      const prev = i > 0 ? buckets[i - 1].values[ser.key] : null;
      d += `${prev === null || prev === undefined ? 'M' : 'L'}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      const dot = s('circle', { cx: x(i), cy: y(v), r: 3, class: `dot ${ser.cls}` });
      dot.append(s('title', {}, t('chart.point', { bucket: b.label, series: ser.label, value: fmt(v) })));
      svg.append(dot);
    });
    if (d) svg.append(s('path', { d, class: `line ${ser.cls}` }));
  }
  const legend = h('ul', { class: 'legend' }, series.map((x) => h('li', {}, h('span', { class: `swatch ${x.cls}` }), x.label)));
  const last = series.map((ser) => {
    const v = [...buckets].reverse().map((b) => b.values[ser.key]).find((v) => v !== null && v !== undefined);
    return v === undefined ? null : t('chart.latest', { series: ser.label, value: fmt(v) });
  }).filter(Boolean).join(t('common.list_sep'));
  return h('figure', { class: 'chart-box' }, svg, legend, h('figcaption', { class: 'sr-only' }, `${title}${t('common.colon')}${last}`));
}
