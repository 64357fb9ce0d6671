import { dims as imageDims, type ImageSpec, type ImageTensor } from '../../../preprocess/image.js';
import { ManifestError } from '../common/manifest.js';
import { checkShape, pick } from '../common/graph.js';
import { activate, topK, type ClassScore } from '../common/scores.js';
import type { ImageManifest } from './manifest.js';
import { BatchBuffers, rowSlotsFor, splitRows } from '../common/buffers.js';
import { imageRow } from '../common/image.js';
import { type TaskContext, type TaskPipeline } from '../task.js';

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
  const buffers = new BatchBuffers(maxRows * rowDims.reduce((a, b) => a * b, 1), session);
  const slots = rowSlotsFor(
    rowDims.reduce((a, b) => a * b, 1),
    m.batching,
  );
  const sizing = { kind: 'fixed', spec } as const;

  return {
    accepts: ['image'],
    inputSpec: { name: input.name, datatype: 'FP32', shape: [fixedBatch ?? -1, ...rowDims], ...spec },
    graphMaxBatch: fixedBatch,
    async prepare(req) {
      const { tensor, release } = await imageRow(ctx, req, 'image-classification', sizing, slots);
      return { row: tensor, key: '', release }; // every row has the manifest's fixed size, so all rows stack
    },
    async runBatch(batchRows) {
      const data = batchRows.map((r) => r.data);
      return await buffers.with(data, [fixedBatch ?? batchRows.length, ...rowDims], async (batch) => {
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
