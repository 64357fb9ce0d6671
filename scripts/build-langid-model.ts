// Builds models/language-id/ from the npm package lande@1.0.10 (MIT, github.com/fabiospampinato/lande): a
// language-identification MLP over character 1- to 4-gram frequencies, 50 languages, shipped as toygrad options
// (weights as 8-bit scaled, base64-encoded strings). We decode the weights and write the same network as a small
// ONNX graph with our own writer (src/onnx/model.ts), so onnxruntime runs it behind the batcher like any model:
//
//   features [batch, 620] -> Gemm(W1 [120, 620], b1) -> Relu -> Gemm(W2 [50, 120], b2) -> Softmax -> probs [batch, 50]
//
// (the second layer's sums and the softmax in double, as lande computes them; see below).
//
// It writes model.onnx, labels.txt (ISO 639-3 codes, lande's order), vocabulary.json (the 620 n-grams, in feature
// order; the featurizer is src/preprocess/text.ts) and manifest.json (with the model's sha256).
//
// The output is deterministic: running `npx tsx scripts/build-langid-model.ts` reproduces the committed files byte
// for byte (no timestamps, fixed field order). test/models/language-id.test.ts checks the committed files against a
// fresh build and the ONNX model's probabilities against lande() itself (within 2e-5).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { attr, DataType, encodeModel, makeGraph, makeModel, node, tensor, valueInfo } from '../src/onnx/model.js';
import type { NgramGroup } from '../src/preprocess/text.js';

/** Everything the model folder holds, as bytes per file name. */
export interface LangIdFiles {
  readonly files: Record<string, Uint8Array>;
  readonly sha256: string;
}

interface ToygradLayer {
  type: string;
  sz?: number;
  filters?: number;
  _biases?: string;
  _filters?: string[];
}

/** The lande package folder (its `exports` hide the standalone files, so they are read by path). */
function landeDir(): string {
  const entry = createRequire(import.meta.url).resolve('lande');
  return path.dirname(entry); // .../lande/standalone
}

/**
 * toygrad's 8-bit weight encoding (`Encoder.decode`, precision "1"): `1<scale>|<base64 bytes>`, each value
 * `(byte - 127) / scale`, stored as float32 exactly as toygrad does.
 */
function decodeF8(encoded: string, expected: number, what: string): Float32Array {
  const sep = encoded.indexOf('|');
  if (encoded[0] !== '1' || encoded[1] === '-' || sep < 0) {
    throw new Error(`${what}: unsupported toygrad encoding '${encoded.slice(0, 8)}...' (expected 8-bit "1<scale>|")`);
  }
  const scale = Number(encoded.slice(1, sep));
  const bytes = Buffer.from(encoded.slice(sep + 1), 'base64');
  if (bytes.length !== expected) throw new Error(`${what}: ${bytes.length} values, expected ${expected}`);
  return Float32Array.from(bytes, (b) => (b - 127) / scale);
}

/** A dense layer's weights as [out, in] (toygrad's filter layout) and its biases. */
function dense(layer: ToygradLayer, inputs: number, what: string): { w: Float32Array; b: Float32Array; out: number } {
  const out = layer.filters;
  if (layer.type !== 'dense' || !out || !layer._filters || !layer._biases || layer._filters.length !== out) {
    throw new Error(`${what}: expected a biased dense layer with encoded weights`);
  }
  const w = new Float32Array(out * inputs);
  layer._filters.forEach((f, i) => w.set(decodeF8(f, inputs, `${what} filter ${i}`), i * inputs));
  return { w, b: decodeF8(layer._biases, out, `${what} biases`), out };
}

/** Reads lande's standalone files and builds every file of the model folder in memory. */
export async function buildLangId(): Promise<LangIdFiles> {
  const dir = landeDir();
  const load = async (f: string) => (await import(pathToFileURL(path.join(dir, f)).href)).default;
  const pkg = JSON.parse(readFileSync(path.join(dir, '..', 'package.json'), 'utf8')) as { version: string };
  if (pkg.version !== '1.0.10') throw new Error(`expected lande 1.0.10, found ${pkg.version}`);
  const langs = (await load('t50-langs.js')) as string[];
  const ngrams = (await load('t50-ngrams.js')) as Record<'unigrams' | 'bigrams' | 'trigrams' | 'quadgrams', string[]>;
  const options = (await load('t50-options.js')) as { layers: ToygradLayer[] };

  // lande's infer(): unigrams, bigrams, trigrams, quadgrams, concatenated in that order
  const groups: NgramGroup[] = [
    { n: 1, ngrams: ngrams.unigrams },
    { n: 2, ngrams: ngrams.bigrams },
    { n: 3, ngrams: ngrams.trigrams },
    { n: 4, ngrams: ngrams.quadgrams },
  ];
  const features = groups.reduce((a, g) => a + g.ngrams.length, 0);

  const types = options.layers.map((l) => l.type).join(',');
  if (types !== 'input,dense,relu,dense,softmax' || options.layers[0].sz !== features) {
    throw new Error(`unexpected lande network: ${types} with ${options.layers[0].sz} inputs (featurizer: ${features})`);
  }
  const hidden = dense(options.layers[1], features, 'layer 1');
  const output = dense(options.layers[3], hidden.out, 'layer 3');
  if (output.out !== langs.length) throw new Error(`${output.out} outputs for ${langs.length} languages`);

  // lande runs in JS doubles and rounds to float32 only where it stores a layer's output (toygrad tensors are
  // Float32Arrays). The first layer's sums (620 inputs) run in float32: that is most of the graph's work, double
  // made it run 2.6x slower (onnxruntime has no fast double Gemm), and its output is rounded to float32 anyway;
  // over 2,314 texts it moves a probability by at most 1.5e-5 from lande's. The second layer's sums and the softmax
  // run in double (weights stay float32 in the file, cast once and folded by onnxruntime at load): a float32 second
  // layer drifts up to 1.3e-4, since the softmax amplifies the logits' rounding.
  const transB = { transB: attr.int(1) };
  const cast = (from: string, to: string, type: DataType) => node('Cast', [from], [to], { to: type }, { name: to });
  const D = DataType.DOUBLE;
  const F = DataType.FLOAT;
  const graph = makeGraph({
    name: 'lande_t50',
    docString: 'lande 1.0.10 t50: character 1-4-gram frequencies -> dense 120 + ReLU -> dense 50 + softmax',
    inputs: [valueInfo('features', F, ['batch', features])],
    outputs: [valueInfo('probs', F, ['batch', langs.length])],
    initializers: [
      tensor('dense1.weight', [hidden.out, features], hidden.w),
      tensor('dense1.bias', [hidden.out], hidden.b),
      tensor('dense2.weight', [output.out, hidden.out], output.w),
      tensor('dense2.bias', [output.out], output.b),
    ],
    nodes: [
      node('Gemm', ['features', 'dense1.weight', 'dense1.bias'], ['dense1_out'], transB, { name: 'dense1' }),
      node('Relu', ['dense1_out'], ['relu1_out'], {}, { name: 'relu1' }),
      cast('relu1_out', 'relu1_f64', D),
      cast('dense2.weight', 'dense2.weight_f64', D),
      cast('dense2.bias', 'dense2.bias_f64', D),
      node('Gemm', ['relu1_f64', 'dense2.weight_f64', 'dense2.bias_f64'], ['dense2_f64'], transB, { name: 'dense2' }),
      cast('dense2_f64', 'logits', F),
      cast('logits', 'logits_f64', D),
      node('Softmax', ['logits_f64'], ['probs_f64'], { axis: -1 }, { name: 'softmax' }),
      cast('probs_f64', 'probs', F),
    ],
  });
  const model = encodeModel(
    makeModel({
      graph,
      producer: 'muon-serve scripts/build-langid-model.ts',
      docString: 'Converted from npm:lande@1.0.10 (MIT, Fabio Spampinato)',
      metadata: { source: 'npm:lande@1.0.10 standalone/t50-options.js', license: 'MIT' },
    }),
  );
  const sha256 = createHash('sha256').update(model).digest('hex');

  const manifest = {
    $schema: '../manifest.schema.json',
    version: '1.0.10',
    task: 'language-id',
    description:
      'Language identification for 50 languages (ISO 639-3 labels): a small MLP over character 1-4-gram ' +
      'frequencies, converted from lande. Works on short texts; longer texts are more reliable.',
    license: 'MIT (lande, Copyright (c) Fabio Spampinato)',
    source: 'npm:lande@1.0.10 standalone/t50-options.js, converted by scripts/build-langid-model.ts',
    model: { path: 'model.onnx', sha256 },
    input: { name: 'features', maxBytes: 16384, vocabulary: { file: 'vocabulary.json' } },
    output: { name: 'probs', activation: 'none' },
    labels: { file: 'labels.txt' },
    topK: 3,
    batching: { maxBatchSize: 64, preferredBatchSizes: [], maxQueueDelayMs: 0, maxQueueSize: 1024 },
    runtime: { thread: 'event-loop' },
  };
  const text = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
  return {
    sha256,
    files: {
      'model.onnx': model,
      'labels.txt': text(langs.join('\n') + '\n'),
      'vocabulary.json': text(JSON.stringify({ groups }, null, 2) + '\n'),
      'manifest.json': text(JSON.stringify(manifest, null, 2) + '\n'),
    },
  };
}

/** The folder the script writes. */
export const langIdDir = path.resolve(import.meta.dirname, '../models/language-id');

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { files, sha256 } = await buildLangId();
  mkdirSync(langIdDir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) writeFileSync(path.join(langIdDir, name), bytes);
  console.log(`wrote ${langIdDir} (model.onnx ${files['model.onnx'].length} bytes, sha256 ${sha256})`);
}
