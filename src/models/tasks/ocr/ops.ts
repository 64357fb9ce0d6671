import {
  decodeImage,
  imageToTensorSized,
  type ImageSource,
  type ImageSpec,
  type RawImage,
} from '../../../preprocess/image.js';
import { defineOp } from '../../../workers/ops.js';
import { cropQuad } from './crop.js';
import { dbPostprocess, type DbOptions, type DetectedBox } from './db-postprocess.js';
import { orderLines } from './reading-order.js';

// The OCR pipeline's CPU work, run on the task workers: a page to its detector tensor, a probability map to the
// page's text lines in reading order with their crops.

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
 * A page decoded for OCR: shrunk while it decodes when a side is over {@link MAX_PAGE_SIDE} (the detector never
 * looks at more than its limit, and the crops keep plenty of resolution), then its detector tensor.
 */
export const ocrPage = defineOp(
  'ocrPage',
  async (a: { source: ImageSource; maxPixels: number; detector: DetectorSizing }): Promise<PageRow> => {
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
);

/**
 * The text lines a detector found on a page: DB post-processing of its [h, w] probability map, the boxes in
 * reading order (`columns`: XY-cut; `rows`: PaddleOCR's), and each line cut out of the page along its box.
 */
export const ocrLines = defineOp(
  'ocrLines',
  async (a: {
    prob: Float32Array;
    w: number;
    h: number;
    detection: Partial<DbOptions>;
    image: RawImage;
    readingOrder: 'columns' | 'rows';
  }): Promise<{ boxes: DetectedBox[]; crops: RawImage[] }> => {
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
);
