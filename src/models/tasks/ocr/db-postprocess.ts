// Post-processing of a DB (Differentiable Binarization) text detector such as PaddleOCR's PP-OCRv4 det model,
// following PaddleOCR's `ppocr/postprocess/db_postprocess.py` (`DBPostProcess`, score_mode 'fast') and the reading
// order of `tools/infer/predict_system.py` (`sorted_boxes`). Pure geometry on plain typed arrays: no OpenCV, no
// Clipper. The model turns a [1,3,H,W] image into a [1,1,H,W] map of per-pixel text probabilities; this module turns
// that map into one rotated quadrilateral per text line.
//
// Deliberate differences from PaddleOCR, none of which changes the boxes on real maps by more than a pixel:
// - contours are the outer borders of 8-connected components only (OpenCV's RETR_LIST also returns hole borders,
//   whose boxes lie inside the outer box of the same component), with every border pixel kept (no
//   CHAIN_APPROX_SIMPLE compression: only the convex hull of a contour is used, which is the same);
// - `unclip` offsets a convex polygon's sides (a mitred offset) instead of pyclipper's JT_ROUND offset on integer
//   coordinates; the minimum-area rectangle taken of the result is the same for the rectangles it is applied to;
// - the polygon mask of `boxScoreFast` is the set of pixel centres inside or on the (convex) box, not OpenCV's
//   `fillPoly` rasterisation;
// - only score_mode 'fast' is implemented.

import { convexSpan, minAreaRect, unclip, type Point, type Quad } from './geometry.js';

/** `DBPostProcess` settings. */
export interface DbOptions {
  /** A pixel is text when its probability is above this. */
  readonly thresh: number;
  /** A candidate is kept when the mean probability inside its box is at least this. */
  readonly boxThresh: number;
  /** At most this many contours are considered. */
  readonly maxCandidates: number;
  /** How far a box is grown back: distance = area * unclipRatio / perimeter. */
  readonly unclipRatio: number;
  /** Candidates whose short side is under this (in map pixels) are dropped; after unclipping, under minSize + 2. */
  readonly minSize: number;
  /** Dilate the binary mask with a 2x2 kernel before tracing (PaddleOCR's `use_dilation`). */
  readonly useDilation: boolean;
  /**
   * Boxes whose width or height, in image pixels and truncated, is at most this are dropped (PaddleOCR's
   * `TextDetector.filter_tag_det_res`, which drops sides <= 3). 0 keeps everything.
   */
  readonly minBoxSide: number;
}

/** PaddleOCR's defaults (`DBPostProcess.__init__` and the det settings of `tools/infer/utility.py`). */
export const DB_DEFAULTS: DbOptions = {
  thresh: 0.3,
  boxThresh: 0.6,
  maxCandidates: 1000,
  unclipRatio: 1.5,
  minSize: 3,
  useDilation: false,
  minBoxSide: 3,
};

/** From map coordinates to image coordinates: image = map * scale; width and height bound the result. */
export interface DbScale {
  readonly x: number;
  readonly y: number;
  /** The image width boxes are clipped to (0..width-1); by default round(mapWidth * x). */
  readonly width?: number;
  /** The image height boxes are clipped to (0..height-1); by default round(mapHeight * y). */
  readonly height?: number;
}

/** One detected text region, in image coordinates (integers). */
export interface DetectedBox {
  readonly box: Quad;
  /** Mean probability inside the box before unclipping. */
  readonly score: number;
}

/** Pixels whose probability is strictly above `thresh` (PaddleOCR: `pred > thresh`); 1 for text, 0 otherwise. */
export function binarize(prob: ArrayLike<number>, w: number, h: number, thresh: number): Uint8Array {
  checkSize(prob, w, h);
  const mask = new Uint8Array(w * h);
  for (let i = 0; i < w * h; i++) if (prob[i] > thresh) mask[i] = 1;
  return mask;
}

/**
 * `cv2.dilate(mask, [[1,1],[1,1]])`: with the kernel's anchor at (1,1), a pixel is set when it or its left, upper or
 * upper-left neighbour is.
 */
export function dilate2x2(mask: Uint8Array, w: number, h: number): Uint8Array {
  checkSize(mask, w, h);
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      out[i] =
        mask[i] || (x > 0 && mask[i - 1]) || (y > 0 && mask[i - w]) || (x > 0 && y > 0 && mask[i - w - 1]) ? 1 : 0;
    }
  }
  return out;
}

// the 8 neighbours by direction code; with y pointing down, increasing codes turn counter-clockwise on screen
const DX = [1, 1, 0, -1, -1, -1, 0, 1];
const DY = [0, -1, -1, -1, 0, 1, 1, 1];

/**
 * Outer borders of the 8-connected components of a binary mask (non-zero = foreground), one point list per
 * component, components in raster order of their first pixel.
 *
 * Each component is labelled by a flood fill; its border is then followed from its first pixel in raster order with
 * the border-following step of Suzuki & Abe (1985, "Topological structural analysis of digitized binary images by
 * border following", steps 3.1-3.5) restricted to outer borders. Holes are not traced, so a ring gives one contour.
 * The border pixels are listed in order, each time they are passed (a one-pixel-wide line is walked there and back,
 * as in OpenCV's CHAIN_APPROX_NONE); a single pixel is a one-point contour.
 */
export function findContours(mask: Uint8Array, w: number, h: number): Point[][] {
  checkSize(mask, w, h);
  const seen = new Uint8Array(w * h);
  const stack: number[] = [];
  const contours: Point[][] = [];
  for (let start = 0; start < w * h; start++) {
    if (!mask[start] || seen[start]) continue;
    // label the whole component so that none of its other pixels starts a contour
    seen[start] = 1;
    stack.push(start);
    while (stack.length > 0) {
      const i = stack.pop()!;
      const x = i % w;
      const y = (i - x) / w;
      for (let k = 0; k < 8; k++) {
        const nx = x + DX[k];
        const ny = y + DY[k];
        if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
        const j = ny * w + nx;
        if (mask[j] && !seen[j]) {
          seen[j] = 1;
          stack.push(j);
        }
      }
    }
    contours.push(traceOuterBorder(mask, w, h, start % w, Math.floor(start / w)));
  }
  return contours;
}

/** Suzuki-Abe border following from (sx, sy), a pixel whose left, upper-left, upper and upper-right neighbours are 0. */
function traceOuterBorder(mask: Uint8Array, w: number, h: number, sx: number, sy: number): Point[] {
  const on = (x: number, y: number) => x >= 0 && y >= 0 && x < w && y < h && mask[y * w + x] !== 0;
  // 3.1: clockwise from the background pixel on the left, find the first foreground neighbour
  let k1 = -1;
  for (let i = 0; i < 8; i++) {
    const k = (4 - i + 8) % 8;
    if (on(sx + DX[k], sy + DY[k])) {
      k1 = k;
      break;
    }
  }
  if (k1 < 0) return [[sx, sy]];
  const x1 = sx + DX[k1];
  const y1 = sy + DY[k1];
  // 3.2: (x3, y3) is the current pixel, kPrev the direction from it to the previous one
  let x3 = sx;
  let y3 = sy;
  let kPrev = k1;
  const points: Point[] = [];
  for (;;) {
    // 3.3: counter-clockwise, starting after the previous pixel, find the next foreground neighbour (the previous
    // pixel itself at worst, so the search always succeeds)
    let k4 = kPrev;
    for (let i = 1; i <= 8; i++) {
      const k = (kPrev + i) % 8;
      if (on(x3 + DX[k], y3 + DY[k])) {
        k4 = k;
        break;
      }
    }
    const x4 = x3 + DX[k4];
    const y4 = y3 + DY[k4];
    points.push([x3, y3]);
    // 3.5: back at the start, coming from the pixel found first: the border is closed
    if (x4 === sx && y4 === sy && x3 === x1 && y3 === y1) return points;
    kPrev = (k4 + 4) % 8;
    x3 = x4;
    y3 = y4;
  }
}

/**
 * PaddleOCR's `box_score_fast`: the mean probability over the pixels of the box's bounding region (floor/ceil of its
 * extent, clipped to the map) whose centres lie inside or on the box, with the box's corners shifted into that region
 * and truncated to integers as PaddleOCR does. The box must be convex. 0 when no pixel is covered.
 */
export function boxScoreFast(prob: ArrayLike<number>, w: number, h: number, box: readonly Point[]): number {
  checkSize(prob, w, h);
  const clamp = (v: number, hiV: number) => Math.min(Math.max(v, 0), hiV);
  const xs = box.map((p) => p[0]);
  const ys = box.map((p) => p[1]);
  const xmin = clamp(Math.floor(Math.min(...xs)), w - 1);
  const xmax = clamp(Math.ceil(Math.max(...xs)), w - 1);
  const ymin = clamp(Math.floor(Math.min(...ys)), h - 1);
  const ymax = clamp(Math.ceil(Math.max(...ys)), h - 1);
  const poly: Point[] = box.map((p) => [Math.trunc(p[0] - xmin), Math.trunc(p[1] - ymin)]);
  let sum = 0;
  let count = 0;
  for (let r = 0; r <= ymax - ymin; r++) {
    const span = convexSpan(poly, r);
    if (!span) continue;
    const c0 = Math.max(0, Math.ceil(span[0] - 1e-9));
    const c1 = Math.min(xmax - xmin, Math.floor(span[1] + 1e-9));
    for (let c = c0; c <= c1; c++) {
      sum += prob[(ymin + r) * w + xmin + c];
      count++;
    }
  }
  return count === 0 ? 0 : sum / count;
}

/**
 * PaddleOCR's `sorted_boxes` reading order: by the top-left corner's y then x, then one bubble pass that puts a box
 * before its predecessor when their top-left y differ by less than 10 px and it is further left.
 */
export function sortBoxes<T extends { readonly box: Quad }>(boxes: readonly T[]): T[] {
  const out = [...boxes].sort((a, b) => a.box[0][1] - b.box[0][1] || a.box[0][0] - b.box[0][0]);
  for (let i = 0; i < out.length - 1; i++) {
    for (let j = i; j >= 0; j--) {
      if (Math.abs(out[j + 1].box[0][1] - out[j].box[0][1]) < 10 && out[j + 1].box[0][0] < out[j].box[0][0]) {
        [out[j], out[j + 1]] = [out[j + 1], out[j]];
      } else break;
    }
  }
  return out;
}

/**
 * DB post-processing of one probability map [h, w] (the model's [1,1,h,w] output): binarize, trace components,
 * take each one's minimum-area box, drop it when its short side is under `minSize` or its mean probability under
 * `boxThresh`, grow it by `unclip`, take the minimum-area box again (dropped under `minSize + 2`), scale it to image
 * coordinates (rounded, clipped to the image), drop it when a side is at most `minBoxSide` image pixels, and sort the
 * survivors in reading order.
 *
 * @param scale image = map * scale, e.g. { x: imageWidth / w, y: imageHeight / h } for a resized input
 */
export function dbPostprocess(
  prob: ArrayLike<number>,
  w: number,
  h: number,
  opts: Partial<DbOptions> = {},
  scale: DbScale = { x: 1, y: 1 },
): DetectedBox[] {
  const o = { ...DB_DEFAULTS, ...opts };
  let mask = binarize(prob, w, h, o.thresh);
  if (o.useDilation) mask = dilate2x2(mask, w, h);
  const contours = findContours(mask, w, h).slice(0, o.maxCandidates);
  const imageW = scale.width ?? Math.round(w * scale.x);
  const imageH = scale.height ?? Math.round(h * scale.y);
  const clip = (v: number, size: number) => Math.min(Math.max(Math.round(v), 0), size - 1);
  const found: DetectedBox[] = [];
  for (const contour of contours) {
    const first = minAreaRect(contour);
    if (first.shortSide < o.minSize) continue;
    const score = boxScoreFast(prob, w, h, first.box);
    if (score < o.boxThresh) continue;
    const grown = minAreaRect(unclip(first.box, o.unclipRatio));
    if (grown.shortSide < o.minSize + 2) continue;
    const box = grown.box.map((p) => [clip(p[0] * scale.x, imageW), clip(p[1] * scale.y, imageH)]) as Quad;
    const width = Math.trunc(Math.hypot(box[0][0] - box[1][0], box[0][1] - box[1][1]));
    const height = Math.trunc(Math.hypot(box[0][0] - box[3][0], box[0][1] - box[3][1]));
    if (width <= o.minBoxSide || height <= o.minBoxSide) continue;
    found.push({ box, score });
  }
  return sortBoxes(found);
}

function checkSize(data: ArrayLike<number>, w: number, h: number): void {
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 0 || h < 0 || data.length < w * h) {
    throw new RangeError(`a ${w}x${h} map needs ${w * h} values, got ${data.length}`);
  }
}
