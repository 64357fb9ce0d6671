import * as zlib from 'node:zlib';
import type { RawImage } from './image.js';

// libvips costs about 1 ms per image in fixed overhead (a pipeline, its threads), which is most of the work for a
// text line or a small photo. A plain PNG (8-bit RGB, or RGBA with every pixel opaque; not interlaced, no palette,
// colour profile, gamma or EXIF) decodes to the very same pixels with zlib and the five PNG filters, in a tenth of that. Anything else, and
// anything this reader finds odd, goes to libvips, which also gives the error message.

/** Pixels above which libvips decodes anyway (it streams large images; this reader holds the whole file inflated). */
export const PLAIN_PNG_MAX_PIXELS = 1 << 20;

/** Ancillary chunks that change what the pixels mean, or that libvips would act on: libvips reads those files. */
const MEANINGFUL = new Set(['iCCP', 'gAMA', 'cHRM', 'sRGB', 'sBIT', 'eXIf', 'tRNS', 'PLTE']);

/**
 * Decodes a plain PNG to RGB pixels (an opaque alpha dropped), or returns undefined when the file is
 * anything else: another format or PNG variant, over {@link PLAIN_PNG_MAX_PIXELS} or `maxPixels`, or damaged (a bad
 * CRC, short data). Never throws.
 */
export function decodePlainPng(b: Uint8Array, maxPixels: number): RawImage | undefined {
  if (typeof zlib.crc32 !== 'function') return undefined; // Node before 20.15
  try {
    return decode(b, Math.min(maxPixels, PLAIN_PNG_MAX_PIXELS));
  } catch {
    return undefined;
  }
}

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function decode(b: Uint8Array, maxPixels: number): RawImage | undefined {
  if (b.length < 8 + 25 || SIGNATURE.some((v, i) => b[i] !== v)) return undefined;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Uint8Array[] = [];
  let ended = false;
  let previous = '';
  for (let at = 8; at + 12 <= b.length && !ended;) {
    const length = view.getUint32(at);
    const end = at + 12 + length;
    if (length > 0x7fffffff || end > b.length) return undefined;
    const type = String.fromCharCode(b[at + 4], b[at + 5], b[at + 6], b[at + 7]);
    if (zlib.crc32(b.subarray(at + 4, at + 8 + length)) !== view.getUint32(at + 8 + length)) return undefined;
    const data = b.subarray(at + 8, at + 8 + length);
    if (at === 8) {
      // IHDR: width, height, bit depth 8, colour type 2 (RGB) or 6 (RGBA), compression 0, filter 0, no interlace
      if (type !== 'IHDR' || length !== 13) return undefined;
      width = view.getUint32(at + 8);
      height = view.getUint32(at + 12);
      const [depth, colour, compression, filter, interlace] = data.subarray(8, 13);
      if (depth !== 8 || (colour !== 2 && colour !== 6) || compression !== 0 || filter !== 0 || interlace !== 0)
        return undefined;
      if (width === 0 || height === 0 || width * height > maxPixels) return undefined;
      channels = colour === 2 ? 3 : 4;
    } else if (type === 'IDAT') {
      if (idat.length > 0 && previous !== 'IDAT') return undefined; // IDAT chunks must be consecutive (libpng refuses)
      idat.push(data);
    } else if (type === 'IEND') ended = true;
    else if (MEANINGFUL.has(type) || (type.charCodeAt(0) & 0x20) === 0) return undefined; // or unknown critical
    previous = type;
    at = end;
  }
  if (!ended || idat.length === 0) return undefined;
  const stride = width * channels;
  const expected = height * (stride + 1);
  const raw = zlib.inflateSync(Buffer.concat(idat), { maxOutputLength: expected });
  if (raw.length !== expected) return undefined;
  return { data: unfilter(raw, width, height, channels), width, height };
}

/** Reverses the per-row PNG filters and keeps the RGB of each pixel. */
function unfilter(raw: Uint8Array, width: number, height: number, bpp: number): Uint8Array {
  const stride = width * bpp;
  let prev = new Uint8Array(stride);
  let cur = new Uint8Array(stride);
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const row = y * (stride + 1);
    const filter = raw[row];
    const src = raw.subarray(row + 1, row + 1 + stride);
    switch (filter) {
      case 0:
        cur.set(src);
        break;
      case 1:
        for (let i = 0; i < stride; i++) cur[i] = src[i] + (i >= bpp ? cur[i - bpp] : 0);
        break;
      case 2:
        for (let i = 0; i < stride; i++) cur[i] = src[i] + prev[i];
        break;
      case 3:
        for (let i = 0; i < stride; i++) cur[i] = src[i] + (((i >= bpp ? cur[i - bpp] : 0) + prev[i]) >> 1);
        break;
      case 4:
        for (let i = 0; i < stride; i++) {
          const a = i >= bpp ? cur[i - bpp] : 0;
          const up = prev[i];
          const c = i >= bpp ? prev[i - bpp] : 0;
          const p = a + up - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - up);
          const pc = Math.abs(p - c);
          cur[i] = src[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? up : c);
        }
        break;
      default:
        throw new RangeError(`PNG filter ${filter}`);
    }
    const o = y * width * 3;
    if (bpp === 3) out.set(cur, o);
    else
      for (let x = 0; x < width; x++) {
        // a transparent pixel: libvips premultiplies alpha before it resizes, so such a file is its to decode
        if (cur[4 * x + 3] !== 255) throw new RangeError('not opaque');
        out[o + 3 * x] = cur[4 * x];
        out[o + 3 * x + 1] = cur[4 * x + 1];
        out[o + 3 * x + 2] = cur[4 * x + 2];
      }
    [prev, cur] = [cur, prev];
  }
  return out;
}
