/**
 * Task metrics: what a user of each task sees, as opposed to tensor agreement. Character error rate for text lines
 * (full-width punctuation scored as its ASCII form: `scoringForm`);
 * line recall, precision and page CER for OCR pages; segment F1 for voice activity; top-1 for classifiers. Used by
 * the quality bench (bench/quality.ts); meant for the compressor's gates, which do not use them yet.
 */

/** Levenshtein distance between two strings, by code point (insertions, deletions, substitutions all cost 1). */
export function editDistance(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  if (x.length === 0) return y.length;
  if (y.length === 0) return x.length;
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  let cur = new Array<number>(y.length + 1);
  for (let i = 1; i <= x.length; i++) {
    cur[0] = i;
    for (let j = 1; j <= y.length; j++)
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1));
    [prev, cur] = [cur, prev];
  }
  return prev[y.length];
}

/**
 * The form texts are scored in: the full-width forms of ASCII characters (U+FF01-U+FF5E) and the ideographic space
 * become the ASCII ones, nothing else changes. PP-OCRv4's Chinese dictionary holds both widths of the punctuation
 * and its recognizer writes `，（）` inside English lines about as often as `,()`: one reading, two code points.
 * The served text keeps what the model read (PaddleOCR and RapidOCR answer the same; a full-width comma is right in
 * Chinese text, and NFKC would fold more than width), so the metrics, not the answers, ignore the width.
 */
export function scoringForm(text: string): string {
  return text.replace(/[\uff01-\uff5e\u3000]/g, (c) =>
    c === '\u3000' ? ' ' : String.fromCharCode(c.charCodeAt(0) - 0xfee0),
  );
}

/** Character error rate of `read` against `truth`: edits over the truth's length (1 for an empty read of text). */
export function cer(truth: string, read: string): number {
  const n = [...truth].length;
  if (n === 0) return read.length === 0 ? 0 : 1;
  return editDistance(scoringForm(truth), scoringForm(read)) / n;
}

/** Whether a line was read exactly, in the scoring form (`scoringForm`). */
export function exact(truth: string, read: string): boolean {
  return scoringForm(truth) === scoringForm(read);
}

/** What OCR made of one page, against its truth. */
export interface PageScore {
  /** Lines of the truth. */
  truthLines: number;
  /** Lines returned. */
  readLines: number;
  /** Truth lines matched one to one by a returned line within the CER limit. */
  matched: number;
  /** Edits between the page's text as read (lines in the order returned) and as written, over its length. */
  pageCer: number;
  /** Mean CER of the matched lines. */
  matchedCer: number;
}

/** A line read counts as the truth's line when its CER is at most this (10 %). */
export const LINE_MATCH_CER = 0.1;

/**
 * Scores a page: each truth line is matched to at most one returned line and back, best pairs first, a pair
 * counting only within `limit` CER; the page CER compares the whole text in reading order (lines joined by
 * newlines), so lines split, merged, missed or out of order all cost.
 */
export function scorePage(truth: readonly string[], read: readonly string[], limit = LINE_MATCH_CER): PageScore {
  const pairs: { t: number; r: number; c: number }[] = [];
  truth.forEach((t, i) =>
    read.forEach((r, j) => {
      // a cheap bound first: lengths alone can rule a pair out
      const lengthGap = Math.abs([...t].length - [...r].length) / Math.max(1, [...t].length);
      if (lengthGap > limit) return;
      const c = cer(t, r);
      if (c <= limit) pairs.push({ t: i, r: j, c });
    }),
  );
  pairs.sort((a, b) => a.c - b.c || a.t - b.t || a.r - b.r);
  const usedT = new Set<number>();
  const usedR = new Set<number>();
  let cerSum = 0;
  for (const p of pairs) {
    if (usedT.has(p.t) || usedR.has(p.r)) continue;
    usedT.add(p.t);
    usedR.add(p.r);
    cerSum += p.c;
  }
  return {
    truthLines: truth.length,
    readLines: read.length,
    matched: usedT.size,
    pageCer: cer(truth.join('\n'), read.join('\n')),
    matchedCer: usedT.size === 0 ? 0 : cerSum / usedT.size,
  };
}

/** Scores of many pages together. */
export interface PagesSummary {
  pages: number;
  /** Matched truth lines over all truth lines. */
  recall: number;
  /** Matched returned lines over all returned lines (1 when nothing was returned). */
  precision: number;
  /** Sum of page edits over sum of page lengths. */
  pageCer: number;
}

export function summarizePages(scores: readonly (PageScore & { truthChars: number })[]): PagesSummary {
  const sum = (f: (s: PageScore & { truthChars: number }) => number) => scores.reduce((a, s) => a + f(s), 0);
  const truthLines = sum((s) => s.truthLines);
  const readLines = sum((s) => s.readLines);
  const matched = sum((s) => s.matched);
  const chars = sum((s) => s.truthChars);
  return {
    pages: scores.length,
    recall: truthLines === 0 ? 1 : matched / truthLines,
    precision: readLines === 0 ? 1 : matched / readLines,
    pageCer: chars === 0 ? 0 : sum((s) => s.pageCer * s.truthChars) / chars,
  };
}

/** A page's score with the length its CER is over, for `summarizePages`. */
export function scorePageWeighted(truth: readonly string[], read: readonly string[]) {
  return { ...scorePage(truth, read), truthChars: [...truth.join('\n')].length };
}

/** Many lines read against their truth: corpus CER ({@link corpusCer}) and the share read exactly. */
export function scoreLines(pairs: readonly { truth: string; read: string }[]): { cer: number; exact: number } {
  return {
    cer: corpusCer(pairs),
    exact: pairs.filter((p) => exact(p.truth, p.read)).length / pairs.length,
  };
}

/** CER over many lines: total edits over total truth length. */
export function corpusCer(pairs: readonly { truth: string; read: string }[]): number {
  let edits = 0;
  let chars = 0;
  for (const { truth, read } of pairs) {
    edits += editDistance(scoringForm(truth), scoringForm(read));
    chars += [...truth].length;
  }
  return chars === 0 ? 0 : edits / chars;
}

/** A stretch of time, in seconds. */
export interface Segment {
  start: number;
  end: number;
}

/**
 * Segment F1 for voice activity: a detected segment is a hit when it overlaps an unmatched truth segment with an
 * intersection over union of at least `minIou` (one to one, best overlaps first).
 */
export function segmentF1(
  truth: readonly Segment[],
  detected: readonly Segment[],
  minIou = 0.5,
): { precision: number; recall: number; f1: number; hits: number } {
  const pairs: { t: number; d: number; iou: number }[] = [];
  truth.forEach((t, i) =>
    detected.forEach((d, j) => {
      const inter = Math.max(0, Math.min(t.end, d.end) - Math.max(t.start, d.start));
      const union = Math.max(t.end, d.end) - Math.min(t.start, d.start);
      const iou = union > 0 ? inter / union : 0;
      if (iou > 0 && iou >= minIou) pairs.push({ t: i, d: j, iou });
    }),
  );
  pairs.sort((a, b) => b.iou - a.iou);
  const usedT = new Set<number>();
  const usedD = new Set<number>();
  for (const p of pairs) {
    if (usedT.has(p.t) || usedD.has(p.d)) continue;
    usedT.add(p.t);
    usedD.add(p.d);
  }
  const precision = detected.length === 0 ? (truth.length === 0 ? 1 : 0) : usedD.size / detected.length;
  const recall = truth.length === 0 ? 1 : usedT.size / truth.length;
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return { precision, recall, f1, hits: usedT.size };
}

/** Share of answers whose top label is the expected one. */
export function top1(pairs: readonly { expected: string; predicted: string }[]): number {
  return pairs.length === 0 ? 0 : pairs.filter((p) => p.expected === p.predicted).length / pairs.length;
}

/** One system's task metrics as the quality bench reports them (fractions; the ones that apply to its task). */
export interface TaskScores {
  /** OCR pages. */
  recall?: number;
  pageCer?: number;
  /** Text lines. */
  cer?: number;
  /** Classifiers. */
  top1?: number;
  /** Voice activity. */
  f1?: number;
}

/**
 * Where a compressed model reads worse than its original by more than `maxLoss` (a fraction: 0.01 is one point) on
 * any metric both were scored on: higher is better for recall, top-1 and F1, lower for the CERs. Empty: it passes.
 */
export function qualityLosses(compressed: TaskScores, original: TaskScores, maxLoss: number): string[] {
  const losses: string[] = [];
  const pts = (v: number) => `${(v * 100).toFixed(1)} %`;
  for (const key of ['recall', 'top1', 'f1'] as const) {
    const [c, o] = [compressed[key], original[key]];
    if (c !== undefined && o !== undefined && o - c > maxLoss) losses.push(`${key} ${pts(c)} against ${pts(o)}`);
  }
  for (const key of ['pageCer', 'cer'] as const) {
    const [c, o] = [compressed[key], original[key]];
    if (c !== undefined && o !== undefined && c - o > maxLoss) losses.push(`${key} ${pts(c)} against ${pts(o)}`);
  }
  return losses;
}
