import { decodeWavSliced, resampleSliced } from '../preprocess/audio.js';
import {
  decodeImage,
  imageToTensorSized,
  type ImageSource,
  type ImageSpec,
  type ImageTensor,
  type RawImage,
} from '../preprocess/image.js';
import { cropQuad } from '../models/tasks/ocr/crop.js';
import { dbPostprocess, type DbOptions, type DetectedBox } from '../models/tasks/ocr/db-postprocess.js';
import { orderLines } from '../models/tasks/ocr/reading-order.js';
import { imageHeaderSize } from '../preprocess/image-header.js';

// The CPU work of the tasks that is worth a thread hop: decoding and sampling images, decoding and resampling
// audio, DB post-processing and line crops. Each op takes plain data and returns plain data (typed arrays travel
// without a copy), so the same call runs on a task worker or, with MUON_TASK_THREADS=0, on the event loop.

/** How an image's tensor size follows from its upright size. */
export type Sizing =
  /** Always the spec's width x height. */
  | { readonly kind: 'fixed'; readonly spec: ImageSpec }
  /**
   * A text line: scaled to `spec.height`, its width rounded up to a multiple of `widthStep`, at least `minWidth`, at
   * most `maxWidth` (see {@link bucketWidth}).
   */
  | {
      readonly kind: 'line';
      readonly spec: Omit<ImageSpec, 'width'>;
      readonly minWidth: number;
      readonly maxWidth: number;
      readonly widthStep: number;
    };

/**
 * The width bucket of a w x h line: its width once scaled to `height` (PaddleOCR: ceil(H * w / h)), rounded up to a
 * multiple of `widthStep`, at least `minWidth`, at most `maxWidth` (wider lines are squeezed).
 */
export function bucketWidth(
  w: number,
  h: number,
  o: { readonly height: number; readonly minWidth: number; readonly maxWidth: number; readonly widthStep: number },
): number {
  const resized = Math.max(1, Math.ceil((o.height * w) / h));
  return Math.min(o.maxWidth, Math.max(o.minWidth, Math.ceil(resized / o.widthStep) * o.widthStep));
}

/** An OCR detector's input size rule (PaddleOCR's `DetResizeForTest`) and normalization. */
export interface DetectorSizing {
  readonly limitSideLen: number;
  readonly limitType: 'max' | 'min';
  readonly sizeMultiple: number;
  readonly spec: Omit<ImageSpec, 'width' | 'height'>;
}

/** A page ready for an OCR detector: its tensor row and the decoded pixels the lines are cut from. */
export interface PageRow {
  readonly data: Float32Array;
  /** Tensor width and height (multiples of the detector's size multiple). */
  readonly w: number;
  readonly h: number;
  readonly image: RawImage;
  /** From `image` pixels to the page as sent (above 1 when a huge page was shrunk as it was decoded). */
  readonly scale: number;
}

/** The longest side of a page the OCR pipeline holds decoded (27 MiB of RGB at most). */
export const MAX_PAGE_SIDE = 3072;

/**
 * The detector's input size for a page (PaddleOCR's `DetResizeForTest`, limit types `max` and `min`): scaled so the
 * longer side is at most (or the shorter side at least) `limit`, each side then rounded to a multiple of `multiple`
 * (at least one multiple).
 */
export function detectorSize(
  width: number,
  height: number,
  limit: number,
  type: 'max' | 'min',
  multiple: number,
): [number, number] {
  const ratio =
    type === 'max'
      ? Math.max(width, height) > limit
        ? limit / Math.max(width, height)
        : 1
      : Math.min(width, height) < limit
        ? limit / Math.min(width, height)
        : 1;
  const side = (v: number) => Math.max(Math.round((v * ratio) / multiple) * multiple, multiple);
  return [side(width), side(height)];
}

/**
 * Pixels up to which an image is prepared on the event loop rather than on a task worker: a text line or a small
 * crop decodes and samples in a few tenths of a millisecond, about what the hop to a worker and back costs on a busy
 * machine (text-orientation at one connection: 230 req/s on the loop, 202 through a worker); larger images go to
 * the workers, where their milliseconds do not hold up HTTP.
 */
export const SMALL_IMAGE_PIXELS = 1 << 16;

/** Whether an image (its header, for encoded bytes) is small enough to prepare on the event loop. */
export function isSmallImage(source: ImageSource): boolean {
  if (!(source instanceof Uint8Array)) return source.width * source.height <= SMALL_IMAGE_PIXELS;
  const size = imageHeaderSize(source);
  return size !== undefined && size.width * size.height <= SMALL_IMAGE_PIXELS;
}

/** The ops a task worker runs, by name. Every argument and result is structured-cloneable. */
export const ops = {
  /** Nothing: a thread's first answer, once its modules are loaded. */
  async ping(_: Record<string, never>): Promise<null> {
    return null;
  },

  /** An image (encoded, or pixels) to one normalized tensor row sized by `sizing`. */
  async imageTensor(a: { source: ImageSource; sizing: Sizing; maxPixels: number }): Promise<ImageTensor> {
    const { sizing } = a;
    return imageToTensorSized(a.source, a.maxPixels, (w, h) => ({
      spec:
        sizing.kind === 'fixed'
          ? sizing.spec
          : { ...sizing.spec, width: bucketWidth(w, h, { ...sizing, height: sizing.spec.height }) },
    }));
  },

  /**
   * A page decoded for OCR: shrunk while it decodes when a side is over {@link MAX_PAGE_SIDE} (the detector never
   * looks at more than its limit, and the crops keep plenty of resolution), then its detector tensor.
   */
  async ocrPage(a: { source: ImageSource; maxPixels: number; detector: DetectorSizing }): Promise<PageRow> {
    const { source, detector: d } = a;
    const decoded =
      source instanceof Uint8Array ? await decodeImage(source, a.maxPixels, MAX_PAGE_SIDE) : { ...source, scale: 1 };
    const { scale, ...image } = decoded;
    // libvips's pixels live outside the JS heap, where the garbage collector does not count them, and they cannot
    // move to another thread: a copy on the heap can, and lets the collector free libvips's soon (on a worker that
    // allocates little, 28 MiB pages would otherwise pile up until its next collection)
    if (Buffer.isBuffer(image.data)) image.data = new Uint8Array(image.data);
    const [w, h] = detectorSize(image.width, image.height, d.limitSideLen, d.limitType, d.sizeMultiple);
    const spec: ImageSpec = { ...d.spec, width: w, height: h };
    const t = await imageToTensorSized(image, a.maxPixels, () => ({ spec }));
    return { data: t.data, w, h, image, scale };
  },

  /**
   * The text lines a detector found on a page: DB post-processing of its [h, w] probability map, the boxes in
   * reading order (`columns`: XY-cut; `rows`: PaddleOCR's), and each line cut out of the page along its box.
   */
  async ocrLines(a: {
    prob: Float32Array;
    w: number;
    h: number;
    detection: Partial<DbOptions>;
    image: RawImage;
    readingOrder: 'columns' | 'rows';
  }): Promise<{ boxes: DetectedBox[]; crops: RawImage[] }> {
    const { image } = a;
    const found = dbPostprocess(a.prob, a.w, a.h, a.detection, {
      x: image.width / a.w,
      y: image.height / a.h,
      width: image.width,
      height: image.height,
    });
    const boxes = orderLines(found, a.readingOrder);
    return { boxes, crops: boxes.map((b) => cropQuad(image, b.box)) };
  },

  /**
   * A WAV file to mono samples at `rate`, laid out as a voice-activity model reads them: `context` zeros, then the
   * samples, then zeros up to a whole number of `window`-sample frames.
   */
  async audioFrames(
    a: { bytes: Uint8Array; maxSeconds: number; rate: number; context: number; window: number },
    signal?: AbortSignal,
  ): Promise<{ padded: Float32Array; frames: number; samples: number; durationMs: number }> {
    const audio = await decodeWavSliced(a.bytes, a.maxSeconds, signal);
    const samples = await resampleSliced(audio.samples, audio.sampleRate, a.rate, signal);
    const frames = Math.ceil(samples.length / a.window);
    const padded = new Float32Array(a.context + frames * a.window); // zeros: the first context, the last frame's tail
    padded.set(samples, a.context);
    return { padded, frames, samples: samples.length, durationMs: audio.durationMs };
  },
};

export type Ops = typeof ops;
export type OpName = keyof Ops;
export type OpArgs<K extends OpName> = Parameters<Ops[K]>[0];
export type OpResult<K extends OpName> = Awaited<ReturnType<Ops[K]>>;
