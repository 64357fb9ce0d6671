import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { attr, DataType, encodeModel, makeGraph, makeModel, node, tensor, valueInfo } from '../../src/onnx/model.js';
import { metricValue, startApp } from '../helpers/app.js';

// A model whose session.run throws on some inputs: y = table[max(x)], so any x above 9 is an index out of bounds
// at run time (onnxruntime refuses it). A batch holding one such request fails as a whole; it is retried request
// by request, so only the bad one gets a 500 (MUON_ERR_INFERENCE_FAILED) and its neighbours their answers.
const repo = mkdtempSync(path.join(tmpdir(), 'muon-faults-'));
t.teardown(() => rmSync(repo, { recursive: true, force: true }));
const dir = path.join(repo, 'fragile');
mkdirSync(dir);
const model = makeModel({
  opset: 13,
  graph: makeGraph({
    name: 'fragile',
    nodes: [
      node('ReduceMax', ['x'], ['m'], { axes: [1, 2, 3], keepdims: 0 }),
      node('Cast', ['m'], ['i'], { to: attr.int(DataType.INT64) }),
      node('Gather', ['table', 'i'], ['g']),
      node('Unsqueeze', ['g', 'axis'], ['y']),
    ],
    inputs: [valueInfo('x', DataType.FLOAT, ['n', 3, 2, 2])],
    outputs: [valueInfo('y', DataType.FLOAT, ['n', 1])],
    initializers: [
      tensor(
        'table',
        [10],
        Float32Array.from({ length: 10 }, (_, k) => k / 10),
      ),
      tensor('axis', [1], new BigInt64Array([1n])),
    ],
  }),
});
writeFileSync(path.join(dir, 'model.onnx'), encodeModel(model));
writeFileSync(
  path.join(dir, 'manifest.json'),
  JSON.stringify({
    task: 'image-classification',
    input: { name: 'x', height: 2, width: 2, resize: 'stretch', scale: 1, mean: [0, 0, 0], std: [1, 1, 1] },
    output: { name: 'y', activation: 'none' },
    labels: ['score'],
    batching: { maxBatchSize: 16, maxQueueDelayMs: 0 },
  }),
);
const ctx = await startApp({ MUON_MODEL_REPOSITORY: repo });
t.teardown(() => ctx.close());
const { app, metrics } = ctx;
const infer = (value: number) =>
  app.inject({
    method: 'POST',
    url: '/v2/models/fragile/infer',
    payload: { inputs: [{ name: 'x', shape: [1, 3, 2, 2], datatype: 'FP32', data: new Array(12).fill(value) }] },
  });

t.test('one bad request in a batch fails alone; its neighbours and the next batch succeed', async (t) => {
  t.same(ctx.failures, []);
  const before = await metricValue(metrics, 'muon_batch_size_count', { model: 'fragile' });
  const values = [1, 2, 3, 50, 4, 5, 6, 7];
  const answers = await Promise.all(values.map(infer));
  const batches = (await metricValue(metrics, 'muon_batch_size_count', { model: 'fragile' })) - before;
  t.ok(batches < values.length, `${values.length} requests in ${batches} batches: the bad one shared a batch`);
  answers.forEach((res, i) => {
    if (values[i] === 50) {
      // a raw request chose the index the graph refuses: the client's fault, named by the failing node
      t.equal(res.statusCode, 400, 'the bad request fails');
      t.equal(res.json().code, 'MUON_ERR_INVALID_TENSOR');
      t.match(res.json().error, /the model refused these inputs: Gather: indices element out of data bounds, idx=50/);
    } else {
      t.equal(res.statusCode, 200, `value ${values[i]} answered`);
      t.ok(Math.abs(res.json().outputs[0].data[0] - values[i] / 10) < 1e-6, `value ${values[i]}: its own answer`);
    }
  });
  const next = await infer(9);
  t.equal(next.statusCode, 200, 'the next batch succeeds');
  t.equal((await app.inject({ url: '/v2/health/ready' })).statusCode, 200);
});

t.test('the same through /predict: a bad image fails alone, the good ones in its batch are answered', async (t) => {
  const sharp = (await import('sharp')).default;
  // the model reads max(pixel) as a table index: a black image is index 0, a white one 255 (out of bounds)
  const image = (v: number) =>
    sharp({ create: { width: 2, height: 2, channels: 3, background: { r: v, g: v, b: v } } })
      .png()
      .toBuffer();
  const [black, white] = await Promise.all([image(0), image(255)]);
  const before = await metricValue(metrics, 'muon_batch_size_count', { model: 'fragile' });
  const bodies = [black, black, black, white, black, black, black, black];
  const answers = await Promise.all(
    bodies.map((payload) =>
      app.inject({ method: 'POST', url: '/predict?model=fragile', headers: { 'content-type': 'image/png' }, payload }),
    ),
  );
  const batches = (await metricValue(metrics, 'muon_batch_size_count', { model: 'fragile' })) - before;
  t.ok(batches < bodies.length, `${bodies.length} requests in ${batches} batches`);
  answers.forEach((res, i) => {
    if (bodies[i] === white) t.same([res.statusCode, res.json().code], [500, 'MUON_ERR_INFERENCE_FAILED']);
    else t.equal(res.statusCode, 200, `request ${i} answered`);
  });
  const again = await app.inject({
    method: 'POST',
    url: '/predict?model=fragile',
    headers: { 'content-type': 'image/png' },
    payload: black,
  });
  t.equal(again.statusCode, 200, 'the next batch succeeds');
});
