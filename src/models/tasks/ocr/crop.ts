import type { RawImage } from '../../../preprocess/image.js';
import type { Point, Quad } from './geometry.js';

/**
 * Cuts a text line out of a page along its (possibly tilted) box, as PaddleOCR's `get_rotate_crop_image` does: the
 * crop is `max(top, bottom edge)` wide and `max(left, right edge)` high, the box is warped onto it by a perspective
 * transform (edge pixels replicated outside the page), and a crop at least 1.5 times taller than wide is turned 90
 * degrees counter-clockwise (a vertical line). Sampling is bilinear where PaddleOCR uses bicubic.
 */
export function cropQuad(img: RawImage, box: Quad): RawImage {
  const [p0, p1, p2, p3] = box;
  const w = Math.max(1, Math.trunc(Math.max(dist(p0, p1), dist(p2, p3))));
  const h = Math.max(1, Math.trunc(Math.max(dist(p0, p3), dist(p1, p2))));
  // maps crop coordinates to page coordinates (OpenCV's warpPerspective with WARP_INVERSE_MAP of the same transform)
  const m = homography(
    [
      [0, 0],
      [w, 0],
      [w, h],
      [0, h],
    ],
    box,
  );
  const out = new Uint8Array(w * h * 3);
  const { data, width: W, height: H } = img;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const d = m[6] * x + m[7] * y + 1;
      const sx = Math.min(W - 1, Math.max(0, (m[0] * x + m[1] * y + m[2]) / d));
      const sy = Math.min(H - 1, Math.max(0, (m[3] * x + m[4] * y + m[5]) / d));
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const x1 = Math.min(W - 1, x0 + 1);
      const y1 = Math.min(H - 1, y0 + 1);
      const fx = sx - x0;
      const fy = sy - y0;
      for (let c = 0; c < 3; c++) {
        const top = data[(y0 * W + x0) * 3 + c] * (1 - fx) + data[(y0 * W + x1) * 3 + c] * fx;
        const bottom = data[(y1 * W + x0) * 3 + c] * (1 - fx) + data[(y1 * W + x1) * 3 + c] * fx;
        out[(y * w + x) * 3 + c] = Math.round(top * (1 - fy) + bottom * fy);
      }
    }
  }
  const crop = { data: out, width: w, height: h };
  return h / w >= 1.5 ? rotate90ccw(crop) : crop;
}

/** The image turned by 180 degrees (an upside-down line made upright). */
export function rotate180(img: RawImage): RawImage {
  const n = img.width * img.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) out.set(img.data.subarray(i * 3, i * 3 + 3), (n - 1 - i) * 3);
  return { data: out, width: img.width, height: img.height };
}

/** NumPy's `rot90`: counter-clockwise, so the new row y is the old column width - 1 - y. */
function rotate90ccw(img: RawImage): RawImage {
  const { width: w, height: h, data } = img;
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < w; y++) {
    for (let x = 0; x < h; x++)
      out.set(data.subarray((x * w + (w - 1 - y)) * 3, (x * w + (w - 1 - y)) * 3 + 3), (y * h + x) * 3);
  }
  return { data: out, width: h, height: w };
}

function dist(a: Point, b: Point): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1]);
}

/**
 * The projective transform taking each `from` point to its `to` point, as 8 coefficients [a b c d e f g h] of
 * x' = (a x + b y + c) / (g x + h y + 1), y' = (d x + e y + f) / (g x + h y + 1) (OpenCV's getPerspectiveTransform).
 */
export function homography(from: readonly Point[], to: readonly Point[]): number[] {
  const a: number[][] = [];
  for (let i = 0; i < 4; i++) {
    const [x, y] = from[i];
    const [u, v] = to[i];
    a.push([x, y, 1, 0, 0, 0, -x * u, -y * u, u]);
    a.push([0, 0, 0, x, y, 1, -x * v, -y * v, v]);
  }
  // Gauss-Jordan elimination with partial pivoting on the 8 x 9 augmented matrix
  for (let col = 0; col < 8; col++) {
    let pivot = col;
    for (let r = col + 1; r < 8; r++) if (Math.abs(a[r][col]) > Math.abs(a[pivot][col])) pivot = r;
    [a[col], a[pivot]] = [a[pivot], a[col]];
    const p = a[col][col];
    if (Math.abs(p) < 1e-12) return [1, 0, to[0][0] - from[0][0], 0, 1, to[0][1] - from[0][1], 0, 0]; // degenerate box
    for (let k = col; k < 9; k++) a[col][k] /= p;
    for (let r = 0; r < 8; r++) {
      if (r === col || a[r][col] === 0) continue;
      const f = a[r][col];
      for (let k = col; k < 9; k++) a[r][k] -= f * a[col][k];
    }
  }
  return a.map((row) => row[8]);
}
