import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { multipart, startApp } from '../helpers/app.js';
import { buildColorClassifier, COLOR_LABELS } from '../helpers/color-classifier.js';

// Bring your own model: a folder with model.onnx + manifest.json, no code. The classifier is a real ONNX graph
// written by our own ONNX writer (GlobalAveragePool -> Gemm -> Softmax over red/green/blue), run by onnxruntime.

const repo = mkdtempSync(path.join(tmpdir(), 'muon-byo-'));
t.teardown(() => rmSync(repo, { recursive: true, force: true }));

function addModel(
  name: string,
  manifest: Record<string, unknown>,
  model: Uint8Array,
  files: Record<string, string> = {},
) {
  const dir = path.join(repo, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'model.onnx'), model);
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  for (const [f, text] of Object.entries(files)) writeFileSync(path.join(dir, f), text);
}

const nchw = buildColorClassifier();
const nhwc = buildColorClassifier({ layout: 'NHWC' });
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const base = {
  task: 'image-classification',
  input: { height: 32, width: 32, resize: 'center-crop', scale: 1 / 255 },
  topK: 3,
};
addModel('colors', { ...base, version: '7', model: { sha256: sha(nchw) }, labels: { file: 'labels.txt' } }, nchw, {
  'labels.txt': COLOR_LABELS.join('\n') + '\n',
});
const compression = {
  method: 'int8-static',
  sourceSha256: 'a'.repeat(64),
  tool: 'muon-compress 0.1.0',
  options: { calibration: 'minmax' },
  sizeBytes: { before: 4000, after: 1000 },
  fidelity: { metric: 'top1-agreement', value: 0.99, samples: 100 },
};
addModel(
  'colors-nhwc',
  {
    ...base,
    input: { ...base.input, layout: 'NHWC', resize: 'letterbox' },
    labels: [...COLOR_LABELS],
    batching: { maxBatchSize: 4 },
    compression,
  },
  nhwc,
);
addModel('colors-fixed', { ...base, labels: [...COLOR_LABELS] }, buildColorClassifier({ batch: 1 }));
// deliberately broken folders: each must fail alone with an error naming the bad field
addModel('bad-sha', { ...base, model: { sha256: '0'.repeat(64) }, labels: [...COLOR_LABELS] }, nchw);
addModel('bad-labels', { ...base, labels: ['red', 'green'] }, nchw);
addModel('bad-field', { ...base, labels: [...COLOR_LABELS], inputs: {} }, nchw);
addModel('bad-shape', { ...base, input: { ...base.input, height: 64 }, labels: [...COLOR_LABELS] }, nchw);
addModel('bad-escape', { ...base, model: { path: '../colors/model.onnx' }, labels: [...COLOR_LABELS] }, nchw);

const ctx = await startApp({ MUON_MODEL_REPOSITORY: repo, MUON_DEFAULT_MODEL: 'colors' });
t.teardown(() => ctx.close());

const solid = (background: string, width = 120, height = 80) =>
  sharp({ create: { width, height, channels: 3, background } })
    .jpeg()
    .toBuffer();

t.test('a user model classifies real encoded images, NCHW and NHWC', async (t) => {
  for (const [color, bg] of [
    ['red', '#e01010'],
    ['green', '#10c020'],
    ['blue', '#1030e0'],
  ] as const) {
    const img = await solid(bg);
    for (const name of ['colors', 'colors-nhwc']) {
      const res = await ctx.app.inject({
        method: 'POST',
        url: `/v1/models/${name}/predict`,
        ...multipart([{ name: 'file', filename: 'x.jpg', data: img }]),
      });
      t.equal(res.statusCode, 200, res.body);
      const body = res.json();
      t.equal(body.predictions[0].label, color, `${name}: ${color}`);
      t.equal(body.predictions.length, 3);
    }
  }
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/predict',
    headers: { 'content-type': 'image/webp' },
    payload: await sharp(await solid('#1030e0'))
      .webp()
      .toBuffer(),
  });
  t.match(
    res.json(),
    { model: 'colors', version: '7', predictions: [{ label: 'blue' }] },
    'WebP, default model from MUON_DEFAULT_MODEL',
  );
});

t.test('a fixed manifest batch limit and labels from a file show in /v1/models', async (t) => {
  const models = (await ctx.app.inject({ url: '/v1/models' })).json().models as {
    name: string;
    state: string;
    labels?: number;
    batching?: { max_batch_size: number };
  }[];
  const byName = Object.fromEntries(models.map((m) => [m.name, m]));
  t.equal(byName.colors.labels, 3);
  t.equal(byName['colors-nhwc'].batching?.max_batch_size, 4);
  t.same(
    (byName['colors-nhwc'] as { compression?: unknown }).compression,
    compression,
    'compression record from the manifest',
  );
  t.equal((byName.colors as { compression?: unknown }).compression, null);
});

t.test('a graph with a fixed batch axis of 1 is never stacked, and concurrent requests are all answered', async (t) => {
  const desc = (await ctx.app.inject({ url: '/v1/models/colors-fixed' })).json();
  t.match(desc.batching, { max_batch_size: 1, fixed_batch: true });
  t.same(desc.input.shape, [1, 3, 32, 32]);
  const colors = ['#e01010', '#10c020', '#1030e0'];
  const images = await Promise.all(colors.map((c) => solid(c)));
  const answers = await Promise.all(
    Array.from({ length: 12 }, (_, i) =>
      ctx.app.inject({
        method: 'POST',
        url: '/v1/models/colors-fixed/predict',
        headers: { 'content-type': 'image/jpeg' },
        payload: images[i % 3],
      }),
    ),
  );
  t.same(
    answers.map((r) => r.json().predictions[0].label),
    Array.from({ length: 12 }, (_, i) => COLOR_LABELS[i % 3]),
  );
});

t.test('each broken folder fails alone with an error naming the problem', async (t) => {
  const errors = Object.fromEntries(ctx.failures.map((f) => [f.name, f.error]));
  t.same(Object.keys(errors).sort(), ['bad-escape', 'bad-field', 'bad-labels', 'bad-sha', 'bad-shape']);
  t.match(errors['bad-sha'], /\/model\/sha256 is 0+ but .* has [0-9a-f]{64}/);
  t.match(errors['bad-labels'], /\/labels has 2 entries but output 'probs' has 3 classes/);
  t.match(errors['bad-field'], /additional properties.*inputs/);
  t.match(errors['bad-shape'], /input 'pixel_values' has shape \[batch, 3, 32, 32\]/);
  t.match(errors['bad-escape'], /\/model '..\/colors\/model.onnx' points outside the model folder/);
  for (const e of Object.values(errors)) t.match(e, /manifest\.json/, 'names the manifest file');
});
