// Read-only code views: a small Python tokenizer (keywords, strings including triple-quoted
// ones, comments, numbers, decorators) and a line-numbered view built from DOM nodes. File text
// only ever becomes text nodes, never markup.

import { h } from './dom.js';

const KEYWORDS = new Set(('and as assert async await break class continue def del elif else except finally for ' +
  'from global if import in is lambda nonlocal not or pass raise return try while with yield match case type').split(' '));
const CONSTANTS = new Set(['True', 'False', 'None', 'self', 'cls']);

// Sticky patterns, tried at one offset. Longest first: a triple quote before a single one; a
// prefix (r, b, f, u and pairs) may lead a string.
const STRING_START = /([rRbBfFuU]{0,2})('''|"""|'|")/y;
const NUMBER = /0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][+-]?\d+)?[jJ]?/y;
const NAME = /[A-Za-z_\u00c0-\uffff][\w\u00c0-\uffff]*/y;
const DECORATOR = /@[A-Za-z_][\w.]*/y;

/** The match of sticky `re` at `i` in `src`, or null. */
function at(re, src, i) {
  re.lastIndex = i;
  return re.exec(src);
}

/** Where a string that opened with `quote` at `from` ends in `src` (past its closing quote). */
function stringEnd(src, from, quote) {
  const triple = quote.length === 3;
  for (let i = from; i < src.length; i++) {
    const c = src[i];
    if (c === '\\') { i++; continue; }
    if (!triple && c === '\n') return i;
    if (src.startsWith(quote, i)) return i + quote.length;
  }
  return src.length;
}

/** Python source as `[kind, text]` tokens; kind is null for plain text. */
export function tokenizePython(src) {
  const out = [];
  let plain = '';
  let lineStart = true;
  const push = (kind, text) => {
    if (plain) { out.push([null, plain]); plain = ''; }
    out.push([kind, text]);
  };
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    const word = !/\w/.test(src[i - 1] || '');
    let m;
    if (c === '#') {
      const end = src.indexOf('\n', i);
      const stop = end < 0 ? src.length : end;
      push('com', src.slice(i, stop));
      i = stop;
    } else if ((m = at(STRING_START, src, i)) && (m[1] === '' || word)) {
      const end = stringEnd(src, i + m[0].length, m[2]);
      push('str', src.slice(i, end));
      i = end;
    } else if (lineStart && (m = at(DECORATOR, src, i))) {
      push('dec', m[0]);
      i += m[0].length;
    } else if ((m = at(NAME, src, i))) {
      const name = m[0];
      if (KEYWORDS.has(name)) push('kw', name);
      else if (CONSTANTS.has(name)) push('const', name);
      else plain += name;
      i += name.length;
    } else if (word && (m = at(NUMBER, src, i)) && m[0] !== '.') {
      push('num', m[0]);
      i += m[0].length;
    } else {
      plain += c;
      i += 1;
    }
    if (c === '\n') lineStart = true;
    else if (c !== ' ' && c !== '\t') lineStart = false;
  }
  if (plain) out.push([null, plain]);
  return out;
}

/** Splits tokens into lines (a token spanning lines, such as a docstring, is cut at each). */
function lines(tokens) {
  const out = [[]];
  for (const [kind, text] of tokens) {
    const parts = text.split('\n');
    parts.forEach((part, j) => {
      if (j > 0) out.push([]);
      if (part) out[out.length - 1].push([kind, part]);
    });
  }
  if (out.length > 1 && out[out.length - 1].length === 0) out.pop();
  return out;
}

/** Whether a file name is Python source. */
export function isPython(path) {
  return /\.pyw?$|\.pyi$/.test(path);
}

/** A read-only, line-numbered view of `text`, highlighted when `path` is Python. */
export function codeView(text, path) {
  const tokens = isPython(path) ? tokenizePython(text) : [[null, text]];
  const rows = lines(tokens).map((line, n) => h('span', { class: 'line', 'data-n': n + 1 },
    line.map(([kind, part]) => (kind ? h('span', { class: `tok-${kind}` }, part) : part)), '\n'));
  return h('pre', { class: 'code-view', translate: 'no', tabindex: '0' }, h('code', {}, rows));
}
