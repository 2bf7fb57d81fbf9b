// The run page's log viewer. A finished log opens at its tail (an HTTP range of the archive) and
// loads earlier or later parts on demand, so a 200,000-line log costs what is shown, not its
// size; a live log follows the server-sent events. Lines keep their stream (stderr is coloured)
// and time where the live chunks carry them, ANSI colours are drawn, a search highlights what
// is shown and, for a finished log, finds every matching line on the server and jumps to it.

import { h, put, clear, field, fmtBytes } from './dom.js';
import { get, fetchRange } from './api.js';
import { t } from './i18n.js';

/** Bytes fetched per range: about 3,000 lines of ordinary output. */
const PAGE = 256 * 1024;
/** Lines kept on a live view; older ones stay in the archive (pick the attempt to read them). */
const LIVE_LINES = 20000;
/** Bytes of context fetched before a match that is not shown yet. */
const CONTEXT = 16 * 1024;
/** A live line longer than this is cut (the runner cuts lines at 64 KiB too). */
const MAX_LINE_CHARS = 64 * 1024;

const ESC = '\u001b';
const SGR = new RegExp(`${ESC}\\[([0-9;]*)m`, 'g');
const OTHER_ESCAPES = new RegExp(`${ESC}\\[[0-9;?]*[A-La-ln-z]|${ESC}[()][0-9A-Za-z]|${ESC}\\][^\\u0007]*\\u0007`, 'g');

/** The ANSI style after the SGR parameters `params` ("1;31", "0", "") applied to `style`. */
function applySgr(style, params) {
  const next = { ...style };
  const codes = params === '' ? [0] : params.split(';').map(Number);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) { next.fg = null; next.bg = null; next.bold = false; }
    else if (c === 1) next.bold = true;
    else if (c === 22) next.bold = false;
    else if (c >= 30 && c <= 37) next.fg = c - 30;
    else if (c >= 90 && c <= 97) next.fg = c - 90 + 8;
    else if (c === 39) next.fg = null;
    else if (c >= 40 && c <= 47) next.bg = c - 40;
    else if (c >= 100 && c <= 107) next.bg = c - 100 + 8;
    else if (c === 49) next.bg = null;
    else if (c === 38 || c === 48) i += codes[i + 1] === 5 ? 2 : 4; // 256-colour and RGB: skipped
  }
  return next;
}

/**
 * `text` (one line, without its newline) as spans of ANSI style, with `query` marked; the
 * style after it (escapes carry over to the next line as in a terminal).
 */
function drawText(text, style, query) {
  const out = [];
  let at = 0;
  let current = style;
  const clean = text.replace(OTHER_ESCAPES, '');
  const push = (piece) => {
    if (!piece) return;
    const cls = [];
    if (current.fg !== null && current.fg !== undefined) cls.push(`a-fg${current.fg}`);
    if (current.bg !== null && current.bg !== undefined) cls.push(`a-bg${current.bg}`);
    if (current.bold) cls.push('a-bold');
    const parts = marked(piece, query);
    out.push(cls.length ? h('span', { class: cls.join(' ') }, parts) : parts);
  };
  for (const m of clean.matchAll(SGR)) {
    push(clean.slice(at, m.index));
    current = applySgr(current, m[1]);
    at = m.index + m[0].length;
  }
  push(clean.slice(at));
  return [out, current];
}

/** `text` with each case-insensitive occurrence of `query` in a <mark>. */
function marked(text, query) {
  if (!query) return [text];
  const lower = text.toLowerCase();
  const q = query.toLowerCase();
  const out = [];
  let at = 0;
  for (let i = lower.indexOf(q); i >= 0; i = lower.indexOf(q, at)) {
    if (i > at) out.push(text.slice(at, i));
    out.push(h('mark', {}, text.slice(i, i + q.length)));
    at = i + q.length;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

/** `bytes` cut into lines at each newline: [{text, offset}] with offsets from `base`. */
function splitLines(bytes, base) {
  const decoder = new TextDecoder('utf-8');
  const lines = [];
  let from = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 10) {
      if (i > from || i < bytes.length) lines.push({ text: decoder.decode(bytes.subarray(from, i)), offset: base + from });
      from = i + 1;
    }
  }
  return lines;
}

/** The first whole line's start in `bytes` (a range rarely starts on one): after a newline. */
function firstLineStart(bytes) {
  const i = bytes.indexOf(10);
  return i < 0 ? bytes.length : i + 1;
}

function clock(ms) {
  const d = new Date(ms);
  return `${d.toLocaleTimeString(undefined, { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/**
 * The viewer for run `id`. `run()` answers the run as last read. Returns {card, open, close,
 * drawAttempts}: the page places `card`, calls `open()` once, `close()` when it leaves, and
 * `drawAttempts()` when the run's attempt may have changed. `refresh()` is called when a
 * followed run ends.
 */
export function logViewer(id, run, refresh, errors) {
  const pre = h('pre', { class: 'log', id: 'log', tabindex: '0', 'aria-label': t('runs.log_label'), 'aria-live': 'off' });
  const search = h('input', { type: 'search', name: 'log-search', placeholder: t('runs.find_placeholder') });
  const follow = h('input', { type: 'checkbox', name: 'follow', checked: true });
  const times = h('input', { type: 'checkbox', name: 'log-times', id: 'log-times' });
  const only = h('input', { type: 'checkbox', name: 'log-only', id: 'log-only' });
  const status = h('span', { class: 'muted', id: 'log-status', 'aria-live': 'polite' }, t('runs.connecting'));
  const count = h('span', { class: 'muted', id: 'log-count', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', id: 'log-prev', title: t('runs.prev_match'), 'aria-label': t('runs.prev_match'), disabled: true }, '↑');
  const next = h('button', { type: 'button', id: 'log-next', title: t('runs.next_match'), 'aria-label': t('runs.next_match'), disabled: true }, '↓');
  const download = h('a', { class: 'button', id: 'log-download' }, t('runs.download_gz'));
  const earlier = h('button', { type: 'button', id: 'log-earlier', hidden: true });
  const later = h('button', { type: 'button', id: 'log-later', hidden: true }, t('runs.load_later'));
  const attemptPick = h('select', { name: 'log-attempt', id: 'log-attempt' });

  // What is shown: lines in order; in range mode [start, end) of a log of `total` bytes.
  let lines = [];
  let ranged = null; // {start, end, total, attempt} when the view reads ranges
  let style = {};
  let source = null;
  let stateSource = null;
  let found = null; // the server's matches for the current query
  let current = -1; // index of the match being shown
  let closed = false;
  // Bumped by each start (another attempt, or the page left): an answer for an older one is
  // dropped.
  let generation = 0;

  const setDownload = (n) => {
    download.href = `/api/v1/runs/${id}/logs?format=gzip${n ? `&attempt=${n}` : ''}`;
    download.setAttribute('download', n ? `run-${id}-attempt-${n}.log.gz` : `run-${id}.log.gz`);
  };
  setDownload('');

  const drawAttempts = () => {
    const chosen = attemptPick.value;
    const options = [h('option', { value: '' }, t('runs.all_attempts'))];
    for (let n = 1; n <= run().attempt; n++) options.push(h('option', { value: String(n) }, t('runs.attempt_option', { n })));
    put(clear(attemptPick), ...options);
    attemptPick.value = chosen;
  };

  /** One line's element; `line` is {text, stream?, at?, offset?}. */
  const lineEl = (line) => {
    const [parts, after] = drawText(line.text, style, search.value.trim());
    style = after;
    const attrs = { class: line.stream === 'stderr' ? 'line stderr' : 'line' };
    if (line.at) attrs['data-t'] = clock(line.at);
    if (line.offset !== undefined) attrs['data-offset'] = String(line.offset);
    return h('span', attrs, parts, '\n');
  };

  const redraw = () => {
    style = {};
    const atBottom = follow.checked;
    const frag = document.createDocumentFragment();
    const q = search.value.trim().toLowerCase();
    for (const line of lines) {
      if (only.checked && q && !line.text.toLowerCase().includes(q)) continue;
      frag.append(lineEl(line));
    }
    clear(pre).append(frag);
    earlier.hidden = !(ranged && ranged.start > 0);
    later.hidden = !(ranged && ranged.end < ranged.total);
    if (ranged) earlier.textContent = t('runs.load_earlier', { size: fmtBytes(ranged.start) });
    if (atBottom) pre.scrollTop = pre.scrollHeight;
    countMatches();
  };

  // --- live: server-sent events --------------------------------------------------------------
  let partial = null; // the live line still open (no newline yet)
  const appendChunk = (chunk) => {
    const data = String(chunk.data);
    const continued = partial !== null;
    const pieces = data.split('\n');
    const added = [];
    pieces.forEach((text, i) => {
      const last = i === pieces.length - 1;
      if (i === 0 && partial) {
        partial.text += text;
        // A line without end (progress bars that only return the carriage) is cut as the
        // runner cuts it, so redrawing it stays cheap.
        if (!last || partial.text.length > MAX_LINE_CHARS) partial = null;
        return;
      }
      if (last && text === '') return;
      const line = { text, stream: chunk.stream, at: chunk.at_ms };
      lines.push(line);
      added.push(line);
      if (last) partial = line;
    });
    if (lines.length > LIVE_LINES) {
      lines.splice(0, lines.length - LIVE_LINES);
      redraw();
      return;
    }
    if (search.value.trim() || only.checked || continued || !data.endsWith('\n') || added.length === 0) {
      // A continued or open line, or a search: draw again.
      redraw();
      return;
    }
    for (const line of added) pre.append(lineEl(line));
    if (follow.checked) pre.scrollTop = pre.scrollHeight;
  };

  const followLive = () => {
    ranged = null;
    source = new EventSource(`/api/v1/runs/${id}/logs?follow=true`);
    const live = t('runs.live');
    source.addEventListener('open', () => { status.textContent = live; });
    source.addEventListener('log', (e) => {
      if (status.textContent !== live) status.textContent = live;
      try { appendChunk(JSON.parse(e.data)); } catch (_) { /* skip a malformed chunk */ }
    });
    // What the run waits on before its process starts (its environment being built).
    source.addEventListener('progress', (e) => {
      try { status.textContent = JSON.parse(e.data).data; } catch (_) { /* skip a malformed step */ }
    });
    source.addEventListener('end', () => {
      status.textContent = t('runs.ended');
      source.close();
      refresh().catch((err) => errors.show(err));
    });
    source.addEventListener('error', () => {
      // EventSource reconnects by itself (resuming after the last chunk via Last-Event-ID).
      status.textContent = source.readyState === EventSource.CLOSED ? t('runs.disconnected') : t('runs.reconnecting');
    });
    stateSource = new EventSource(`/api/v1/runs/${id}/events`);
    stateSource.addEventListener('state', (e) => {
      try {
        const r = JSON.parse(e.data);
        const was = run();
        if (r.state !== was.state || r.cancel_requested !== was.cancel_requested || r.attempt !== was.attempt) refresh().catch((err) => errors.show(err));
      } catch (_) { /* ignore */ }
    });
    stateSource.addEventListener('end', () => stateSource.close());
  };

  // --- finished: ranges of the archive ---------------------------------------------------------
  const logPath = (n) => `/runs/${id}/logs${n ? `?attempt=${n}` : ''}`;

  /**
   * A range's answer as whole lines: a line cut by the range's start or end is left for the
   * neighbouring range, unless the range holds no line end at all (a line longer than a page),
   * which is then shown as it is rather than not at all.
   */
  const wholeLines = (r) => {
    let bytes = r.bytes;
    let start = r.start;
    let end = r.start + r.bytes.length;
    if (start > 0) {
      const cut = firstLineStart(bytes);
      if (cut < bytes.length) {
        bytes = bytes.subarray(cut);
        start += cut;
      }
    }
    if (end < r.total) {
      const last = bytes.lastIndexOf(10);
      if (last >= 0 && last + 1 < bytes.length) {
        bytes = bytes.subarray(0, last + 1);
        end = start + last + 1;
      }
    }
    return { lines: splitLines(bytes, start), start, end, total: r.total };
  };

  /** The whole lines of the log's bytes [from, to). */
  const readLines = async (attempt, from, to) => wholeLines(
    await fetchRange(logPath(attempt), `bytes=${from}-${Math.max(from, to - 1)}`));

  const openTail = async (attempt) => {
    const mine = generation;
    ranged = { start: 0, end: 0, total: 0, attempt };
    lines = [];
    status.textContent = t('runs.loading');
    const got = wholeLines(await fetchRange(logPath(attempt), `bytes=-${PAGE}`));
    if (closed || mine !== generation) return;
    ranged = { start: got.start, end: got.end, total: got.total, attempt };
    lines = got.lines;
    status.textContent = attempt ? t('runs.attempt_n', { n: attempt }) : t('runs.ended');
    follow.checked = true;
    redraw();
  };

  earlier.addEventListener('click', async () => {
    if (!ranged || ranged.start === 0) return;
    try {
      const mine = generation;
      const from = Math.max(0, ranged.start - PAGE);
      const got = await readLines(ranged.attempt, from, ranged.start);
      if (mine !== generation) return;
      const height = pre.scrollHeight;
      lines = got.lines.concat(lines);
      ranged.start = got.start;
      follow.checked = false;
      redraw();
      pre.scrollTop = pre.scrollHeight - height; // keep the lines that were in view in view
    } catch (err) { errors.show(err); }
  });
  later.addEventListener('click', async () => {
    if (!ranged || ranged.end >= ranged.total) return;
    try {
      const mine = generation;
      const got = await readLines(ranged.attempt, ranged.end, ranged.end + PAGE);
      if (mine !== generation) return;
      const top = pre.scrollTop;
      // The view ends at a line's end (wholeLines), so this range starts at one.
      lines = lines.concat(got.lines);
      ranged.end = got.end;
      follow.checked = false;
      redraw();
      pre.scrollTop = top;
    } catch (err) { errors.show(err); }
  });

  // --- search ----------------------------------------------------------------------------------
  const countMatches = () => {
    const q = search.value.trim();
    const shown = q ? pre.querySelectorAll('mark').length : 0;
    if (!q) count.textContent = '';
    else if (found) count.textContent = t('runs.found_in_log', { n: `${found.matches.length}${found.truncated ? '+' : ''}`, shown });
    else count.textContent = t('runs.matches_shown', { n: shown });
    const any = found ? found.matches.length > 0 : shown > 0;
    prev.disabled = !any;
    next.disabled = !any;
  };

  /** Shows (loading it if needed) the line at byte `offset` and marks it current. */
  const showOffset = async (offset) => {
    if (!ranged) return;
    const mine = generation;
    if (offset < ranged.start || offset >= ranged.end) {
      // Not shown: a window around it, unless it is just above what is shown.
      if (offset < ranged.start && ranged.start - offset <= 2 * PAGE) {
        const got = await readLines(ranged.attempt, Math.max(0, offset - CONTEXT), ranged.start);
        if (mine !== generation) return;
        lines = got.lines.concat(lines);
        ranged.start = got.start;
      } else {
        const got = await readLines(ranged.attempt, Math.max(0, offset - CONTEXT), offset + PAGE);
        if (mine !== generation) return;
        lines = got.lines;
        ranged.start = got.start;
        ranged.end = got.end;
      }
      follow.checked = false;
      redraw();
    }
    const el = pre.querySelector(`.line[data-offset="${offset}"]`);
    focusLine(el);
  };

  const focusLine = (el) => {
    for (const old of pre.querySelectorAll('.line.current')) old.classList.remove('current');
    if (!el) return;
    el.classList.add('current');
    follow.checked = false;
    const top = el.offsetTop - pre.offsetTop - pre.clientHeight / 3;
    pre.scrollTop = Math.max(0, top);
  };

  const step = async (by) => {
    try {
      if (found && ranged) {
        if (!found.matches.length) return;
        current = (current + by + found.matches.length) % found.matches.length;
        const m = found.matches[current];
        count.textContent = t('runs.match_at', { line: m.line, i: current + 1, n: `${found.matches.length}${found.truncated ? '+' : ''}` });
        await showOffset(m.offset);
        return;
      }
      const lit = [...pre.querySelectorAll('mark')].map((m) => m.closest('.line')).filter((l, i, a) => a.indexOf(l) === i);
      if (!lit.length) return;
      current = (current + by + lit.length) % lit.length;
      focusLine(lit[current]);
      count.textContent = t('runs.match_of_shown', { i: current + 1, n: lit.length });
    } catch (err) { errors.show(err); }
  };
  prev.addEventListener('click', () => step(-1));
  next.addEventListener('click', () => step(1));

  let typing = null;
  search.addEventListener('input', () => {
    clearTimeout(typing);
    // After a pause in typing: one redraw and one server search, not one per key.
    typing = setTimeout(async () => {
      found = null;
      current = -1;
      redraw();
      const q = search.value.trim();
      if (!q || !ranged) return;
      try {
        const mine = generation;
        const n = ranged.attempt;
        const answer = await get(`/runs/${id}/logs/search?q=${encodeURIComponent(q)}${n ? `&attempt=${n}` : ''}`);
        if (search.value.trim() !== q || mine !== generation) return;
        found = answer;
        countMatches();
      } catch (err) { errors.show(err); }
    }, 250);
  });
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); step(e.shiftKey ? -1 : 1); }
  });

  times.addEventListener('change', () => pre.classList.toggle('times', times.checked));
  only.addEventListener('change', redraw);
  follow.addEventListener('change', () => { if (follow.checked) pre.scrollTop = pre.scrollHeight; });
  pre.addEventListener('scroll', () => {
    // Scrolling up stops following; scrolling back to the bottom resumes.
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
    if (follow.checked !== atBottom) follow.checked = atBottom;
  });

  const close = () => {
    if (source) source.close();
    if (stateSource) stateSource.close();
    source = stateSource = null;
  };

  const start = (attempt) => {
    generation += 1;
    close();
    ranged = null;
    lines = [];
    partial = null;
    found = null;
    current = -1;
    clear(pre);
    setDownload(attempt);
    const r = run();
    const live = ['queued', 'running'].includes(r.state);
    // Every attempt of a retried run is in the live window only; one attempt is one archive.
    if (!attempt && (live || r.attempt > 1)) {
      followLive();
      return;
    }
    openTail(attempt).catch((err) => {
      if (err.status === 404 || err.status === 416) {
        ranged = null;
        status.textContent = attempt ? t('runs.attempt_n', { n: attempt }) : t('runs.ended');
        redraw();
      } else errors.show(err);
    });
  };
  attemptPick.addEventListener('change', () => start(attemptPick.value));

  const card = h('section', { class: 'card' },
    h('div', { class: 'row wrap log-tools' }, h('h2', {}, t('runs.log')), status,
      field(t('common.attempt'), attemptPick), field(t('runs.find'), search), prev, next, count,
      h('label', { class: 'check' }, only, ' ', t('runs.only_matching')),
      h('label', { class: 'check' }, follow, ' ', t('runs.follow')),
      h('label', { class: 'check' }, times, ' ', t('runs.times')), download),
    earlier, pre, later);

  return {
    card,
    open: () => start(''),
    close: () => { closed = true; generation += 1; close(); },
    drawAttempts,
  };
}
