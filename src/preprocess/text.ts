import { Errors } from '../errors.js';

// Text to tensors: UTF-8 decoding with limits, and the character n-gram featurizer of lande
// (github.com/fabiospampinato/lande, src/utils.ts: getNormalized, getNgrams, infer), reproduced exactly so a
// network trained on lande's features gives lande's answers. Pure functions; no I/O.

/** One group of features: every n-gram of length `n` in `ngrams` is one input, in this order. */
export interface NgramGroup {
  readonly n: number;
  readonly ngrams: readonly string[];
}

/**
 * A compiled n-gram vocabulary: `featurize(text)` gives a float32 row of `size` values, the relative frequency of
 * each vocabulary n-gram among all n-grams of its length in the normalized text (0 when absent).
 */
export interface NgramFeaturizer {
  readonly size: number;
  featurize(text: string): Float32Array;
  /** The same for a text already passed through {@link normalizeText} (callers that normalized it to check it). */
  featurizeNormalized(norm: string): Float32Array;
  /**
   * The non-zero values of {@link featurizeNormalized}'s row, by position: a few dozen numbers in the JS heap
   * instead of a row of `size` floats outside it (which the event loop's collector counts as external memory).
   */
  featurizeSparse(norm: string): SparseRow;
}

/** A row given by its non-zero values: `value[i]` at position `index[i]`; stored as float32 they are the row's. */
export interface SparseRow {
  readonly index: readonly number[];
  readonly value: readonly number[];
}

/** Writes `row` into `out` (which must be zeros where the row is). */
export function scatter(row: SparseRow, out: Float32Array): void {
  for (let i = 0; i < row.index.length; i++) out[row.index[i]] = row.value[i];
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes a raw text body. A leading BOM is dropped; invalid UTF-8 is refused rather than replaced with U+FFFD,
 * so the model never classifies bytes the client did not mean.
 * @throws Errors.INVALID_TEXT
 */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new Errors.INVALID_TEXT('the body is not valid UTF-8');
  }
}

/**
 * A refusal (415) for a body whose Content-Type declares a charset that is not UTF-8 (or ASCII, a subset), else
 * undefined: text and JSON bodies are read as UTF-8.
 */
export function notUtf8(contentType: string | undefined, type: string): Error | undefined {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? '')?.[1]?.toLowerCase();
  if (charset === undefined || charset === 'utf-8' || charset === 'utf8' || charset === 'us-ascii') return undefined;
  return new Errors.UNSUPPORTED_MEDIA_TYPE(`${type}; charset=${charset} (send UTF-8)`);
}

/**
 * Checks a text input against the model's limit before any work is done on it.
 * @param maxBytes largest accepted size in UTF-8 bytes
 * @throws Errors.MISSING_INPUT for empty or whitespace-only text, Errors.TEXT_TOO_LARGE above `maxBytes`
 */
export function checkText(text: string, maxBytes: number): void {
  if (text.trim() === '') throw new Errors.MISSING_INPUT('the text is empty or only whitespace');
  // length * 3 bounds the UTF-8 size of a UTF-16 string: skip the count for short texts
  if (text.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > maxBytes)
      throw new Errors.TEXT_TOO_LARGE(`${bytes} bytes of UTF-8, the model takes at most ${maxBytes}`);
  }
}

/**
 * lande's normalization: hyphens become spaces, everything but letters, marks and whitespace is dropped, whitespace
 * runs collapse, lower case, trimmed, and one space added at each end (so word starts and ends are n-grams).
 */
export function normalizeText(text: string): string {
  const cleaned = text
    .replace(/-+/g, ' ')
    .replace(/[^\p{L}\p{M}\s]/gu, '')
    .replace(/\s{2,}/g, ' ')
    .toLowerCase()
    .trim();
  return ` ${cleaned} `;
}

/**
 * Relative frequency of every n-gram of length `n` in `text`. Like lande, n-grams are cut on UTF-16 code units
 * (`String#slice`), not code points: characters outside the BMP count as two units.
 */
export function ngramFrequencies(text: string, n: number): Map<string, number> {
  const counts = new Map<string, number>();
  const total = Math.max(0, text.length - n + 1);
  for (let i = 0; i < total; i++) {
    const g = text.slice(i, i + n);
    counts.set(g, (counts.get(g) ?? 0) + 1);
  }
  for (const [g, c] of counts) counts.set(g, c / total);
  return counts;
}

/** True when the normalized text holds something to classify (a letter or mark). */
export function hasLetters(text: string): boolean {
  return /[\p{L}\p{M}]/u.test(text);
}

/**
 * Compiles a vocabulary into a featurizer. Groups are laid out one after the other, in the given order.
 * @param denseChildLimit largest trie child table kept as a dense array (see {@link flatTrie}); tests lower it
 * @throws Error for an empty group list or an n-gram whose length is not its group's `n`
 */
export function ngramFeaturizer(groups: readonly NgramGroup[], denseChildLimit = DENSE_CHILD_LIMIT): NgramFeaturizer {
  if (groups.length === 0) throw new Error('the n-gram vocabulary is empty');
  let size = 0;
  const layout = groups.map((g) => {
    if (!Number.isInteger(g.n) || g.n < 1 || g.n > 0xffff)
      throw new Error(`n-gram length ${g.n} is not an integer in 1..65535`);
    const bad = g.ngrams.find((s) => s.length !== g.n);
    if (bad !== undefined) throw new Error(`n-gram ${JSON.stringify(bad)} is in the group of length ${g.n}`);
    const offset = size;
    size += g.ngrams.length;
    return { n: g.n, ngrams: g.ngrams, offset };
  });
  const { symbolOf, child, atStart, at, longest } = flatTrie(layout, denseChildLimit);
  const lengthOf = new Uint16Array(size);
  for (const { n, ngrams, offset } of layout) lengthOf.fill(n, offset, offset + ngrams.length);
  // counts of the text being featurized (exact in float32), zeroed again before the next: featurizing is synchronous
  const counts = new Float32Array(size);
  const featurizeSparse = (norm: string): SparseRow => {
    const index: number[] = [];
    for (let i = 0; i < norm.length; i++) {
      // the walk from position i: at most `longest` code units, ending at the first one no vocabulary n-gram continues
      let node = 0;
      const end = Math.min(norm.length, i + longest);
      for (let c = i; c < end; c++) {
        const symbol = symbolOf[norm.charCodeAt(c)];
        if (symbol === 0) break;
        node = child(node, symbol);
        if (node === 0) break;
        for (let k = atStart[node]; k < atStart[node + 1]; k++) if (counts[at[k]]++ === 0) index.push(at[k]);
      }
    }
    // each count divided once by its length's n-gram total: the same values as ngramFrequencies gives
    const value = index.map((p) => counts[p] / (norm.length - lengthOf[p] + 1));
    for (const p of index) counts[p] = 0;
    return { index, value };
  };
  const featurizeNormalized = (norm: string): Float32Array => {
    const row = new Float32Array(size);
    scatter(featurizeSparse(norm), row);
    return row;
  };
  return {
    size,
    featurize: (text) => featurizeNormalized(normalizeText(text)),
    featurizeNormalized,
    featurizeSparse,
  };
}

/**
 * Entries above which a trie's child table is a Map instead of a dense array (4 MiB; language-id's is 168,000 entries:
 * 840 nodes x 200 code units).
 */
const DENSE_CHILD_LIMIT = 1 << 20;

/**
 * The vocabulary as a trie over UTF-16 code units, in flat arrays: from each position of a text, a walk of at most
 * the longest n finds its n-grams of every length without making a string. The code units the vocabulary uses are
 * numbered 1..k (`symbolOf`, 0 for any other), nodes 0..m (0 is the root, which no edge reaches), and `child(node,
 * symbol)` is the node an edge leads to, 0 for none: a lookup in a dense m x (k + 1) table, or in a Map for
 * vocabularies whose table would be large. Node `i`'s feature positions are `at[atStart[i]]..at[atStart[i + 1] - 1]`.
 */
function flatTrie(layout: readonly { n: number; ngrams: readonly string[]; offset: number }[], denseLimit: number) {
  const symbolOf = new Uint32Array(65536);
  let symbols = 0;
  for (const { ngrams } of layout)
    for (const g of ngrams) for (let c = 0; c < g.length; c++) symbolOf[g.charCodeAt(c)] ||= ++symbols;
  const width = symbols + 1;
  // edges first, keyed node * width + symbol; nodes numbered in order of creation
  const edges = new Map<number, number>();
  const positions: number[][] = [[]];
  let longest = 0;
  for (const { n, ngrams, offset } of layout) {
    longest = Math.max(longest, n);
    ngrams.forEach((g, i) => {
      let node = 0;
      for (let c = 0; c < n; c++) {
        const key = node * width + symbolOf[g.charCodeAt(c)];
        let next = edges.get(key);
        if (next === undefined) edges.set(key, (next = positions.push([]) - 1));
        node = next;
      }
      positions[node].push(offset + i);
    });
  }
  const atStart = new Int32Array(positions.length + 1);
  positions.forEach((p, i) => (atStart[i + 1] = atStart[i] + p.length));
  const at = Int32Array.from(positions.flat());
  let child: (node: number, symbol: number) => number;
  if (positions.length * width <= denseLimit) {
    const table = new Int32Array(positions.length * width);
    for (const [key, next] of edges) table[key] = next;
    edges.clear(); // (the other closure shares its scope: the Map would otherwise live as long as the table)
    child = (node, symbol) => table[node * width + symbol];
  } else {
    child = (node, symbol) => edges.get(node * width + symbol) ?? 0;
  }
  return { symbolOf, child, atStart, at, longest };
}
