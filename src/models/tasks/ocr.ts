import { ManifestError, type OcrManifest } from '../manifest.js';
import { decodeImage, imageToTensorSized, type ImageSpec, type RawImage } from '../../preprocess/image.js';
import { splitRows, stackRows } from '../tensor.js';
import { pick } from './image-classification.js';
import { cropQuad, rotate180 } from './ocr/crop.js';
import { dbPostprocess, type Quad, sortBoxes } from './ocr/db-postprocess.js';
import { readingOrder } from './ocr/reading-order.js';
import type { ClassScore } from './image-classification.js';
import type { TextLine } from './text-recognition.js';
import { imageOf, type StepOptions, type TaskContext, type TaskPipeline } from './task.js';

/** A page ready for the detector: its tensor row and the decoded pixels the lines are cut from. */
interface PageRow {
  readonly data: Float32Array;
  /** Tensor width and height (multiples of `/input/sizeMultiple`). */
  readonly w: number;
  readonly h: number;
  readonly image: RawImage;
  /** From `image` pixels to the page as sent (above 1 when a huge page was shrunk as it was decoded). */
  readonly scale: number;
}

/** The longest side of a page the OCR pipeline holds decoded (27 MiB of RGB at most). */
export const MAX_PAGE_SIDE = 3072;

/** One recognized line: text, recognizer score, and its box in page pixels (reading order). */
export interface OcrLine extends TextLine {
  box: Quad;
}

/**
 * `ocr`: a page in, its text lines out (PaddleOCR's TextSystem). The detector (this model) runs behind this model's
 * batcher, pages of one tensor size stacking together; DB post-processing finds the line boxes; each line is cut
 * out along its box, turned upright when the orientation model says it is upside down, and read by the recognizer.
 * The orientation and recognition stages are other models of the repository called through their own batchers, so
 * the lines of concurrent pages share their batches (and their queue limits and metrics).
 */
export function ocr(
  ctx: TaskContext<OcrManifest>,
): TaskPipeline<PageRow, Float32Array, { lines: OcrLine[] }, OcrLine[]> {
  const { manifest: m, session, where, stages } = ctx;
  const input = pick(session.inputs, m.input.name, 'input', where);
  const output = pick(session.outputs, m.output.name, 'output', where);
  if (input.type !== 'float32' || input.shape.length !== 4)
    throw new ManifestError(`${where}: input '${input.name}' must be float32 [batch, 3, height, width]`);
  for (const [field, name] of [
    ['/stages/recognizer', m.stages.recognizer],
    ['/stages/orientation', m.stages.orientation],
  ] as const) {
    const known = stages.names();
    if (name !== undefined && known !== undefined && !known.includes(name))
      throw new ManifestError(`${where}: ${field} '${name}' is not a model of the repository`);
  }
  const batchDim = input.shape[0];
  const fixedBatch = typeof batchDim === 'number' ? batchDim : undefined;
  const { limitSideLen, limitType, sizeMultiple } = m.input;
  const specOf = (width: number, height: number): ImageSpec => ({
    layout: 'NCHW',
    height,
    width,
    channels: m.input.channels,
    resize: 'stretch',
    cropRatio: 1,
    interpolation: m.input.interpolation,
    scale: m.input.scale,
    mean: m.input.mean,
    std: m.input.std,
    padValue: 0,
  });

  // the page was admitted at this model's door: its lines must not be refused one by one at the stages' doors
  const stepOpts = (opts: StepOptions) => ({
    ...opts,
    timeoutMs: Math.max(0, opts.deadline - performance.now()),
    admitted: true,
  });

  return {
    accepts: ['image'],
    inputSpec: {
      name: input.name,
      datatype: 'FP32',
      shape: [fixedBatch ?? -1, 3, -1, -1],
      layout: 'NCHW',
      channels: m.input.channels,
      limitSideLen,
      limitType,
      sizeMultiple,
      mean: m.input.mean,
      std: m.input.std,
      stages: m.stages,
    },
    graphMaxBatch: fixedBatch,
    async prepare(req) {
      const source = imageOf(req, 'ocr');
      // a page larger than MAX_PAGE_SIDE is shrunk while it decodes: the detector never looks at more than its
      // limit, and the crops keep plenty of resolution, so a huge page costs no more memory than a large photo
      const { scale, ...image } =
        source instanceof Uint8Array
          ? await decodeImage(source, ctx.maxImagePixels, MAX_PAGE_SIDE)
          : { ...source, scale: 1 };
      const [w, h] = detectorSize(image.width, image.height, limitSideLen, limitType, sizeMultiple);
      const t = await imageToTensorSized(image, ctx.maxImagePixels, () => ({ spec: specOf(w, h) }));
      return { row: { data: t.data, w, h, image, scale }, key: `${w}x${h}` };
    },
    async runBatch(rows) {
      const { w, h } = rows[0];
      const feeds = {
        [input.name]: stackRows(
          rows.map((r) => r.data),
          [3, h, w],
          fixedBatch ?? rows.length,
        ),
      };
      const out = await session.run(feeds, [output.name]);
      return splitRows(out[output.name], rows.length).map((r) => r.data);
    },
    async sequence(page, opts, submit) {
      const [detected] = submit([{ row: page, opts, key: `${page.w}x${page.h}` }]);
      const prob = await detected;
      const { image } = page;
      const found = dbPostprocess(prob, page.w, page.h, m.detection, {
        x: image.width / page.w,
        y: image.height / page.h,
        width: image.width,
        height: image.height,
      });
      const order = <T extends { readonly box: Quad }>(b: readonly T[]): T[] =>
        m.stages.readingOrder === 'columns' ? readingOrder(b) : sortBoxes(b);
      let boxes = order(found);
      let crops = boxes.map((b) => cropQuad(image, b.box));
      if (m.stages.orientation !== undefined) {
        const classifier = stages.model(m.stages.orientation);
        const answers = await Promise.all(
          crops.map((c) => classifier.infer({ kind: 'pixels', image: c }, { ...stepOpts(opts), topK: 1 })),
        );
        const rotated = answers.map((a) => {
          const [top] = (a as { predictions: ClassScore[] }).predictions;
          return top.label === m.stages.rotatedLabel && top.score > m.stages.orientationThreshold;
        });
        if (m.stages.orientationPolicy === 'line') crops = crops.map((c, i) => (rotated[i] ? rotate180(c) : c));
        else if (2 * rotated.filter(Boolean).length > rotated.length) {
          // the page is upside down: every line is turned, and read in the order of the page turned upright
          const turned = new Map(boxes.map((b, i) => [b, rotate180(crops[i])]));
          // the box as it lies on the upright page: turned, and its corners from that page's top left
          const upright = ([p0, p1, p2, p3]: Quad): Quad => [p2, p3, p0, p1].map(([x, y]) => [-x, -y]) as Quad;
          boxes = order(boxes.map((b) => ({ box: upright(b.box), original: b }))).map((b) => b.original);
          crops = boxes.map((b) => turned.get(b)!);
        }
      }
      const recognizer = stages.model(m.stages.recognizer);
      const read = await Promise.all(crops.map((c) => recognizer.infer({ kind: 'pixels', image: c }, stepOpts(opts))));
      const lines: OcrLine[] = [];
      read.forEach((answer, i) => {
        const [line] = (answer as { lines: TextLine[] }).lines;
        const box =
          page.scale === 1 ? boxes[i].box : (boxes[i].box.map(([x, y]) => [x * page.scale, y * page.scale]) as Quad);
        if (line && line.score >= m.stages.dropScore) lines.push({ ...line, box });
      });
      return lines;
    },
    finish(lines) {
      return { lines };
    },
    warmupRow() {
      const [w, h] = detectorSize(320, 320, limitSideLen, limitType, sizeMultiple);
      const image = { data: new Uint8Array(w * h * 3), width: w, height: h };
      return { row: { data: new Float32Array(3 * w * h), w, h, image, scale: 1 }, key: `${w}x${h}` };
    },
  };
}

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
