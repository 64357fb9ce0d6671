import { dims as imageDims, placement, type ImageSpec, type ImageTensor } from '../../../preprocess/image.js';
import { ManifestError } from '../common/manifest.js';
import type { FaceDetectionManifest } from './manifest.js';
import type { TensorInfo } from '../../session.js';
import { BatchBuffers, rowSlotsFor, splitRows } from '../common/buffers.js';
import { imageRow } from '../common/image.js';
import { checkShape, pick } from '../common/graph.js';
import { type TaskContext, type TaskPipeline } from '../task.js';

/** One SSD anchor, in normalized input coordinates (0..1). */
export interface Anchor {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
}

/** The options of MediaPipe's SsdAnchorsCalculator that BlazeFace uses (`reduce_boxes_in_lowest_layer` off). */
export interface AnchorOptions {
  readonly strides: readonly number[];
  readonly minScale: number;
  readonly maxScale: number;
  readonly offset: number;
  readonly aspectRatios: readonly number[];
  readonly interpolatedScaleAspectRatio: number;
  readonly fixedAnchorSize: boolean;
}

/** A detection in normalized input coordinates: box corners and keypoints as flat [x0, y0, x1, y1, ...]. */
export interface Detection {
  readonly score: number;
  readonly box: readonly [number, number, number, number];
  readonly keypoints: readonly number[];
}

/** One face in the answer, in original image pixels (after EXIF rotation). */
export interface Face {
  box: number[];
  score: number;
  keypoints: number[][];
}

/**
 * SSD anchors exactly as MediaPipe's SsdAnchorsCalculator generates them: consecutive layers with the same stride
 * share one feature map, each contributing an anchor per aspect ratio plus one interpolated-scale anchor; anchors
 * run row by row, then cell by cell, then anchor by anchor (the order of the model's outputs).
 */
export function ssdAnchors(o: AnchorOptions, inputWidth: number, inputHeight: number): Anchor[] {
  const n = o.strides.length;
  const scale = (i: number) =>
    n === 1 ? (o.minScale + o.maxScale) / 2 : o.minScale + ((o.maxScale - o.minScale) * i) / (n - 1);
  const anchors: Anchor[] = [];
  let layer = 0;
  while (layer < n) {
    const sizes: { w: number; h: number }[] = [];
    let last = layer;
    while (last < n && o.strides[last] === o.strides[layer]) {
      const s = scale(last);
      for (const r of o.aspectRatios) sizes.push({ w: s * Math.sqrt(r), h: s / Math.sqrt(r) });
      if (o.interpolatedScaleAspectRatio > 0) {
        const next = last === n - 1 ? 1 : scale(last + 1);
        const s2 = Math.sqrt(s * next);
        const r = Math.sqrt(o.interpolatedScaleAspectRatio);
        sizes.push({ w: s2 * r, h: s2 / r });
      }
      last++;
    }
    const stride = o.strides[layer];
    const rows = Math.ceil(inputHeight / stride);
    const cols = Math.ceil(inputWidth / stride);
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < cols; x++) {
        for (const size of sizes) {
          anchors.push({
            x: (x + o.offset) / cols,
            y: (y + o.offset) / rows,
            w: o.fixedAnchorSize ? 1 : size.w,
            h: o.fixedAnchorSize ? 1 : size.h,
          });
        }
      }
    }
    layer = last;
  }
  return anchors;
}

/** Decoding options: MediaPipe's TensorsToDetectionsCalculator with `reverse_output_order` (x before y). */
export interface DecodeOptions {
  readonly scoreThreshold: number;
  readonly scoreClip: number;
  readonly keypoints: number;
  /** Regressor units per anchor size: the input's width and height in pixels for BlazeFace (x_scale, y_scale). */
  readonly xScale: number;
  readonly yScale: number;
}

/**
 * Turns raw outputs into the detections whose sigmoid score reaches the threshold.
 * @param scores one logit per anchor
 * @param boxes per anchor: cx, cy, w, h, then x, y of each keypoint, all in `xScale` / `yScale` units
 */
export function decodeDetections(
  scores: Float32Array,
  boxes: Float32Array,
  anchors: readonly Anchor[],
  o: DecodeOptions,
): Detection[] {
  const stride = 4 + 2 * o.keypoints;
  if (scores.length !== anchors.length || boxes.length !== anchors.length * stride) {
    throw new Error(`${scores.length} scores, ${boxes.length} box values for ${anchors.length} anchors; this is a bug`);
  }
  const out: Detection[] = [];
  for (let i = 0; i < anchors.length; i++) {
    const logit = Math.max(-o.scoreClip, Math.min(o.scoreClip, scores[i]));
    const score = 1 / (1 + Math.exp(-logit));
    if (score < o.scoreThreshold) continue;
    const a = anchors[i];
    const r = i * stride;
    const cx = (boxes[r] / o.xScale) * a.w + a.x;
    const cy = (boxes[r + 1] / o.yScale) * a.h + a.y;
    const w = (boxes[r + 2] / o.xScale) * a.w;
    const h = (boxes[r + 3] / o.yScale) * a.h;
    const keypoints: number[] = [];
    for (let k = 0; k < o.keypoints; k++) {
      keypoints.push((boxes[r + 4 + 2 * k] / o.xScale) * a.w + a.x, (boxes[r + 5 + 2 * k] / o.yScale) * a.h + a.y);
    }
    out.push({ score, box: [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], keypoints });
  }
  return out;
}

/** Intersection over union of two [x1, y1, x2, y2] boxes; 0 when they do not overlap. */
export function iou(a: readonly number[], b: readonly number[]): number {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * MediaPipe's weighted non-maximum suppression: the best remaining detection takes every remaining one that
 * overlaps it by more than `iouThreshold` (itself included), and its box and keypoints become their
 * score-weighted mean; it keeps its own score. Blending the ~10 anchors that fire on one face steadies the box
 * far better than keeping the single best anchor.
 */
export function weightedNms(
  detections: readonly Detection[],
  iouThreshold: number,
  maxDetections: number,
): Detection[] {
  let remaining = [...detections].sort((a, b) => b.score - a.score);
  const out: Detection[] = [];
  while (remaining.length > 0 && out.length < maxDetections) {
    const top = remaining[0];
    const merged: Detection[] = [];
    const rest: Detection[] = [];
    for (const d of remaining) (iou(top.box, d.box) > iouThreshold || d === top ? merged : rest).push(d);
    remaining = rest;
    if (merged.length === 1) {
      out.push(top); // nothing to blend (and no rounding noise from dividing by its own score)
      continue;
    }
    let total = 0;
    const box = [0, 0, 0, 0];
    const keypoints = new Array<number>(top.keypoints.length).fill(0);
    for (const d of merged) {
      total += d.score;
      for (let i = 0; i < 4; i++) box[i] += d.box[i] * d.score;
      for (let i = 0; i < keypoints.length; i++) keypoints[i] += d.keypoints[i] * d.score;
    }
    out.push({
      score: top.score,
      box: box.map((v) => v / total) as [number, number, number, number],
      keypoints: keypoints.map((v) => v / total),
    });
  }
  return out;
}

/** The raw outputs of one request, with the size of the image they came from. */
interface RawOutput {
  readonly scores: Float32Array;
  readonly boxes: Float32Array;
  readonly original: ImageTensor['original'];
}

/**
 * `face-detection`: an image in, faces (box, score, keypoints in original pixels) out. BlazeFace-style SSD: the image
 * is letterboxed into the input, the graph gives a score logit and box + keypoint regressors per anchor (possibly
 * split over several outputs, one per feature map), and the anchors, decoding and weighted NMS follow MediaPipe.
 */
export function faceDetection(
  ctx: TaskContext<FaceDetectionManifest>,
): TaskPipeline<ImageTensor, RawOutput, { faces: Face[] }> {
  const { manifest: m, session, where } = ctx;
  const spec: ImageSpec = m.input;
  const det = m.detection;
  const rowDims = imageDims(spec);
  const input = pick(session.inputs, m.input.name, 'input', where);
  if (input.type !== 'float32')
    throw new ManifestError(`${where}: input '${input.name}' is ${input.type}; face-detection feeds float32`);
  checkShape(input.shape, rowDims, `input '${input.name}'`, where);
  const anchors = ssdAnchors(det.anchors, spec.width, spec.height);
  const stride = 4 + 2 * det.keypoints;
  const scoreOutputs = outputs(session.outputs, det.scores, 1, '/detection/scores', where);
  const boxOutputs = outputs(session.outputs, det.boxes, stride, '/detection/boxes', where);
  const count = (list: TensorInfo[], what: string) => {
    const n = list.reduce((sum, o) => sum + (typeof o.shape[1] === 'number' ? o.shape[1] : NaN), 0);
    if (n !== anchors.length) {
      throw new ManifestError(
        `${where}: ${what} outputs (${list.map((o) => `${o.name} [${o.shape.join(', ')}]`).join(', ')}) hold ${n} ` +
          `anchors; /detection/anchors gives ${anchors.length} for a ${spec.width}x${spec.height} input`,
      );
    }
  };
  count(scoreOutputs, 'score');
  count(boxOutputs, 'box');
  const decode: DecodeOptions = {
    scoreThreshold: det.scoreThreshold,
    scoreClip: det.scoreClip,
    keypoints: det.keypoints,
    xScale: spec.width,
    yScale: spec.height,
  };
  const batchDim = input.shape[0];
  const fixedBatch = typeof batchDim === 'number' ? batchDim : undefined;
  const maxRows = fixedBatch ?? m.batching.maxBatchSize;
  const buffers = new BatchBuffers(maxRows * rowDims.reduce((a, b) => a * b, 1), session);
  const slots = rowSlotsFor(
    rowDims.reduce((a, b) => a * b, 1),
    m.batching,
  );
  const sizing = { kind: 'fixed', spec } as const;
  const names = [...scoreOutputs, ...boxOutputs].map((o) => o.name);

  /** Row `i` of several outputs, concatenated along the anchor axis. */
  const gather = (out: Record<string, { data: unknown; dims: readonly number[] }>, list: TensorInfo[], n: number) => {
    const parts = list.map((o) => splitRows(out[o.name] as Parameters<typeof splitRows>[0], n));
    return Array.from({ length: n }, (_, i) => {
      const all = new Float32Array(parts.reduce((sum, p) => sum + p[i].data.length, 0));
      let at = 0;
      for (const p of parts) {
        all.set(p[i].data, at);
        at += p[i].data.length;
      }
      return all;
    });
  };

  return {
    accepts: ['image'],
    inputSpec: { name: input.name, datatype: 'FP32', shape: [fixedBatch ?? -1, ...rowDims], ...spec },
    graphMaxBatch: fixedBatch,
    async prepare(req) {
      const { tensor, release } = await imageRow(ctx, req, 'face-detection', sizing, slots);
      return { row: tensor, key: '', release };
    },
    async runBatch(batchRows) {
      const data = batchRows.map((r) => r.data);
      return await buffers.with(data, [fixedBatch ?? batchRows.length, ...rowDims], async (batch) => {
        const out = await session.run({ [input.name]: batch }, names);
        const scores = gather(out, scoreOutputs, batchRows.length);
        const boxes = gather(out, boxOutputs, batchRows.length);
        return batchRows.map((r, i) => ({ scores: scores[i], boxes: boxes[i], original: r.original }));
      });
    },
    finish(raw) {
      const found = weightedNms(
        decodeDetections(raw.scores, raw.boxes, anchors, decode),
        det.iouThreshold,
        det.maxFaces,
      );
      // undo the letterbox: normalized input coordinates -> input pixels -> original pixels
      const { width: w, height: h } = raw.original;
      const place = placement(w, h, spec);
      const sx = w / place.resizeW;
      const sy = h / place.resizeH;
      const px = (x: number) => (x * spec.width - place.left) * sx;
      const py = (y: number) => (y * spec.height - place.top) * sy;
      const round = (v: number) => Math.round(v * 100) / 100;
      const clamp = (v: number, max: number) => round(Math.max(0, Math.min(max, v)));
      const faces = found.map((d) => ({
        box: [clamp(px(d.box[0]), w), clamp(py(d.box[1]), h), clamp(px(d.box[2]), w), clamp(py(d.box[3]), h)],
        score: d.score,
        keypoints: Array.from({ length: det.keypoints }, (_, k) => [
          round(px(d.keypoints[2 * k])),
          round(py(d.keypoints[2 * k + 1])),
        ]),
      }));
      return { faces }; // weightedNms already gives them best first
    },
    warmupRow() {
      return {
        row: {
          data: new Float32Array(rowDims.reduce((a, b) => a * b, 1)),
          dims: rowDims,
          original: { width: spec.width, height: spec.height },
        },
        key: '',
      };
    },
  };
}

/**
 * The graph outputs the manifest names, or, when it names none, every float output [batch, n, `last`] in graph
 * order (BlazeFace splits scores and regressors per feature map).
 */
function outputs(
  all: TensorInfo[],
  wanted: readonly string[] | undefined,
  last: number,
  field: string,
  where: string,
): TensorInfo[] {
  const list = wanted
    ? wanted.map((name) => {
        const o = all.find((x) => x.name === name);
        if (!o)
          throw new ManifestError(
            `${where}: ${field} '${name}' is not a graph output (have ${all.map((x) => x.name).join(', ')})`,
          );
        return o;
      })
    : all.filter((o) => o.shape.length === 3 && o.shape[2] === last);
  if (list.length === 0)
    throw new ManifestError(`${where}: no graph output of shape [batch, n, ${last}]; set ${field}`);
  for (const o of list) {
    if (o.type !== 'float32' || o.shape.length !== 3 || o.shape[2] !== last) {
      throw new ManifestError(
        `${where}: ${field}: output '${o.name}' is ${o.type} [${o.shape.join(', ')}], expected float32 [batch, n, ${last}]`,
      );
    }
  }
  return list;
}
