// Plane geometry of DB post-processing (db-postprocess.ts): convex hulls, minimum-area rectangles, PaddleOCR's box
// corner order, polygon spans, areas and offsets. Pixel coordinates; a pixel's centre is its integer coordinate.

/** A point [x, y] in pixel coordinates; a pixel's centre is its integer coordinate, as in OpenCV. */
export type Point = [number, number];

/** Four corners, ordered top-left, top-right, bottom-right, bottom-left (PaddleOCR's `get_mini_boxes`). */
export type Quad = [Point, Point, Point, Point];

/** A minimum-area rectangle: its corners in `get_mini_boxes` order and its side lengths. */
export interface MinAreaRect {
  readonly box: Quad;
  readonly shortSide: number;
  readonly longSide: number;
}

const cross = (o: Point, a: Point, b: Point) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);

/**
 * Convex hull by Andrew's monotone chain: the hull's vertices without collinear points, counter-clockwise in
 * x-right/y-up axes (clockwise on screen). One point for a single point, two for collinear points.
 */
export function convexHull(points: readonly Point[]): Point[] {
  const pts = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const unique: Point[] = [];
  for (const p of pts) {
    const last = unique[unique.length - 1];
    if (!last || last[0] !== p[0] || last[1] !== p[1]) unique.push([p[0], p[1]]);
  }
  if (unique.length < 3) return unique;
  const lower: Point[] = [];
  for (const p of unique) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], p) <= 0) lower.pop();
    lower.push(p);
  }
  const upper: Point[] = [];
  for (let i = unique.length - 1; i >= 0; i--) {
    const p = unique[i];
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], p) <= 0) upper.pop();
    upper.push(p);
  }
  lower.pop();
  upper.pop();
  const hull = lower.concat(upper);
  return hull.length >= 3 ? hull : unique.length === 0 ? [] : [unique[0], unique[unique.length - 1]];
}

/**
 * The minimum-area rectangle enclosing the points (`cv2.minAreaRect` + `get_mini_boxes`). By the rotating-calipers
 * theorem (Freeman & Shapira 1975) one side of the minimum rectangle lies on an edge of the convex hull, so each hull
 * edge is tried as a side, its rectangle found by projecting the hull onto the edge and its normal (O(h²) in the hull
 * size h, which stays small for pixel contours). Degenerate sets give a zero-width rectangle.
 */
export function minAreaRect(points: readonly Point[]): MinAreaRect {
  if (points.length === 0) throw new RangeError('minAreaRect of no points');
  const hull = convexHull(points);
  if (hull.length === 1) {
    const p = hull[0];
    return { box: [p, [p[0], p[1]], [p[0], p[1]], [p[0], p[1]]], shortSide: 0, longSide: 0 };
  }
  let best: { area: number; u: Point; lo: Point; hi: Point } | undefined;
  const edges = hull.length === 2 ? 1 : hull.length;
  for (let i = 0; i < edges; i++) {
    const a = hull[i];
    const b = hull[(i + 1) % hull.length];
    const len = Math.hypot(b[0] - a[0], b[1] - a[1]);
    const u: Point = [(b[0] - a[0]) / len, (b[1] - a[1]) / len];
    let minU = Infinity;
    let maxU = -Infinity;
    let minV = Infinity;
    let maxV = -Infinity;
    for (const p of hull) {
      const pu = p[0] * u[0] + p[1] * u[1];
      const pv = -p[0] * u[1] + p[1] * u[0];
      minU = Math.min(minU, pu);
      maxU = Math.max(maxU, pu);
      minV = Math.min(minV, pv);
      maxV = Math.max(maxV, pv);
    }
    const area = (maxU - minU) * (maxV - minV);
    if (!best || area < best.area - 1e-9) best = { area, u, lo: [minU, minV], hi: [maxU, maxV] };
  }
  const { u, lo, hi } = best!;
  // back from (along-edge, along-normal) coordinates: p = pu * u + pv * (-u.y, u.x)
  const at = (pu: number, pv: number): Point => [pu * u[0] - pv * u[1], pu * u[1] + pv * u[0]];
  const corners = [at(lo[0], lo[1]), at(hi[0], lo[1]), at(hi[0], hi[1]), at(lo[0], hi[1])];
  const s1 = hi[0] - lo[0];
  const s2 = hi[1] - lo[1];
  return { box: orderMiniBox(corners), shortSide: Math.min(s1, s2), longSide: Math.max(s1, s2) };
}

/**
 * PaddleOCR's `get_mini_boxes` ordering of a rectangle's corners: sorted by x, the left pair gives top-left (smaller
 * y) and bottom-left, the right pair top-right and bottom-right.
 */
export function orderMiniBox(corners: readonly Point[]): Quad {
  const p = [...corners].sort((a, b) => a[0] - b[0]);
  const [tl, bl] = p[1][1] > p[0][1] ? [p[0], p[1]] : [p[1], p[0]];
  const [tr, br] = p[3][1] > p[2][1] ? [p[2], p[3]] : [p[3], p[2]];
  return [tl, tr, br, bl];
}

/** Where the horizontal line at `y` crosses a convex polygon (inclusive), or undefined when it misses it. */
export function convexSpan(poly: readonly Point[], y: number): [number, number] | undefined {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < poly.length; i++) {
    const a = poly[i];
    const b = poly[(i + 1) % poly.length];
    if (a[1] === b[1]) {
      if (a[1] === y) {
        lo = Math.min(lo, a[0], b[0]);
        hi = Math.max(hi, a[0], b[0]);
      }
      continue;
    }
    if (y < Math.min(a[1], b[1]) || y > Math.max(a[1], b[1])) continue;
    const x = a[0] + ((y - a[1]) * (b[0] - a[0])) / (b[1] - a[1]);
    lo = Math.min(lo, x);
    hi = Math.max(hi, x);
  }
  return lo <= hi ? [lo, hi] : undefined;
}

/** Shoelace area (positive when counter-clockwise in x-right/y-up axes) and perimeter of a polygon. */
export function polygonAreaPerimeter(poly: readonly Point[]): { signedArea: number; perimeter: number } {
  let twice = 0;
  let perimeter = 0;
  for (let i = 0; i < poly.length; i++) {
    const a = poly[i];
    const b = poly[(i + 1) % poly.length];
    twice += a[0] * b[1] - b[0] * a[1];
    perimeter += Math.hypot(b[0] - a[0], b[1] - a[1]);
  }
  return { signedArea: twice / 2, perimeter };
}

/**
 * PaddleOCR's `unclip`: grows a box by distance = area * ratio / perimeter (the inverse of the shrinking applied to
 * text regions when the model was trained). PaddleOCR offsets with pyclipper's JT_ROUND joins; this moves each side of
 * a convex polygon outward by the distance and joins neighbouring sides at their intersection (mitred). For the
 * rectangles DB post-processing feeds it, the minimum-area rectangle of either result is the rectangle grown by the
 * distance on every side, so the final box is the same; the rounded corners themselves are not reproduced.
 */
export function unclip(box: readonly Point[], ratio: number): Point[] {
  const n = box.length;
  const { signedArea, perimeter } = polygonAreaPerimeter(box);
  if (n < 3 || perimeter === 0 || signedArea === 0) return box.map((p) => [p[0], p[1]]);
  const distance = (Math.abs(signedArea) * ratio) / perimeter;
  const sign = signedArea > 0 ? 1 : -1;
  // each side as a point moved outward along the side's normal, and its direction
  const sides = box.map((a, i) => {
    const b = box[(i + 1) % n];
    const len = Math.hypot(b[0] - a[0], b[1] - a[1]);
    const d: Point = len === 0 ? [0, 0] : [(b[0] - a[0]) / len, (b[1] - a[1]) / len];
    const normal: Point = [sign * d[1], -sign * d[0]];
    return { p: [a[0] + normal[0] * distance, a[1] + normal[1] * distance] as Point, d, normal };
  });
  return box.map((v, i) => {
    const s0 = sides[(i - 1 + n) % n];
    const s1 = sides[i];
    const det = s0.d[0] * s1.d[1] - s0.d[1] * s1.d[0];
    if (Math.abs(det) < 1e-12) return [v[0] + s1.normal[0] * distance, v[1] + s1.normal[1] * distance];
    // s0.p + t * s0.d = s1.p + q * s1.d
    const t = ((s1.p[0] - s0.p[0]) * s1.d[1] - (s1.p[1] - s0.p[1]) * s1.d[0]) / det;
    return [s0.p[0] + t * s0.d[0], s0.p[1] + t * s0.d[1]];
  });
}
