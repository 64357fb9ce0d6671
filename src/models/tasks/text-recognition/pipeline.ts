import { createHash } from 'node:crypto';
import { ManifestError } from '../common/manifest.js';
import type { TextRecognitionManifest } from './manifest.js';
import { BatchBuffers, rowSlotsFor, splitRows } from '../common/buffers.js';
import { imageRow } from '../common/image.js';
import type { Sizing } from '../../../workers/ops.js';
import { pick } from '../common/graph.js';
import { argmaxLastAxis } from '../../session.js';
import { type TaskContext, type TaskPipeline } from '../task.js';

/** One recognized text line: PaddleOCR's `(text, score)`. */
export interface TextLine {
  text: string;
  /** Mean of the kept characters' probabilities (0 for an empty line). */
  score: number;
}

/** One preprocessed line: a [channels, height, width] row, `width` being its bucket. */
export interface LineRow {
  readonly data: Float32Array;
  readonly width: number;
}

/**
 * One line's output (a view into the batch output): [time steps, classes] scores, or, reduced on the session's
 * thread, [time steps, 3]: the best class, its score and the space's (see ctcDecodeReduced).
 */
interface LineScores {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

/** The widest line row written into a row slot; wider ones get buffers of their own. */
const SLOT_WIDTH = 1024;

/**
 * `text-recognition`: one cropped text line in, its text out, with a CTC recognizer such as PaddleOCR's PP-OCRv4
 * (`x` [B, 3, 48, W] with W dynamic, softmax output [B, W/8, classes]).
 *
 * Batching: lines have different aspect ratios, so rows have different widths. PaddleOCR pads a batch to its widest
 * line (`max_wh_ratio`), which makes a line's answer depend on its batch neighbours (the SVTR neck attends over the
 * whole row, padding included). Here each line goes to a width bucket instead: its resized width rounded up to a
 * multiple of `/input/widthStep`, at least `/input/minWidth` (PaddleOCR's 320), and it is always padded to that bucket
 * width. The bucket is the batcher key, so only equal widths stack, concurrent lines of similar widths share a batch,
 * and a line's answer is the same alone or batched. The step trades padding against batching: padding is not free
 * for accuracy (on the fixture lines, step 64 drops two more spaces than PaddleOCR's exact width; step 32 reads them
 * as the exact width does) nor for compute (up to step - 1 wasted columns), while a smaller step splits concurrent
 * lines over more buckets. A line wider than `/input/maxWidth` once resized is squeezed to it (the last bucket),
 * which bounds per-row memory and the number of distinct shapes onnxruntime sees.
 */
export async function textRecognition(
  ctx: TaskContext<TextRecognitionManifest>,
): Promise<TaskPipeline<LineRow, LineScores, { lines: TextLine[] }>> {
  const { manifest: m, session, labels, where } = ctx;
  const { height, minWidth, maxWidth, widthStep } = m.input;
  await checkDictionary(ctx);
  const classes = ctcClasses(labels, m.ctc.useSpaceChar);
  if (m.ctc.spaceThreshold !== undefined && !m.ctc.useSpaceChar)
    throw new ManifestError(`${where}: /ctc/spaceThreshold needs a space class (/ctc/useSpaceChar: true)`);
  const input = pick(session.inputs, m.input.name, 'input', where);
  const output = pick(session.outputs, m.output.name, 'output', where);
  if (input.type !== 'float32')
    throw new ManifestError(`${where}: input '${input.name}' is ${input.type}; text-recognition feeds float32`);
  const channels = m.input.channels === 'GRAY' ? 1 : 3;
  const [batchDim, c, h] = input.shape;
  if (
    input.shape.length !== 4 ||
    (typeof c === 'number' && c !== channels) ||
    (typeof h === 'number' && h !== height)
  ) {
    throw new ManifestError(
      `${where}: input '${input.name}' has shape [${input.shape.join(', ')}] but /input gives [batch, ${channels}, ${height}, width]`,
    );
  }
  const fixedWidth = input.shape[3];
  if (typeof fixedWidth === 'number') {
    throw new ManifestError(
      `${where}: input '${input.name}' has a fixed width ${fixedWidth}; text-recognition needs a dynamic one`,
    );
  }
  const outClasses = output.shape.at(-1);
  if (output.shape.length !== 3 || (typeof outClasses === 'number' && outClasses !== classes.length)) {
    throw new ManifestError(
      `${where}: output '${output.name}' has shape [${output.shape.join(', ')}] but /labels gives ${labels.length} characters + blank` +
        `${m.ctc.useSpaceChar ? ' + space' : ''} = [batch, steps, ${classes.length}] (check /ctc/useSpaceChar)`,
    );
  }
  const fixedBatch = typeof batchDim === 'number' ? batchDim : undefined;
  const maxRows = fixedBatch ?? m.batching.maxBatchSize;
  const activation = m.output.activation;
  // the session's thread keeps only what the decoder reads of each step (3 numbers, not a score per class), except
  // for a softmax the decoder computes over the whole step
  const space = m.ctc.spaceThreshold === undefined ? -1 : classes.lastIndexOf(' ');
  const reduced = activation === 'softmax' ? undefined : { activation, reduce: { classes: [Math.max(space, 0)] } };

  const { channels: order, interpolation, scale, mean, std, padValue } = m.input;
  const sizing: Sizing = {
    kind: 'line',
    spec: {
      layout: 'NCHW',
      resize: 'fit-height',
      cropRatio: 1,
      height,
      channels: order,
      interpolation,
      scale,
      mean,
      std,
      padValue,
    },
    minWidth,
    maxWidth,
    widthStep,
  };
  const buffers = new BatchBuffers(maxRows * channels * height * maxWidth, session);
  // slots for rows up to 1024 wide (most lines; 590 KB each): at the widest (4096) only 7 would fit the cap
  const slots = rowSlotsFor(channels * height * Math.min(maxWidth, SLOT_WIDTH), m.batching);

  return {
    accepts: ['image'],
    inputSpec: {
      name: input.name,
      datatype: 'FP32',
      shape: [fixedBatch ?? -1, channels, height, -1],
      layout: 'NCHW',
      channels: m.input.channels,
      resize: 'fit-height',
      height,
      minWidth,
      maxWidth,
      widthStep,
      interpolation: m.input.interpolation,
      scale: m.input.scale,
      mean: m.input.mean,
      std: m.input.std,
      padValue: m.input.padValue,
      classes: classes.length,
    },
    graphMaxBatch: fixedBatch,
    async prepare(req) {
      const { tensor, release } = await imageRow(ctx, req, 'text-recognition', sizing, slots);
      const width = tensor.dims[2];
      return { row: { data: tensor.data, width }, key: String(width), release };
    },
    async runBatch(rows) {
      const width = rows[0].width;
      if (rows.some((r) => r.width !== width)) throw new Error('rows of different widths in one batch; this is a bug');
      const dims = [fixedBatch ?? rows.length, channels, height, width];
      return buffers.with(
        rows.map((r) => r.data),
        dims,
        async (batch) => {
          const out = await session.run(
            { [input.name]: batch },
            [output.name],
            reduced && { [output.name]: reduced.reduce },
          );
          return splitRows(out[output.name], rows.length);
        },
      );
    },
    finish(scores) {
      const [steps, n] = scores.dims;
      const line = reduced
        ? ctcDecodeReduced(scores.data, steps, classes, reduced.activation, m.ctc.spaceThreshold)
        : ctcGreedyDecode(scores.data, steps, n, classes, activation, m.ctc.spaceThreshold);
      return { lines: [line] };
    },
    warmupRow() {
      return { row: { data: new Float32Array(channels * height * minWidth), width: minWidth }, key: String(minWidth) };
    },
  };
}

/** PaddleOCR's CTCLabelDecode classes: class 0 is the CTC blank, then the dictionary, then ' ' when `useSpaceChar`. */
export function ctcClasses(labels: readonly string[], useSpaceChar: boolean): string[] {
  return ['', ...labels, ...(useSpaceChar ? [' '] : [])];
}

/**
 * CTC greedy decoding, as PaddleOCR's `CTCLabelDecode`: the best class per time step, repeats merged, blanks (class
 * 0) dropped; the score is the mean probability of the kept steps (0 when nothing is kept).
 * @param probs [steps, n] row-major scores; `activation` says how they become probabilities
 * @param classes class index to character ('' for the blank)
 * @param spaceThreshold when set, a blank step between two characters whose space (the last class) probability is
 * at least this puts a space between them (not counted in the score); a space is never doubled nor left at the end
 */
export function ctcGreedyDecode(
  probs: Float32Array,
  steps: number,
  n: number,
  classes: readonly string[],
  activation: 'none' | 'softmax' | 'sigmoid' = 'none',
  spaceThreshold?: number,
): TextLine {
  if (probs.length < steps * n) throw new RangeError(`${probs.length} scores for ${steps} steps of ${n} classes`);
  const space = spaceThreshold === undefined ? -1 : classes.lastIndexOf(' ');
  const best = argmaxLastAxis(
    { type: 'float32', data: probs.subarray(0, steps * n), dims: [steps, n] },
    { classes: [] },
  ).data as Float32Array;
  return decodeSteps(steps, classes, space, spaceThreshold, {
    best: (t) => best[2 * t],
    probability: (t, k) => probabilityOf(probs, t * n, n, k, best[2 * t + 1], activation),
  });
}

/**
 * {@link ctcGreedyDecode} of steps reduced where the session ran (`argmaxLastAxis` with the space as its one extra
 * class): [steps, 3] of the best class, its score and the space's score. Not for a softmax, which needs every score.
 */
export function ctcDecodeReduced(
  reduced: Float32Array,
  steps: number,
  classes: readonly string[],
  activation: 'none' | 'sigmoid',
  spaceThreshold?: number,
): TextLine {
  if (reduced.length < steps * 3) throw new RangeError(`${reduced.length} values for ${steps} reduced steps`);
  const space = spaceThreshold === undefined ? -1 : classes.lastIndexOf(' ');
  const activate = activation === 'none' ? (x: number) => x : (x: number) => 1 / (1 + Math.exp(-x));
  return decodeSteps(steps, classes, space, spaceThreshold, {
    best: (t) => reduced[3 * t],
    probability: (t, k) => activate(k === reduced[3 * t] ? reduced[3 * t + 1] : reduced[3 * t + 2]),
  });
}

/**
 * The merging rules of CTC greedy decoding over each step's best class and the probability of a class at a step
 * (only ever asked for the step's best class or the space).
 */
function decodeSteps(
  steps: number,
  classes: readonly string[],
  space: number,
  spaceThreshold: number | undefined,
  at: { best(t: number): number; probability(t: number, k: number): number },
): TextLine {
  let text = '';
  let sum = 0;
  let kept = 0;
  let previous = -1;
  let lastChar = -1; // the class last written
  let last = 0; // and its probability
  let spaceDue = false;
  for (let t = 0; t < steps; t++) {
    const best = at.best(t);
    if (best === 0) {
      // a blank step where a space is likely enough: a space goes before the next character, if there is one. (A
      // blank also separates a doubled letter; on the quality bench's pages no doubled letter got a space, while
      // refusing spaces between equal letters lost true ones: "this shall".)
      if (space > 0 && lastChar > 0 && lastChar !== space && at.probability(t, space) >= spaceThreshold!)
        spaceDue = true;
    } else if (best !== previous && !(space > 0 && best === space && (text === '' || text.endsWith(' ')))) {
      // (a space the model chose before any character has no word before it: not written, like one at the end)
      // inserted spaces stay out of the score: it is the mean probability of the characters the model chose
      if (spaceDue && best !== space) text += ' ';
      spaceDue = false;
      text += classes[best] ?? '';
      last = at.probability(t, best);
      sum += last;
      kept++;
      lastChar = best;
    }
    previous = best;
  }
  if (space > 0 && lastChar === space) {
    // a space the model chose at the very end has no word after it: dropped, with its probability
    text = text.slice(0, -1);
    sum -= last;
    kept--;
  }
  return { text, score: kept === 0 ? 0 : sum / kept };
}

/** The probability of class `k` at one time step (`max`: the step's best raw score, for the softmax). */
function probabilityOf(
  x: Float32Array,
  base: number,
  n: number,
  k: number,
  max: number,
  activation: 'none' | 'softmax' | 'sigmoid',
): number {
  if (activation === 'none') return x[base + k];
  if (activation === 'sigmoid') return 1 / (1 + Math.exp(-x[base + k]));
  let sum = 0;
  for (let j = 0; j < n; j++) sum += Math.exp(x[base + j] - max);
  return Math.exp(x[base + k] - max) / sum;
}

/** Verifies `/labels/sha256` when the manifest pins the dictionary (the repository reads it, but checks no hash). */
async function checkDictionary(ctx: TaskContext<TextRecognitionManifest>): Promise<void> {
  const ref = ctx.manifest.labels;
  if (ref.sha256 === undefined) return;
  const sha256 = createHash('sha256')
    .update(await ctx.readFile(ref, '/labels/file'), 'utf8')
    .digest('hex');
  if (sha256 !== ref.sha256) {
    throw new ManifestError(`${ctx.where}: /labels/sha256 is ${ref.sha256} but ${ref.file} has ${sha256}`);
  }
}
