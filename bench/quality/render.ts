/**
 * Renders evaluation text: lines and pages drawn with real fonts (TrueType files from npm packages, so every
 * machine draws the same), each with the ground truth of what was drawn (the text, and on pages each line's box).
 * Everything random comes from one seeded generator: the same seed gives the same images and truth.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import sharp from 'sharp';
import { homography } from '../../src/models/tasks/ocr/crop.js';
import type { Point, Quad } from '../../src/models/tasks/ocr/geometry.js';

/** mulberry32: a small, fast, seedable generator (enough for picking fonts and jitter). */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  int(lo: number, hi: number): number {
    return Math.floor(this.range(lo, hi + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** Standard normal (Box-Muller). */
  normal(): number {
    return Math.sqrt(-2 * Math.log(1 - this.next())) * Math.cos(2 * Math.PI * this.next());
  }
}

/** A font face: its family name as Pango knows it, the style words, and the TrueType file. */
export interface Face {
  readonly family: string;
  readonly style: string;
  readonly file: string;
}

const require = createRequire(import.meta.url);
const packageDir = (name: string) => path.dirname(require.resolve(`${name}/package.json`));
const dejavu = (file: string, family: string, style = '') => ({
  family,
  style,
  file: path.join(packageDir('dejavu-fonts-ttf'), 'ttf', file),
});
const google = (pkg: string, family: string, weight: string, style = '') => {
  const base = family.replace(/ /g, '');
  return { family, style, file: path.join(packageDir(`@expo-google-fonts/${pkg}`), weight, `${base}_${weight}.ttf`) };
};

/**
 * The faces of each split. Calibration and evaluation share no family, so a model tuned on one is not graded on a
 * font it has seen.
 */
export const FACES: Record<Split, readonly Face[]> = {
  calibration: [
    dejavu('DejaVuSans.ttf', 'DejaVu Sans'),
    dejavu('DejaVuSans-Bold.ttf', 'DejaVu Sans', 'Bold'),
    dejavu('DejaVuSansMono.ttf', 'DejaVu Sans Mono'),
    google('roboto-slab', 'Roboto Slab', '400Regular'),
    google('roboto-slab', 'Roboto Slab', '700Bold', 'Bold'),
    google('lato', 'Lato', '400Regular'),
    google('lato', 'Lato', '400Regular_Italic', 'Italic'),
  ],
  evaluation: [
    dejavu('DejaVuSerif.ttf', 'DejaVu Serif'),
    dejavu('DejaVuSerif-Italic.ttf', 'DejaVu Serif', 'Italic'),
    google('roboto', 'Roboto', '400Regular'),
    google('roboto', 'Roboto', '700Bold', 'Bold'),
    google('roboto', 'Roboto', '300Light', 'Light'),
    google('roboto-mono', 'Roboto Mono', '400Regular'),
    google('source-serif-4', 'Source Serif 4', '400Regular'),
    google('source-serif-4', 'Source Serif 4', '600SemiBold', 'SemiBold'),
  ],
};

export type Split = 'calibration' | 'evaluation';

/** A coverage mask of rendered text: 0 (paper) to 255 (ink), one byte per pixel. */
export interface Mask {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

const escapeMarkup = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Draws one line of text (no wrapping) at `size` pixels, letters spaced by `spacing` pixels. */
export async function drawText(text: string, face: Face, size: number, spacing = 0): Promise<Mask> {
  const markup =
    spacing === 0
      ? escapeMarkup(text)
      : `<span letter_spacing="${Math.round(spacing * 1024)}">${escapeMarkup(text)}</span>`;
  const { data, info } = await sharp({
    text: {
      text: markup,
      font: `${face.family} ${face.style} ${size}`.replace(/ +/g, ' '),
      fontfile: face.file,
      dpi: 72,
    },
  })
    .extractChannel(0)
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

/** The box of the pixels of `mask` with ink above `threshold`, or undefined when there is none. */
export function inkBox(mask: Mask, threshold = 64): { x0: number; y0: number; x1: number; y1: number } | undefined {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < mask.height; y++)
    for (let x = 0; x < mask.width; x++)
      if (mask.data[y * mask.width + x] > threshold) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
  return x1 < 0 ? undefined : { x0, y0, x1: x1 + 1, y1: y1 + 1 };
}

type Rgb = readonly [number, number, number];

/** Paper and ink colours: mostly dark on light, sometimes light on dark, with some colour. */
function colours(rng: Rng): { paper: Rgb; ink: Rgb } {
  const tint = () => rng.int(-18, 18);
  if (rng.chance(0.15)) {
    const p = rng.int(20, 70);
    const i = rng.int(200, 250);
    return { paper: [p + tint(), p + tint(), p + tint()], ink: [i, i, i] };
  }
  const p = rng.int(215, 252);
  const i = rng.int(0, 70);
  const blueInk = rng.chance(0.15);
  return {
    paper: [p, p - rng.int(0, 12), p - rng.int(0, 25)],
    ink: blueInk ? [i, i + 10, Math.min(255, i + 120)] : [i, i, i],
  };
}

/** An RGB canvas of `paper`, lit unevenly when `light` (a photographed look). */
function canvas(width: number, height: number, paper: Rgb, rng: Rng, light: boolean): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  const gx = light ? rng.range(-0.25, 0.25) : 0;
  const gy = light ? rng.range(-0.25, 0.25) : 0;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const shade = 1 + gx * (x / width - 0.5) + gy * (y / height - 0.5);
      for (let c = 0; c < 3; c++) out[(y * width + x) * 3 + c] = clamp(paper[c] * shade);
    }
  return out;
}

const clamp = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

/** Paints `mask` in `ink` onto the RGB `page` with its top left corner at (x, y). */
function paint(page: Uint8Array, pageWidth: number, pageHeight: number, mask: Mask, x: number, y: number, ink: Rgb) {
  for (let my = 0; my < mask.height; my++) {
    const py = y + my;
    if (py < 0 || py >= pageHeight) continue;
    for (let mx = 0; mx < mask.width; mx++) {
      const px = x + mx;
      const a = mask.data[my * mask.width + mx] / 255;
      if (a === 0 || px < 0 || px >= pageWidth) continue;
      const at = (py * pageWidth + px) * 3;
      for (let c = 0; c < 3; c++) page[at + c] = clamp(page[at + c] * (1 - a) + ink[c] * a);
    }
  }
}

/**
 * Warps an RGB image by the projective transform taking its corners to `corners` (rotation, tilt, keystone), onto a
 * canvas just large enough; outside the image is `fill`. Returns the warped image and the forward map for boxes.
 */
function warp(
  img: Uint8Array,
  width: number,
  height: number,
  corners: Quad,
  fill: Rgb,
): { data: Uint8Array; width: number; height: number; map: (p: Point) => Point } {
  const minX = Math.floor(Math.min(...corners.map((p) => p[0])));
  const minY = Math.floor(Math.min(...corners.map((p) => p[1])));
  const shifted = corners.map(([x, y]) => [x - minX, y - minY]) as unknown as Quad;
  const W = Math.ceil(Math.max(...shifted.map((p) => p[0])));
  const H = Math.ceil(Math.max(...shifted.map((p) => p[1])));
  const src: Quad = [
    [0, 0],
    [width, 0],
    [width, height],
    [0, height],
  ];
  const inv = homography(shifted, src); // output pixel -> source pixel
  const fwd = homography(src, shifted);
  const apply = (m: number[], [x, y]: Point): Point => {
    const d = m[6] * x + m[7] * y + 1;
    return [(m[0] * x + m[1] * y + m[2]) / d, (m[3] * x + m[4] * y + m[5]) / d];
  };
  const out = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const [sx, sy] = apply(inv, [x + 0.5, y + 0.5]);
      const fx = sx - 0.5;
      const fy = sy - 0.5;
      const o = (y * W + x) * 3;
      if (fx < -0.5 || fy < -0.5 || fx > width - 0.5 || fy > height - 0.5) {
        out[o] = fill[0];
        out[o + 1] = fill[1];
        out[o + 2] = fill[2];
        continue;
      }
      const x0 = Math.max(0, Math.min(width - 1, Math.floor(fx)));
      const y0 = Math.max(0, Math.min(height - 1, Math.floor(fy)));
      const x1 = Math.min(width - 1, x0 + 1);
      const y1 = Math.min(height - 1, y0 + 1);
      const ax = Math.max(0, Math.min(1, fx - x0));
      const ay = Math.max(0, Math.min(1, fy - y0));
      for (let c = 0; c < 3; c++) {
        const top = img[(y0 * width + x0) * 3 + c] * (1 - ax) + img[(y0 * width + x1) * 3 + c] * ax;
        const bottom = img[(y1 * width + x0) * 3 + c] * (1 - ax) + img[(y1 * width + x1) * 3 + c] * ax;
        out[o + c] = Math.round(top * (1 - ay) + bottom * ay);
      }
    }
  return { data: out, width: W, height: H, map: (p) => apply(fwd, p) };
}

/** Corners of a `width` x `height` image turned by `degrees` about its centre, with a keystone of `keystone`. */
function tilt(width: number, height: number, degrees: number, keystone: number): Quad {
  const a = (degrees * Math.PI) / 180;
  const cx = width / 2;
  const cy = height / 2;
  const k = keystone * width; // the top edge narrower than the bottom by 2k
  const corners: Quad = [
    [k, 0],
    [width - k, 0],
    [width, height],
    [0, height],
  ];
  return corners.map(([x, y]) => [
    cx + (x - cx) * Math.cos(a) - (y - cy) * Math.sin(a),
    cy + (x - cx) * Math.sin(a) + (y - cy) * Math.cos(a),
  ]) as unknown as Quad;
}

/** Adds Gaussian noise of `sigma` grey levels. */
function addNoise(img: Uint8Array, sigma: number, rng: Rng): void {
  if (sigma <= 0) return;
  for (let i = 0; i < img.length; i++) img[i] = clamp(img[i] + sigma * rng.normal());
}

/** How an image is degraded: blur, noise, JPEG. */
interface Degradation {
  readonly blur: number;
  readonly noise: number;
  /** JPEG quality, or undefined for PNG. */
  readonly jpeg: number | undefined;
}

async function encode(img: Uint8Array, width: number, height: number, d: Degradation, rng: Rng): Promise<Buffer> {
  addNoise(img, d.noise, rng);
  let s = sharp(img, { raw: { width, height, channels: 3 } });
  if (d.blur >= 0.3) s = s.blur(d.blur);
  return d.jpeg === undefined ? s.png({ compressionLevel: 9 }).toBuffer() : s.jpeg({ quality: d.jpeg }).toBuffer();
}

/** A rendered image and what it shows. */
export interface LineSample {
  readonly image: Buffer;
  readonly format: 'png' | 'jpg';
  readonly text: string;
  readonly font: string;
  readonly size: number;
}

/**
 * One text line, cut out with a margin as a detector would cut it: a face of the split, 14 to 44 px, letter
 * spacing, colours, a tilt of up to 3 degrees and a slight keystone, blur, noise and JPEG at random.
 */
export async function renderLine(text: string, split: Split, rng: Rng): Promise<LineSample> {
  const face = rng.pick(FACES[split]);
  const size = rng.int(14, 44);
  const spacing = rng.chance(0.3) ? rng.range(-0.03, 0.12) * size : 0;
  const mask = await drawText(text, face, size, spacing);
  const { paper, ink } = colours(rng);
  const padX = rng.int(2, Math.max(3, Math.round(size * 0.6)));
  const padY = rng.int(1, Math.max(2, Math.round(size * 0.3)));
  const width = mask.width + 2 * padX;
  const height = mask.height + 2 * padY;
  const img = canvas(width, height, paper, rng, rng.chance(0.3));
  paint(img, width, height, mask, padX, padY, ink);
  const degrees = rng.chance(0.5) ? rng.range(-3, 3) : 0;
  const keystone = rng.chance(0.2) ? rng.range(-0.01, 0.01) : 0;
  const warped =
    degrees === 0 && keystone === 0
      ? undefined
      : warp(img, width, height, tilt(width, height, degrees, keystone), paper);
  const d: Degradation = {
    blur: rng.chance(0.4) ? rng.range(0.3, Math.min(1.4, size / 20)) : 0,
    noise: rng.chance(0.4) ? rng.range(2, 12) : 0,
    jpeg: rng.chance(0.4) ? rng.int(35, 90) : undefined,
  };
  const image = warped
    ? await encode(warped.data, warped.width, warped.height, d, rng)
    : await encode(img, width, height, d, rng);
  return {
    image,
    format: d.jpeg === undefined ? 'png' : 'jpg',
    text,
    font: `${face.family} ${face.style}`.trim(),
    size,
  };
}

/** A line of a page: its text and where it was drawn (a quad, clockwise from the top left, in page pixels). */
export interface PageLine {
  readonly text: string;
  readonly box: Quad;
}

export interface PageSample {
  readonly image: Buffer;
  readonly format: 'png' | 'jpg';
  readonly width: number;
  readonly height: number;
  readonly layout: string;
  /** In reading order: column by column, top to bottom. */
  readonly lines: PageLine[];
}

/** Splits `words` into lines no wider than `maxWidth` as drawn (greedy, measuring each candidate line). */
async function wrap(
  words: string[],
  face: Face,
  size: number,
  maxWidth: number,
): Promise<{ text: string; mask: Mask }[]> {
  const lines: { text: string; mask: Mask }[] = [];
  let current: string[] = [];
  let currentMask: Mask | undefined;
  for (const word of words) {
    const candidate = [...current, word].join(' ');
    const mask = await drawText(candidate, face, size);
    if (mask.width <= maxWidth || current.length === 0) {
      current.push(word);
      currentMask = mask;
    } else {
      lines.push({ text: current.join(' '), mask: currentMask! });
      current = [word];
      currentMask = await drawText(word, face, size);
    }
  }
  if (current.length > 0) lines.push({ text: current.join(' '), mask: currentMask! });
  return lines;
}

/**
 * A page laid out from `paragraphs`: a heading, then paragraphs in one or two columns, body text of one face and
 * size per page (14 to 24 px), sometimes a second size; then a tilt of up to 2 degrees, sometimes a keystone,
 * uneven light, blur, noise and JPEG (a photographed look). Each line's truth box is its ink box, carried through
 * the same warp.
 */
export async function renderPage(
  heading: string,
  paragraphs: string[][],
  split: Split,
  rng: Rng,
  /** The page lies upside down (a scan fed the wrong way round). */
  upsideDown = false,
): Promise<PageSample> {
  const face = rng.pick(FACES[split]);
  const headFace = rng.pick(FACES[split]);
  const size = rng.int(14, 24);
  const headSize = Math.round(size * rng.range(1.4, 2));
  const width = rng.int(900, 1400);
  const columns = rng.chance(0.35) ? 2 : 1;
  const margin = rng.int(30, 80);
  const gutter = rng.int(30, 60);
  const colWidth = Math.floor((width - 2 * margin - (columns - 1) * gutter) / columns);
  const leading = rng.range(1.25, 1.7);
  const { paper, ink } = colours(rng);

  // lay out: heading across the page, then the paragraphs filling columns of equal height
  const placed: { text: string; mask: Mask; x: number; y: number }[] = [];
  let y = margin;
  for (const line of await wrap(heading.split(' '), headFace, headSize, width - 2 * margin)) {
    placed.push({ ...line, x: margin, y });
    y += Math.round(headSize * leading);
  }
  y += Math.round(size * 0.8);
  const body: { text: string; mask: Mask; gapBefore: number }[] = [];
  for (const [k, words] of paragraphs.entries()) {
    const smaller = rng.chance(0.15);
    const lines = await wrap(words, face, smaller ? Math.max(12, size - 4) : size, colWidth);
    lines.forEach((l, i) => body.push({ ...l, gapBefore: i === 0 && k > 0 ? Math.round(size * 0.7) : 0 }));
  }
  const lineStep = Math.round(size * leading);
  const perColumn = Math.ceil(body.length / columns);
  let bottom = y;
  for (let c = 0; c < columns; c++) {
    let cy = y;
    for (const line of body.slice(c * perColumn, (c + 1) * perColumn)) {
      cy += cy === y ? 0 : line.gapBefore;
      placed.push({ text: line.text, mask: line.mask, x: margin + c * (colWidth + gutter), y: cy });
      cy += lineStep;
    }
    bottom = Math.max(bottom, cy);
  }
  const height = bottom + margin;
  const img = canvas(width, height, paper, rng, rng.chance(0.5));
  const truth: { text: string; box: Quad }[] = [];
  for (const p of placed) {
    paint(img, width, height, p.mask, p.x, p.y, ink);
    const ink0 = inkBox(p.mask);
    if (!ink0) continue;
    truth.push({
      text: p.text,
      box: [
        [p.x + ink0.x0, p.y + ink0.y0],
        [p.x + ink0.x1, p.y + ink0.y0],
        [p.x + ink0.x1, p.y + ink0.y1],
        [p.x + ink0.x0, p.y + ink0.y1],
      ],
    });
  }
  const photographed = rng.chance(0.5);
  const degrees = (rng.chance(0.6) ? rng.range(-2, 2) : 0) + (upsideDown ? 180 : 0);
  const keystone = photographed && rng.chance(0.5) ? rng.range(-0.015, 0.015) : 0;
  const pad = rng.int(10, 40);
  const framed = canvas(width + 2 * pad, height + 2 * pad, paper, rng, false);
  for (let yy = 0; yy < height; yy++)
    framed.set(img.subarray(yy * width * 3, (yy + 1) * width * 3), ((yy + pad) * (width + 2 * pad) + pad) * 3);
  const shift = (q: Quad): Quad => q.map(([x, yy]) => [x + pad, yy + pad]) as unknown as Quad;
  let out = { data: framed, width: width + 2 * pad, height: height + 2 * pad, map: (p: Point) => p };
  if (degrees !== 0 || keystone !== 0)
    out = warp(framed, out.width, out.height, tilt(out.width, out.height, degrees, keystone), paper);
  const d: Degradation = photographed
    ? { blur: rng.range(0.3, 1.0), noise: rng.range(2, 8), jpeg: rng.int(55, 90) }
    : { blur: 0, noise: 0, jpeg: undefined };
  const image = await encode(out.data, out.width, out.height, d, rng);
  const round = (p: Point): Point => [Math.round(p[0] * 10) / 10, Math.round(p[1] * 10) / 10];
  return {
    image,
    format: d.jpeg === undefined ? 'png' : 'jpg',
    width: out.width,
    height: out.height,
    layout:
      `${columns} column${columns > 1 ? 's' : ''}, ${face.family} ${face.style} ${size} px${photographed ? ', photographed' : ''}${degrees !== 0 ? `, ${degrees.toFixed(1)} deg` : ''}${Math.abs(degrees) > 90 ? ' (upside down)' : ''}`.replace(
        / +/g,
        ' ',
      ),
    lines: truth.map((l) => ({ text: l.text, box: shift(l.box).map((p) => round(out.map(p))) as unknown as Quad })),
  };
}

/** The words of a corpus file, cleaned of layout: runs of whitespace become one space. */
export function corpusWords(text: string): string[] {
  return text
    .replace(/[^\x20-\x7e\s]/g, '')
    .split(/\s+/)
    .filter((w) => /[A-Za-z0-9]/.test(w));
}
