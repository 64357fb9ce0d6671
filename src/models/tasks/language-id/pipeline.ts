import { Errors } from '../../../errors.js';
import {
  checkText,
  hasLetters,
  ngramFeaturizer,
  normalizeText,
  scatter,
  type NgramFeaturizer,
  type SparseRow,
  type NgramGroup,
} from '../../../preprocess/text.js';
import { ManifestError } from '../common/manifest.js';
import type { TextManifest } from './manifest.js';
import { BatchBuffers, splitRows } from '../common/buffers.js';
import { pick } from '../common/graph.js';
import { activate, topK, type ClassScore } from '../common/scores.js';
import type { TaskContext, TaskPipeline } from '../task.js';

/**
 * `language-id`: text in, languages out. The text becomes one float32 row of character n-gram frequencies (the
 * vocabulary is a file of the model folder, see src/preprocess/text.ts); every row has the same length, so rows from
 * concurrent requests stack into one batch.
 */
export async function languageId(
  ctx: TaskContext<TextManifest>,
): Promise<TaskPipeline<SparseRow, Float32Array, { predictions: ClassScore[] }>> {
  const { manifest: m, session, labels, where } = ctx;
  const featurizer = await readVocabulary(ctx);
  const input = pick(session.inputs, m.input.name, 'input', where);
  const output = pick(session.outputs, m.output.name, 'output', where);
  if (input.type !== 'float32')
    throw new ManifestError(`${where}: input '${input.name}' is ${input.type}; language-id feeds float32`);
  const [batchDim, features] = input.shape;
  if (input.shape.length !== 2 || (typeof features === 'number' && features !== featurizer.size)) {
    throw new ManifestError(
      `${where}: input '${input.name}' has shape [${input.shape.join(', ')}] but /input/vocabulary gives [batch, ${featurizer.size}]`,
    );
  }
  const classes = output.shape.at(-1);
  if (typeof classes === 'number' && classes !== labels.length) {
    throw new ManifestError(
      `${where}: /labels has ${labels.length} entries but output '${output.name}' has ${classes} classes`,
    );
  }
  const fixedBatch = typeof batchDim === 'number' ? batchDim : undefined;
  const rowDims = [featurizer.size];
  const { maxBytes } = m.input;
  const buffers = new BatchBuffers(
    (fixedBatch ?? m.batching.maxBatchSize) * rowDims.reduce((a, b) => a * b, 1),
    session,
  );

  return {
    accepts: ['text'],
    inputSpec: {
      name: input.name,
      datatype: 'FP32',
      shape: [fixedBatch ?? -1, featurizer.size],
      kind: 'text',
      maxBytes,
      features: 'character n-gram frequencies (lande)',
    },
    graphMaxBatch: fixedBatch,
    async prepare(req) {
      if (req.kind !== 'text') throw new Error(`language-id got ${req.kind} input; this is a bug`);
      checkText(req.text, maxBytes);
      const norm = normalizeText(req.text); // once: the letter check and the features share it
      if (!hasLetters(norm)) {
        // digits and punctuation only: the features would be empty and the answer meaningless
        throw new Errors.MISSING_INPUT('the text has no letters to identify a language from');
      }
      return { row: featurizer.featurizeSparse(norm), key: '' };
    },
    async runBatch(rows) {
      const batch = fixedBatch ?? rows.length;
      return buffers.lend(batch * featurizer.size, async (data) => {
        data.fill(0);
        rows.forEach((r, i) => scatter(r, data.subarray(i * featurizer.size, (i + 1) * featurizer.size)));
        const out = await session.run({ [input.name]: { type: 'float32', data, dims: [batch, ...rowDims] } }, [
          output.name,
        ]);
        return splitRows(out[output.name], rows.length).map((r) => r.data);
      });
    },
    finish(scores, params) {
      const k = Math.min(params.topK ?? m.topK, labels.length);
      return { predictions: topK(activate(scores, m.output.activation), k, labels) };
    },
    warmupRow() {
      return { row: { index: [], value: [] }, key: '' };
    },
  };
}

/** Reads and checks `/input/vocabulary`: `{"groups": [{"n": 1, "ngrams": ["a", ...]}, ...]}`. */
async function readVocabulary(ctx: TaskContext<TextManifest>): Promise<NgramFeaturizer> {
  const field = '/input/vocabulary/file';
  const text = await ctx.readFile(ctx.manifest.input.vocabulary, field);
  let groups: unknown;
  try {
    groups = (JSON.parse(text) as { groups?: unknown }).groups;
  } catch (err) {
    throw new ManifestError(`${ctx.where}: ${field} is not valid JSON: ${(err as Error).message}`);
  }
  const valid =
    Array.isArray(groups) &&
    groups.length > 0 &&
    groups.every(
      (g) =>
        Number.isInteger(g?.n) && Array.isArray(g?.ngrams) && g.ngrams.every((s: unknown) => typeof s === 'string'),
    );
  if (!valid) throw new ManifestError(`${ctx.where}: ${field} must hold {"groups": [{"n": 1, "ngrams": [...]}, ...]}`);
  try {
    return ngramFeaturizer(groups as NgramGroup[]);
  } catch (err) {
    throw new ManifestError(`${ctx.where}: ${field}: ${(err as Error).message}`);
  }
}
