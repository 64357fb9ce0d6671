import sharp from 'sharp';
import { Errors } from '../errors.js';
import { imageHeaderSize } from './image-header.js';
import { decodePlainPng } from './png.js';

/** How a decoded image becomes the model's fixed input size. */
export type ResizeMode =
  /** Scale both axes to exactly width x height, ignoring the aspect ratio. */
  | 'stretch'
  /** Scale the shorter side to `size / cropRatio`, then cut the centre (torchvision's Resize + CenterCrop). */
  | 'center-crop'
  /** Scale to fit inside, keeping the aspect ratio; the rest is `padValue`, image centred. */
  | 'letterbox'
  /**
   * Scale to the full height keeping the aspect ratio, squeeze the width down to at most `width`, image on the
   * left, `padValue` on the right (PaddleOCR's text-line classifier and recognizer).
   */
  | 'fit-height';

/** Everything needed to turn an image into one input tensor (one batch row). */
export interface ImageSpec {
  readonly layout: 'NCHW' | 'NHWC';
  readonly height: number;
  readonly width: number;
  /** Channel order the model was trained with; GRAY gives one channel. */
  readonly channels: 'RGB' | 'BGR' | 'GRAY';
  readonly resize: ResizeMode;
  /** For `center-crop`: crop size / resized shorter side (0.875 = 224 of 256). */
  readonly cropRatio: number;
  readonly interpolation: 'nearest' | 'linear' | 'cubic' | 'lanczos3';
  /** value = (pixel * scale - mean[c]) / std[c], with pixel in 0..255 and c in the model's channel order. */
  readonly scale: number;
  readonly mean: readonly number[];
  readonly std: readonly number[];
  /** Tensor value (after normalization) of padded areas. */
  readonly padValue: number;
}

/** One preprocessed image: the tensor row and the size of the image it came from (after EXIF rotation). */
export interface ImageTensor {
  readonly data: Float32Array;
  /** Dimensions without the batch axis, e.g. [3, 48, 192]. */
  readonly dims: readonly number[];
  readonly original: { readonly width: number; readonly height: number };
}

/** Formats accepted on the wire, checked on the bytes (not on the declared content type). */
export const acceptedImageFormats = ['jpeg', 'png', 'webp'] as const;

/** Whether a sniffed format (see {@link sniffImageFormat}) is one the server decodes. */
export function isAcceptedImageFormat(format: string | undefined): boolean {
  return (acceptedImageFormats as readonly (string | undefined)[]).includes(format);
}

/**
 * Names the format of `bytes` from its magic number, or returns undefined. Done before handing bytes to libvips so
 * that formats we refuse (SVG above all, which libvips would parse with librsvg) never reach a decoder.
 */
export function sniffImageFormat(bytes: Uint8Array): string | undefined {
  const ascii = (from: number, to: number) => String.fromCharCode(...bytes.subarray(from, to));
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.length >= 8 && ascii(1, 4) === 'PNG' && bytes[0] === 0x89) return 'png';
  if (bytes.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  if (bytes.length >= 6 && ascii(0, 4) === 'GIF8') return 'gif';
  if (bytes.length >= 4 && (ascii(0, 4) === 'II*\0' || ascii(0, 4) === 'MM\0*')) return 'tiff';
  if (bytes.length >= 2 && ascii(0, 2) === 'BM') return 'bmp';
  if (bytes.length >= 12 && ascii(4, 8) === 'ftyp') return 'heif/avif';
  const head = ascii(0, Math.min(bytes.length, 256)).trimStart().toLowerCase();
  if (head.startsWith('<svg') || head.startsWith('<?xml')) return 'svg';
  return undefined;
}

/** Sets how many threads libvips uses per image and turns off its operation cache (every request is new). */
export function configureImageDecoder(threads: number): void {
  sharp.cache(false);
  if (threads > 0) sharp.concurrency(threads);
}

/**
 * Decodes an image (EXIF orientation honoured), resizes it by `spec` and writes one normalized tensor row.
 * Throws client errors: 415 for formats outside {@link acceptedImageFormats}, 422 for images over `maxPixels`,
 * 400 for bytes that do not decode. `out`, when given, receives the row (every value is written).
 */
export async function imageToTensor(
  source: ImageSource,
  spec: ImageSpec,
  maxPixels: number,
  out?: Float32Array,
): Promise<ImageTensor> {
  return imageToTensorSized(source, maxPixels, () => ({ spec, out }));
}

/**
 * Decoded pixels, upright (EXIF applied), sRGB, 3 channels interleaved, no alpha: what the OCR pipeline cuts text
 * lines from and hands to its stage models, so a crop is never re-encoded.
 */
export interface RawImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/** An encoded image from a client, or pixels already decoded by the server. */
export type ImageSource = Uint8Array | RawImage;

/** A source ready for libvips: its upright size and a factory for fresh pipelines (upright, sRGB, no alpha). */
interface Opened {
  readonly width: number;
  readonly height: number;
  pipeline(): ReturnType<typeof sharp>;
  /** Maps libvips failures on this image to client errors (400/422); anything else is ours and stays a 500. */
  decoding<T>(p: Promise<T>): Promise<T>;
}

async function open(source: ImageSource, maxPixels: number): Promise<Opened> {
  if (!(source instanceof Uint8Array)) {
    const raw = { width: source.width, height: source.height, channels: 3 } as const;
    return {
      width: source.width,
      height: source.height,
      pipeline: () => sharp(source.data, { raw }),
      decoding: (p) => p,
    };
  }
  const bytes = source;
  const format = sniffImageFormat(bytes);
  if (!isAcceptedImageFormat(format)) {
    throw new Errors.UNSUPPORTED_MEDIA_TYPE(
      `${format ? `${format} images are not accepted` : 'the body is not an image in an accepted format'} (send ${acceptedImageFormats.join(', ')})`,
    );
  }
  const input = () => sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error', sequentialRead: true });
  const decoding = <T>(p: Promise<T>): Promise<T> =>
    p.catch((err: unknown) => {
      const message = err instanceof Error ? err.message : String(err);
      if (/pixel limit/i.test(message)) throw new Errors.IMAGE_DIMENSIONS(`over the limit of ${maxPixels} pixels`);
      throw new Errors.INVALID_IMAGE(message.split('\n')[0]);
    });
  const meta = await decoding(input().metadata());
  if (!meta.width || !meta.height) throw new Errors.INVALID_IMAGE('no dimensions in the header');
  if (meta.width * meta.height > maxPixels) {
    throw new Errors.IMAGE_DIMENSIONS(`${meta.width}x${meta.height} is over the limit of ${maxPixels} pixels`);
  }
  // the memory budget priced the image from the size its header gives (image-header.ts): an image whose frame is
  // another size (a crafted file with a decoy header) is refused, so the price always holds
  const priced = imageHeaderSize(bytes);
  if (priced && (priced.width !== meta.width || priced.height !== meta.height)) {
    throw new Errors.INVALID_IMAGE(
      `the header gives ${priced.width}x${priced.height} but the image is ${meta.width}x${meta.height}`,
    );
  }
  const swap = (meta.orientation ?? 1) >= 5; // EXIF orientations 5-8 turn the image by 90 degrees
  return {
    width: swap ? meta.height : meta.width,
    height: swap ? meta.width : meta.height,
    pipeline: () => input().rotate().removeAlpha(),
    decoding,
  };
}

/**
 * Decodes an image to upright sRGB pixels, with the same checks and client errors as {@link imageToTensor}. With
 * `maxSide`, a larger image is shrunk by libvips while it decodes (its full-size pixels are never held) so that
 * neither side exceeds it; `scale` is then the factor from these pixels back to the image as sent.
 */
export async function decodeImage(
  bytes: Uint8Array,
  maxPixels: number,
  maxSide = Infinity,
): Promise<RawImage & { readonly scale: number }> {
  const plain = decodePlainPng(bytes, maxPixels);
  if (plain && Math.max(plain.width, plain.height) <= maxSide) return { ...plain, scale: 1 };
  const img = await open(bytes, maxPixels);
  let pipe = img.pipeline().toColourspace('srgb');
  const shrink = Math.max(img.width, img.height) > maxSide;
  if (shrink) pipe = pipe.resize(maxSide, maxSide, { fit: 'inside', kernel: 'lanczos3' });
  const { data, info } = await img.decoding(pipe.raw().toBuffer({ resolveWithObject: true }));
  return { data, width: info.width, height: info.height, scale: shrink ? img.width / info.width : 1 };
}

/**
 * As {@link imageToTensor}, for models with a dynamic input axis: `choose` gets the decoded image's upright size
 * (after EXIF rotation, before any resize) and returns the spec to use, and optionally the row to write into. Saves
 * decoding the header twice (the text recognizer picks its width bucket from the aspect ratio).
 */
export async function imageToTensorSized(
  source: ImageSource,
  maxPixels: number,
  choose: (width: number, height: number) => { spec: ImageSpec; out?: Float32Array },
): Promise<ImageTensor> {
  if (source instanceof Uint8Array) source = decodePlainPng(source, maxPixels) ?? source;
  const img = await open(source, maxPixels);
  const { width: w, height: h } = img;
  const { spec, out } = choose(w, h);
  const place = placement(w, h, spec);
  // libvips has a large fixed cost per resize (about 1 ms even for a text line), so it only shrinks images that
  // are far bigger than their target (shrink-on-load and antialiasing matter there), or when the manifest asks for
  // a kernel we do not sample ourselves; the rest is sampled in JS in the same pass that normalizes.
  const bySharp =
    spec.interpolation === 'cubic' ||
    spec.interpolation === 'lanczos3' ||
    (w > 2 * place.resizeW && h > 2 * place.resizeH);
  let px: Uint8Array;
  let info: { width: number; height: number; channels: number };
  if (!(source instanceof Uint8Array) && !bySharp && spec.channels !== 'GRAY') {
    // decoded pixels that need no libvips step are sampled straight from memory (no sharp pipeline is built)
    ({ data: px } = source);
    info = { width: w, height: h, channels: 3 };
  } else {
    let pipe = img.pipeline();
    pipe = spec.channels === 'GRAY' ? pipe.grayscale() : pipe.toColourspace('srgb');
    if (bySharp) pipe = pipe.resize(place.resizeW, place.resizeH, { fit: 'fill', kernel: spec.interpolation });
    ({ data: px, info } = await img.decoding(pipe.raw().toBuffer({ resolveWithObject: true })));
  }
  return {
    data: toTensor({ px, w: info.width, h: info.height, channels: info.channels }, place, spec, out),
    dims: dims(spec),
    original: { width: w, height: h },
  };
}

/** Tensor dimensions of one row (no batch axis). */
export function dims(spec: ImageSpec): number[] {
  const c = spec.channels === 'GRAY' ? 1 : 3;
  return spec.layout === 'NCHW' ? [c, spec.height, spec.width] : [spec.height, spec.width, c];
}

interface Placement {
  resizeW: number;
  resizeH: number;
  crop?: { left: number; top: number; width: number; height: number };
  /** Where the resized (and cropped) image sits in the tensor. */
  left: number;
  top: number;
}

/** Works out the resize, crop and offset of `spec.resize` for a w x h image. */
export function placement(w: number, h: number, spec: ImageSpec): Placement {
  const { width: W, height: H } = spec;
  switch (spec.resize) {
    case 'stretch':
      return { resizeW: W, resizeH: H, left: 0, top: 0 };
    case 'fit-height':
      return { resizeW: Math.max(1, Math.min(W, Math.ceil((H * w) / h))), resizeH: H, left: 0, top: 0 };
    case 'letterbox': {
      const s = Math.min(W / w, H / h);
      const rw = Math.max(1, Math.min(W, Math.round(w * s)));
      const rh = Math.max(1, Math.min(H, Math.round(h * s)));
      return { resizeW: rw, resizeH: rh, left: Math.floor((W - rw) / 2), top: Math.floor((H - rh) / 2) };
    }
    case 'center-crop': {
      const s = Math.min(W, H) / spec.cropRatio / Math.min(w, h);
      const rw = Math.max(W, Math.round(w * s));
      const rh = Math.max(H, Math.round(h * s));
      const crop = { left: Math.floor((rw - W) / 2), top: Math.floor((rh - H) / 2), width: W, height: H };
      return { resizeW: rw, resizeH: rh, crop, left: 0, top: 0 };
    }
  }
}

/** Decoded interleaved 8-bit pixels. */
interface Pixels {
  px: Uint8Array;
  w: number;
  h: number;
  channels: number;
}

/**
 * Source coordinates for each output position along one axis: OpenCV's INTER_LINEAR mapping (pixel centres,
 * `src = (dst + 0.5) * scale - 0.5`, clamped at the edges, no antialiasing), which is what PaddleOCR and most
 * cv2-based training pipelines used. `nearest` keeps only the lower index.
 */
function axis(outLen: number, offset: number, resized: number, src: number, nearest: boolean) {
  const i0 = new Int32Array(outLen);
  const i1 = new Int32Array(outLen);
  const f = new Float32Array(outLen);
  const scale = src / resized;
  for (let o = 0; o < outLen; o++) {
    if (nearest) {
      i0[o] = i1[o] = Math.min(src - 1, Math.floor((o + offset) * scale));
      continue;
    }
    const s = Math.min(src - 1, Math.max(0, (o + offset + 0.5) * scale - 0.5));
    const lo = Math.floor(s);
    i0[o] = lo;
    i1[o] = Math.min(src - 1, lo + 1);
    f[o] = s - lo;
  }
  return { i0, i1, f };
}

/**
 * Resamples decoded pixels to the placement's resized size (taking its crop), normalizes, and writes them into a
 * padded tensor row in the model's layout and channel order, in one pass: each output pixel's four source offsets
 * and weights are found once for all its channels.
 */
function toTensor(img: Pixels, place: Placement, spec: ImageSpec, into?: Float32Array): Float32Array {
  const C = spec.channels === 'GRAY' ? 1 : 3;
  const { width: W, height: H } = spec;
  if (into && into.length !== C * H * W)
    throw new RangeError(`output row holds ${into.length} values, not ${C * H * W}`);
  const crop = place.crop ?? { left: 0, top: 0, width: place.resizeW, height: place.resizeH };
  const out = into ?? new Float32Array(C * H * W);
  // padding only where the image does not reach (a new row is zeros already)
  const covered = place.left === 0 && place.top === 0 && crop.width === W && crop.height === H;
  if (!covered && (into !== undefined || spec.padValue !== 0)) out.fill(spec.padValue);
  const nearest = spec.interpolation === 'nearest';
  const xs = axis(crop.width, crop.left, place.resizeW, img.w, nearest);
  const ys = axis(crop.height, crop.top, place.resizeH, img.h, nearest);
  // per model channel: its source channel (BGR reads the decoded RGB backwards), normalization, output offset
  const src = C === 1 ? [0, 0, 0] : spec.channels === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  const a = new Float32Array(3);
  const b = new Float32Array(3);
  for (let c = 0; c < C; c++) {
    a[c] = spec.scale / spec.std[c % spec.std.length];
    b[c] = -spec.mean[c % spec.mean.length] / spec.std[c % spec.std.length];
  }
  // NCHW: a plane per channel, pixels one apart; NHWC: channels interleaved, pixels C apart
  const nchw = spec.layout === 'NCHW';
  const [d1, d2] = nchw ? [H * W, 2 * H * W] : [1, 2];
  const step = nchw ? 1 : C;
  const { px, w, channels: n } = img;
  const [k0, k1, k2] = src;
  const [a0, a1, a2] = a;
  const [b0, b1, b2] = b;
  // per column: the two source offsets and the weight, computed once for all rows
  const cw = crop.width;
  const x0 = new Int32Array(cw);
  const x1 = new Int32Array(cw);
  for (let x = 0; x < cw; x++) {
    x0[x] = xs.i0[x] * n;
    x1[x] = xs.i1[x] * n;
  }
  const fxs = xs.f;
  for (let y = 0; y < crop.height; y++) {
    const r0 = ys.i0[y] * w * n;
    const r1 = ys.i1[y] * w * n;
    const fy = ys.f[y];
    const ty = y + place.top;
    let o = (ty * W + place.left) * step;
    for (let x = 0; x < cw; x++, o += step) {
      const fx = fxs[x];
      const p00 = r0 + x0[x];
      const p01 = r0 + x1[x];
      const p10 = r1 + x0[x];
      const p11 = r1 + x1[x];
      let q = px[p00 + k0];
      let r = px[p10 + k0];
      let top = q + (px[p01 + k0] - q) * fx;
      let bottom = r + (px[p11 + k0] - r) * fx;
      out[o] = (top + (bottom - top) * fy) * a0 + b0;
      if (C === 1) continue;
      q = px[p00 + k1];
      r = px[p10 + k1];
      top = q + (px[p01 + k1] - q) * fx;
      bottom = r + (px[p11 + k1] - r) * fx;
      out[o + d1] = (top + (bottom - top) * fy) * a1 + b1;
      q = px[p00 + k2];
      r = px[p10 + k2];
      top = q + (px[p01 + k2] - q) * fx;
      bottom = r + (px[p11 + k2] - r) * fx;
      out[o + d2] = (top + (bottom - top) * fy) * a2 + b2;
    }
  }
  return out;
}
