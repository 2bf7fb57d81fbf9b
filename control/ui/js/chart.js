// Inline SVG charts (no library) over time buckets: stacked bars (one segment per series) and
// lines (one per series). Both share one frame: a value axis with grid lines, bucket labels, a
// legend and a text summary for screen readers.

import { s, h } from './dom.js';
import { t } from './i18n.js';

const W = 720, H = 220, PAD_B = 24, PAD_T = 8;

/**
 * buckets: [{label, values: {series: n}}]; series: [{key, label, cls}]
 * Returns a <figure> with the chart, a legend and a text summary for screen readers.
 */
export function stackedBars(buckets, series, title) {
  const max = Math.max(1, ...buckets.map((b) => series.reduce((n, x) => n + (b.values[x.key] || 0), 0)));
  const f = frame(buckets, { max, padL: 36, title });
  buckets.forEach((b, i) => {
    let acc = 0;
    for (const ser of series) {
      const n = b.values[ser.key] || 0;
      if (!n) continue;
      const rect = s('rect', { x: f.x(i) - f.bw / 2 + 2, y: f.y(acc + n), width: Math.max(1, f.bw - 4), height: f.y(acc) - f.y(acc + n), class: ser.cls });
      rect.append(s('title', {}, t('chart.bar', { bucket: b.label, n, series: ser.label })));
      f.svg.append(rect);
      acc += n;
    }
  });
  const totals = series.map((x) => t('chart.total', { n: buckets.reduce((n, b) => n + (b.values[x.key] || 0), 0), series: x.label })).join(t('common.list_sep'));
  return figure(f.svg, series, title, totals);
}

/**
 * One line per series over the buckets, a gap where a value is null.
 * buckets: [{label, values: {series: n|null}}]; series: [{key, label, cls}]; fmt formats a value
 * (the axis and the tooltips); `top`, when given, fixes the axis's maximum (100 for a percentage).
 * Returns a <figure> like stackedBars.
 */
export function lines(buckets, series, title, fmt = String, top = null) {
  const has = (v) => v !== null && v !== undefined;
  const all = buckets.flatMap((b) => series.map((x) => b.values[x.key])).filter(has);
  const f = frame(buckets, { max: top || Math.max(1, ...all), padL: 64, title, fmt });
  for (const ser of series) {
    // A path through each run of buckets that have a value; every value is also a dot.
    let d = '';
    buckets.forEach((b, i) => {
      const v = b.values[ser.key];
      if (!has(v)) return;
      d += `${i > 0 && has(buckets[i - 1].values[ser.key]) ? 'L' : 'M'}${f.x(i).toFixed(1)},${f.y(v).toFixed(1)} `;
      const dot = s('circle', { cx: f.x(i), cy: f.y(v), r: 3, class: `dot ${ser.cls}` });
      dot.append(s('title', {}, t('chart.point', { bucket: b.label, series: ser.label, value: fmt(v) })));
      f.svg.append(dot);
    });
    if (d) f.svg.append(s('path', { d, class: `line ${ser.cls}` }));
  }
  const latest = series.map((ser) => {
    const v = [...buckets].reverse().map((b) => b.values[ser.key]).find(has);
    return v === undefined ? null : t('chart.latest', { series: ser.label, value: fmt(v) });
  }).filter(Boolean).join(t('common.list_sep'));
  return figure(f.svg, series, title, latest);
}

/** The <svg> with its value axis (0 to a round number at or above `max`) and bucket labels. */
function frame(buckets, { max, padL, title, fmt = String }) {
  const step = niceStep(max);
  const top = Math.ceil(max / step) * step;
  const bw = (W - padL) / Math.max(1, buckets.length);
  const y = (v) => PAD_T + (H - PAD_T - PAD_B) * (1 - v / top);
  const x = (i) => padL + i * bw + bw / 2;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, class: 'chart' });
  for (let v = 0; v <= top; v += step) {
    svg.append(s('line', { x1: padL, x2: W, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(s('text', { x: padL - 4, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, fmt(v)));
  }
  buckets.forEach((b, i) => {
    if (i % 3 === 0) svg.append(s('text', { x: x(i), y: H - 6, 'text-anchor': 'middle', class: 'axis' }, b.label));
  });
  return { svg, x, y, bw };
}

/** The chart with its legend and, for screen readers, its title and `summary`. */
function figure(svg, series, title, summary) {
  const legend = h('ul', { class: 'legend' }, series.map((x) => h('li', {}, h('span', { class: `swatch ${x.cls}` }), x.label)));
  return h('figure', { class: 'chart-box' }, svg, legend, h('figcaption', { class: 'sr-only' }, `${title}${t('common.colon')}${summary}`));
}

function niceStep(max) {
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  for (const m of [1, 2, 5, 10]) if (raw <= m * mag) return Math.max(1, m * mag);
  return Math.max(1, 10 * mag);
}
