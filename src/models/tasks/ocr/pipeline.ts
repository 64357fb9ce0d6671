import { setMaxListeners } from 'node:events';
import { ManifestError } from '../common/manifest.js';
import type { OcrManifest } from './manifest.js';
import { BatchBuffers, splitRows } from '../common/buffers.js';
import { pick } from '../common/graph.js';
import { rotate180 } from './crop.js';
import type { Quad } from './geometry.js';
import { orderLines } from './reading-order.js';
import type { ClassScore } from '../common/scores.js';
import type { TextLine } from '../text-recognition/pipeline.js';
import { detectorSize, ocrLines, ocrPage, type DetectorSizing, type PageRow } from './ops.js';
import { imageOf, type StepOptions, type TaskContext, type TaskPipeline } from '../task.js';

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
  const detector: DetectorSizing = {
    limitSideLen,
    limitType,
    sizeMultiple,
    spec: {
      layout: 'NCHW',
      channels: m.input.channels,
      resize: 'stretch',
      cropRatio: 1,
      interpolation: m.input.interpolation,
      scale: m.input.scale,
      mean: m.input.mean,
      std: m.input.std,
      padValue: 0,
    },
  };

  // a page's tensor is at most 3 x side x side floats for a 'max' limit (a 'min' limit has no such bound: larger
  // pages get buffers of their own); see BatchBuffers for when pages are copied into the pooled buffer
  const side = detectorSize(limitSideLen, limitSideLen, limitSideLen, limitType, sizeMultiple)[0];
  const buffers = new BatchBuffers((fixedBatch ?? m.batching.maxBatchSize) * 3 * side * side, session);

  // the page was admitted at this model's door: its lines must not be refused one by one at the stages' doors;
  // every line's step listens to the page's signal (more than the default ten listeners)
  const stepOpts = (opts: StepOptions) => {
    if (opts.signal) setMaxListeners(0, opts.signal);
    return { ...opts, timeoutMs: Math.max(0, opts.deadline - performance.now()), admitted: true };
  };

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
      const page = await ctx.workers.run(ocrPage, { source, maxPixels: ctx.maxImagePixels, detector });
      return { row: page, key: `${page.w}x${page.h}` };
    },
    async runBatch(rows) {
      const { w, h } = rows[0];
      const pages = rows.map((r) => r.data);
      return await buffers.with(pages, [fixedBatch ?? rows.length, 3, h, w], async (batch) => {
        const out = await session.run({ [input.name]: batch }, [output.name]);
        return splitRows(out[output.name], rows.length).map((r) => r.data);
      });
    },
    async sequence(page, opts, submit) {
      const [detected] = submit([{ row: page, opts, key: `${page.w}x${page.h}` }]);
      const prob = await detected;
      // the page's pixels are not needed here once its lines are cut: they move to the worker, as the map does
      const { image } = page;
      let { boxes, crops } = await ctx.workers.run(
        ocrLines,
        { prob, w: page.w, h: page.h, detection: m.detection, image, readingOrder: m.stages.readingOrder },
        { move: [prob, image.data] },
      );
      if (m.stages.orientation !== undefined) {
        const classifier = stages.model(m.stages.orientation);
        const answers = await allLines(
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
          boxes = orderLines(
            boxes.map((b) => ({ box: upright(b.box), original: b })),
            m.stages.readingOrder,
          ).map((b) => b.original);
          crops = boxes.map((b) => turned.get(b)!);
        }
      }
      const recognizer = stages.model(m.stages.recognizer);
      const read = await allLines(crops.map((c) => recognizer.infer({ kind: 'pixels', image: c }, stepOpts(opts))));
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
 * Every line's answer, or the first line's error once all the page's lines have ended: a page that fails does not
 * leave lines queued at a stage after its answer (and after its memory and queue place were given back).
 */
async function allLines<T>(steps: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(steps);
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}
