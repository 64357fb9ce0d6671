import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { ImageTensor } from '../../src/preprocess/image.js';
import { metricValue, startApp } from '../helpers/app.js';

// The Open Inference Protocol (KServe v2) REST API against real models: metadata, readiness, infer with JSON and
// with Triton's binary tensor data extension, the errors the spec asks for, and batching with /predict's batcher.
const ctx = await startApp();
t.teardown(() => ctx.close());
const { app, repository, metrics } = ctx;
const line = readFileSync(path.resolve(import.meta.dirname, '../fixtures/text-lines/line-03.png'));

/** The text-orientation tensor of a real text line, exactly as /predict preprocesses it. */
const prepared = (await repository.readyModel('text-orientation').pipeline.prepare({ kind: 'image', bytes: line }))
  .row as ImageTensor;
const x = { name: 'x', shape: [1, ...prepared.dims], datatype: 'FP32', data: [...prepared.data] };
const infer = (payload: object, model = 'text-orientation') =>
  app.inject({ method: 'POST', url: `/v2/models/${model}/infer`, payload });

t.test('server and model metadata, readiness', async (t) => {
  t.match((await app.inject({ url: '/v2' })).json(), {
    name: 'muon-serve',
    version: String,
    extensions: ['binary_tensor_data'],
  });
  const meta = (await app.inject({ url: '/v2/models/voice-activity' })).json();
  t.same(meta, {
    name: 'voice-activity',
    versions: ['6'],
    platform: 'onnxruntime_onnx',
    inputs: [
      { name: 'input', datatype: 'FP32', shape: [-1, -1] },
      { name: 'state', datatype: 'FP32', shape: [2, -1, 128] },
      { name: 'sr', datatype: 'INT64', shape: [] },
    ],
    outputs: [
      { name: 'output', datatype: 'FP32', shape: [-1, 1] },
      // the compressed graph lost the fixed dims of its state output (the fp32 original has [2, -1, 128])
      { name: 'stateN', datatype: 'FP32', shape: [-1, -1, -1] },
    ],
  });
  t.same((await app.inject({ url: '/v2/models/voice-activity/versions/6' })).json(), meta);
  t.equal((await app.inject({ url: '/v2/models/voice-activity/ready' })).statusCode, 200);
  t.equal((await app.inject({ url: '/v2/models/voice-activity/versions/6/ready' })).statusCode, 200);
  const noVersion = await app.inject({ url: '/v2/models/voice-activity/versions/5/ready' });
  t.equal(noVersion.statusCode, 404);
  t.same(noVersion.json(), {
    error: "Model 'voice-activity' has no version '5'",
    code: 'MUON_ERR_VERSION_NOT_FOUND',
  });
  const unknown = await app.inject({ url: '/v2/models/nope' });
  t.equal(unknown.statusCode, 404);
  t.match(unknown.json(), { error: String, code: 'MUON_ERR_MODEL_NOT_FOUND' });
});

t.test('infer with JSON tensors gives the scores /predict gives for the same image', async (t) => {
  const res = await infer({ id: 'req-1', inputs: [x] });
  t.equal(res.statusCode, 200);
  const body = res.json();
  t.match(body, { model_name: 'text-orientation', model_version: '2.0', id: 'req-1' });
  t.same(
    body.outputs.map((o: { name: string; shape: number[]; datatype: string }) => [o.name, o.datatype, o.shape]),
    [['softmax_0.tmp_0', 'FP32', [1, 2]]],
  );
  const predict = await app.inject({
    method: 'POST',
    url: '/predict?model=text-orientation',
    headers: { 'content-type': 'image/png' },
    payload: line,
  });
  const upright = predict.json().predictions.find((p: { label: string }) => p.label === '0').score;
  t.ok(Math.abs(body.outputs[0].data[0] - upright) < 1e-6, 'same upright score');
  // nested data is accepted as well as flat
  const nested = await infer({
    inputs: [
      {
        ...x,
        data: [
          Array.from({ length: 3 }, (_, c) =>
            Array.from({ length: 48 }, (_, y) => x.data.slice((c * 48 + y) * 192, (c * 48 + y + 1) * 192)),
          ),
        ],
      },
    ],
  });
  t.same(nested.json().outputs, body.outputs);
});

t.test('binary tensor data in and out (Triton extension)', async (t) => {
  const bin = Buffer.from(Float32Array.from(x.data).buffer);
  const header = {
    inputs: [{ name: 'x', shape: x.shape, datatype: 'FP32', parameters: { binary_data_size: bin.length } }],
    outputs: [{ name: 'softmax_0.tmp_0', parameters: { binary_data: true } }],
  };
  const head = Buffer.from(JSON.stringify(header));
  const res = await app.inject({
    method: 'POST',
    url: '/v2/models/text-orientation/infer',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) },
    payload: Buffer.concat([head, bin]),
  });
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], 'application/octet-stream');
  const n = Number(res.headers['inference-header-content-length']);
  const json = JSON.parse(res.rawPayload.subarray(0, n).toString());
  t.same(json.outputs, [
    { name: 'softmax_0.tmp_0', datatype: 'FP32', shape: [1, 2], parameters: { binary_data_size: 8 } },
  ]);
  const raw = res.rawPayload.subarray(n);
  t.equal(raw.length, 8);
  const scores = new Float32Array(new Uint8Array(raw).buffer);
  const plain = (await infer({ inputs: [x] })).json().outputs[0].data;
  t.same([...scores], plain, 'binary output equals the JSON output');
  // a binary input with a JSON output, and INT64 data (the VAD's sample rate) through JSON
  const vad = await app.inject({
    method: 'POST',
    url: '/v2/models/voice-activity/infer',
    payload: {
      inputs: [
        { name: 'input', shape: [1, 576], datatype: 'FP32', data: new Array(576).fill(0) },
        { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: new Array(256).fill(0) },
        { name: 'sr', shape: [], datatype: 'INT64', data: [16000] },
      ],
      outputs: [{ name: 'output' }],
    },
  });
  t.equal(vad.statusCode, 200);
  t.match(vad.json().outputs, [{ name: 'output', datatype: 'FP32', shape: [1, 1], data: [Number] }]);
});

t.test('requests that do not match the graph are 400s with the spec error body', async (t) => {
  const cases: [object, RegExp][] = [
    [{ inputs: [{ ...x, datatype: 'INT64', data: x.data.map(() => 0) }] }, /input 'x' is float32, got int64/],
    [{ inputs: [{ ...x, datatype: 'INT64' }] }, /value 0 \(-0.0\d+\) is not an integer/],
    [{ inputs: [{ ...x, datatype: 'COMPLEX' }] }, /datatype COMPLEX is not supported/],
    [{ inputs: [{ ...x, shape: [1, 3, 48] }] }, /input 'x' has more values than its shape holds \(144\)/],
    [
      { inputs: [{ ...x, shape: [3, 48, 192], data: x.data }] },
      /input 'x' has shape \[-1, 3, -1, -1\], got \[3, 48, 192\]/,
    ],
    [{ inputs: [{ ...x, data: x.data.slice(1) }] }, /has 27647 values, its shape holds 27648/],
    [{ inputs: [{ ...x, data: ['a', ...x.data.slice(1)] }] }, /value 0 \("a"\) is not a number/],
    [{ inputs: [x, x] }, /input 'x' is given twice/],
    [{ inputs: [x, { ...x, name: 'y' }] }, /unexpected input 'y'/],
    [{ inputs: [{ ...x, name: 'y' }] }, /unexpected input 'y'/],
    [{ inputs: [x], outputs: [{ name: 'nope' }] }, /unknown output 'nope'/],
    [
      { inputs: [{ ...x, data: undefined, parameters: { binary_data_size: 8 } }] },
      /binary_data_size 8 is not 27648 x 4 bytes/,
    ],
  ];
  for (const [payload, message] of cases) {
    const res = await infer(payload);
    t.equal(res.statusCode, 400, String(message));
    t.match(res.json(), { error: message, code: 'MUON_ERR_INVALID_TENSOR' });
  }
  const missing = await app.inject({
    method: 'POST',
    url: '/v2/models/voice-activity/infer',
    payload: { inputs: [{ name: 'input', shape: [1, 576], datatype: 'FP32', data: new Array(576).fill(0) }] },
  });
  t.match(missing.json(), { error: /missing input 'state'/, code: 'MUON_ERR_INVALID_TENSOR' });
  const notJson = await app.inject({
    method: 'POST',
    url: '/v2/models/text-orientation/infer',
    headers: { 'content-type': 'application/json' },
    payload: '{"inputs": [',
  });
  t.match(notJson.json(), { error: /not valid JSON/, code: 'MUON_ERR_BAD_REQUEST' });
  t.match((await infer({ inputs: [] })).json(), { code: 'MUON_ERR_BAD_REQUEST' });
  const empty = await app.inject({ method: 'POST', url: '/v2/models/text-orientation/infer' });
  t.match(empty.json(), { code: 'MUON_ERR_MISSING_INPUT' });
  const overrun = await app.inject({
    method: 'POST',
    url: '/v2/models/text-orientation/infer',
    headers: { 'inference-header-content-length': '99999999' },
    payload: JSON.stringify({ inputs: [x] }),
  });
  t.match(overrun.json(), { code: 'MUON_ERR_BAD_REQUEST', error: /Inference-Header-Content-Length 99999999/ });
  t.equal((await infer({ inputs: [x] })).statusCode, 200, 'the server keeps serving');
});

t.test('concurrent v2 requests share batches on the model batcher; answers unchanged', async (t) => {
  // binary tensor data: a small JSON header is decoded on the event loop, so the 16 requests reach the batcher
  // together (a large JSON one is decoded on a task worker, and they would arrive one by one as the workers finish)
  const bin = Buffer.from(Float32Array.from(x.data).buffer);
  const head = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'x', shape: x.shape, datatype: 'FP32', parameters: { binary_data_size: bin.length } }],
    }),
  );
  const inferBinary = () =>
    app.inject({
      method: 'POST',
      url: '/v2/models/text-orientation/infer',
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) },
      payload: Buffer.concat([head, bin]),
    });
  const alone = (await infer({ inputs: [x] })).json().outputs;
  t.same((await inferBinary()).json().outputs, alone, 'binary and JSON inputs give the same answer');
  const before = await metricValue(metrics, 'muon_batch_size_count', { model: 'text-orientation' });
  const items = await metricValue(metrics, 'muon_batch_size_sum', { model: 'text-orientation' });
  const all = await Promise.all(Array.from({ length: 16 }, inferBinary));
  for (const r of all) t.same(r.json().outputs, alone);
  const batches = (await metricValue(metrics, 'muon_batch_size_count', { model: 'text-orientation' })) - before;
  const rows = (await metricValue(metrics, 'muon_batch_size_sum', { model: 'text-orientation' })) - items;
  t.equal(rows, 16);
  t.ok(batches < 16, `16 requests in ${batches} batches`);
  t.ok(
    (await metricValue(metrics, 'muon_requests_total', { model: 'text-orientation', code: '200' })) >= 16,
    'counted in muon_requests_total',
  );
});
