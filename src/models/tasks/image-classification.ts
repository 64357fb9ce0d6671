import { dims as imageDims, type ImageSpec, type ImageTensor } from '../../preprocess/image.js';
import { ManifestError, type ImageManifest } from '../manifest.js';
import { BatchBuffers, splitRows } from '../tensor.js';
import { isSmallImage } from '../../workers/ops.js';
import { imageOf, type TaskContext, type TaskPipeline } from './task.js';

/** One class in a classification answer. */
export interface ClassScore {
  label: string;
  index: number;
  score: number;
}

/** `image-classification`: an image in, top-k labels with scores out. */
export function imageClassification(
  ctx: TaskContext<ImageManifest>,
): TaskPipeline<ImageTensor, Float32Array, { predictions: ClassScore[] }> {
  const { manifest: m, session, labels, where } = ctx;
  const spec: ImageSpec = m.input;
  const rowDims = imageDims(spec);
  const input = pick(session.inputs, m.input.name, 'input', where);
  const output = pick(session.outputs, m.output.name, 'output', where);
  if (input.type !== 'float32')
    throw new ManifestError(`${where}: input '${input.name}' is ${input.type}; image-classification feeds float32`);
  checkShape(input.shape, rowDims, `input '${input.name}'`, where);
  const classes = output.shape.at(-1);
  if (typeof classes === 'number' && classes !== labels.length) {
    throw new ManifestError(
      `${where}: /labels has ${labels.length} entries but output '${output.name}' has ${classes} classes`,
    );
  }
  const batchDim = input.shape[0];
  const fixedBatch = typeof batchDim === 'number' ? batchDim : undefined;
  const activation = m.output.activation;
  const maxRows = fixedBatch ?? m.batching.maxBatchSize;
  const buffers = new BatchBuffers(rowDims, maxRows);
  const sizing = { kind: 'fixed', spec } as const;

  return {
    accepts: ['image'],
    inputSpec: { name: input.name, datatype: 'FP32', shape: [fixedBatch ?? -1, ...rowDims], ...spec },
    graphMaxBatch: fixedBatch,
    async prepare(req) {
      const source = imageOf(req, 'image-classification');
      const t = await ctx.workers.run(
        'imageTensor',
        { source, sizing, maxPixels: ctx.maxImagePixels },
        { inline: isSmallImage(source) },
      );
      return { row: t, key: '' }; // every row has the manifest's fixed size, so all rows stack
    },
    async runBatch(batchRows) {
      const data = batchRows.map((r) => r.data);
      return await buffers.with(data, fixedBatch ?? batchRows.length, async (batch) => {
        const out = await session.run({ [input.name]: batch }, [output.name]);
        return splitRows(out[output.name], batchRows.length).map((r) => r.data);
      });
    },
    finish(scores, params) {
      const k = Math.min(params.topK ?? m.topK, labels.length);
      return { predictions: topK(activate(scores, activation), k, labels) };
    },
    warmupRow() {
      const n = rowDims.reduce((a, b) => a * b, 1);
      return {
        row: { data: new Float32Array(n), dims: rowDims, original: { width: spec.width, height: spec.height } },
        key: '',
      };
    },
  };
}

/** The graph input or output the manifest names, or the only / first one when it names none. */
export function pick<T extends { name: string }>(
  list: T[],
  wanted: string | undefined,
  what: string,
  where: string,
): T {
  if (wanted === undefined) {
    if (list.length === 1 || what === 'output') return list[0];
    throw new ManifestError(
      `${where}: the model has ${list.length} inputs (${list.map((i) => i.name).join(', ')}); set /input/name`,
    );
  }
  const found = list.find((i) => i.name === wanted);
  if (!found)
    throw new ManifestError(
      `${where}: /${what}/name '${wanted}' is not a graph ${what} (have ${list.map((i) => i.name).join(', ')})`,
    );
  return found;
}

/** Checks a graph input's shape against the row the manifest's `/input` describes (batch axis aside). */
export function checkShape(
  shape: readonly (number | string)[],
  rowDims: readonly number[],
  what: string,
  where: string,
): void {
  if (shape.length !== rowDims.length + 1) {
    throw new ManifestError(
      `${where}: ${what} has rank ${shape.length}, the manifest's /input describes rank ${rowDims.length + 1}`,
    );
  }
  rowDims.forEach((d, i) => {
    const g = shape[i + 1];
    if (typeof g === 'number' && g !== d) {
      throw new ManifestError(
        `${where}: ${what} has shape [${shape.join(', ')}] but /input (layout, height, width, channels) gives [batch, ${rowDims.join(', ')}]`,
      );
    }
  });
}

/** Turns a row of logits into scores, as the manifest's `output.activation` says. */
export function activate(x: Float32Array, kind: 'none' | 'softmax' | 'sigmoid'): Float32Array {
  if (kind === 'none') return x;
  const out = new Float32Array(x.length);
  if (kind === 'sigmoid') {
    for (let i = 0; i < x.length; i++) out[i] = 1 / (1 + Math.exp(-x[i]));
    return out;
  }
  let max = -Infinity;
  for (const v of x) if (v > max) max = v;
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += out[i] = Math.exp(x[i] - max);
  for (let i = 0; i < x.length; i++) out[i] /= sum;
  return out;
}

/** The k best classes, best first; ties keep the lower index first. */
export function topK(scores: Float32Array, k: number, labels: readonly string[]): ClassScore[] {
  const idx = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b);
  return idx.slice(0, k).map((i) => ({ label: labels[i] ?? String(i), index: i, score: scores[i] }));
}
