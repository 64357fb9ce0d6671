import { sortBoxes } from './db-postprocess.js';
import type { Quad } from './geometry.js';

/** A page's line boxes in the manifest's reading order: `columns` ({@link readingOrder}) or `rows` (PaddleOCR's). */
export function orderLines<T extends { readonly box: Quad }>(boxes: readonly T[], order: 'columns' | 'rows'): T[] {
  return order === 'columns' ? readingOrder(boxes) : sortBoxes(boxes);
}

/**
 * Reading order of a page's line boxes, columns first: a recursive XY-cut (Nagy and Seth, 1984) on the boxes as if
 * the page were straight. Within a region, a vertical band of paper that no box crosses splits it into a left and a
 * right part, read in that order (columns); else the widest horizontal band of paper splits it into a top and a
 * bottom part; a region with neither is read top to bottom, left to right (PaddleOCR's `sorted_boxes`). A heading
 * across two columns is read before them, and each column to its end before the next: sorting by y alone reads the
 * two columns' lines in turn. A vertical band is a column gutter only when both sides hold lines of running text
 * (two or more lines ten line heights wide): labels beside values, as on a receipt or a form, are read row by row.
 */
export function readingOrder<T extends { readonly box: Quad }>(boxes: readonly T[]): T[] {
  if (boxes.length < 2) return [...boxes];
  // the cut is O(n^2 log n) at worst (a column peeled one line at a time): past this many boxes, rows order
  if (boxes.length > MAX_BOXES) return sortBoxes(boxes);
  const angle = pageAngle(boxes.map((b) => b.box));
  const [cos, sin] = [Math.cos(-angle), Math.sin(-angle)];
  const items = boxes.map((b) => {
    const xs = b.box.map(([x, y]) => x * cos - y * sin);
    const ys = b.box.map(([x, y]) => x * sin + y * cos);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    // boxes a little lower than they are: neighbouring lines of a slightly curved or skewed page stay apart
    const trim = (y1 - y0) * 0.15;
    return { b, x0, x1, y0: y0 + trim, y1: y1 - trim, h: y1 - y0 };
  });
  const heights = items.map((i) => i.h).sort((a, b) => a - b);
  const gutter = heights[heights.length >> 1]; // a column gap is at least one line height wide
  return cut(items, gutter).map((i) => i.b);
}

/** Boxes beyond which the XY-cut is not tried (1000 take about 0.1 s; the detector keeps 1000 by default). */
const MAX_BOXES = 1500;

interface Item<T> {
  readonly b: T;
  readonly x0: number;
  readonly x1: number;
  readonly y0: number;
  readonly y1: number;
}

function cut<T extends { readonly box: Quad }>(items: Item<T>[], gutter: number): Item<T>[] {
  if (items.length < 2) return items;
  const vertical = widestGap(
    items,
    (i) => i.x0,
    (i) => i.x1,
    gutter,
  );
  if (vertical !== undefined) {
    const left = items.filter((i) => i.x1 <= vertical);
    const right = items.filter((i) => i.x1 > vertical);
    // columns of text hold lines of several words on both sides; a column of labels beside a column of prices (a
    // receipt, a form) does not, and is read row by row
    if (proseColumn(left, gutter) && proseColumn(right, gutter)) return [...cut(left, gutter), ...cut(right, gutter)];
  }
  const horizontal = widestGap(
    items,
    (i) => i.y0,
    (i) => i.y1,
    0,
  );
  if (horizontal !== undefined) {
    const top = items.filter((i) => i.y1 <= horizontal);
    return [
      ...cut(top, gutter),
      ...cut(
        items.filter((i) => i.y1 > horizontal),
        gutter,
      ),
    ];
  }
  const byItem = new Map(items.map((i) => [i.b, i]));
  return sortBoxes(items.map((i) => i.b)).map((b) => byItem.get(b)!);
}

/** At least two of the items are wide lines (10 line heights: several words), as a column of running text has. */
function proseColumn<T>(items: readonly Item<T>[], lineHeight: number): boolean {
  return items.filter((i) => i.x1 - i.x0 >= 10 * lineHeight).length >= 2;
}

/**
 * The start of the widest band wider than `min` that no item crosses along one axis, between items; undefined when
 * there is none.
 */
function widestGap<T>(
  items: readonly T[],
  start: (i: T) => number,
  end: (i: T) => number,
  min: number,
): number | undefined {
  const sorted = [...items].sort((a, b) => start(a) - start(b));
  let reach = end(sorted[0]);
  let best: { at: number; width: number } | undefined;
  for (const item of sorted.slice(1)) {
    const width = start(item) - reach;
    if (width > min && (!best || width > best.width)) best = { at: reach, width };
    reach = Math.max(reach, end(item));
  }
  return best?.at;
}

/**
 * The page's tilt in radians, between -90 and 90 degrees: the median slope of the long boxes' top edges (0 when none
 * is long). An edge drawn right to left (a box whose corners were turned with the page) has the same slope.
 */
function pageAngle(boxes: readonly Quad[]): number {
  const slopes = boxes
    .filter(([p0, p1, , p3]) => Math.hypot(p1[0] - p0[0], p1[1] - p0[1]) > 2 * Math.hypot(p3[0] - p0[0], p3[1] - p0[1]))
    .map(([p0, p1]) => Math.atan2(p1[1] - p0[1], p1[0] - p0[0]))
    .map((a) => (a > Math.PI / 2 ? a - Math.PI : a <= -Math.PI / 2 ? a + Math.PI : a))
    .sort((a, b) => a - b);
  return slopes.length === 0 ? 0 : slopes[slopes.length >> 1];
}
