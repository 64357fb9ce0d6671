import t from 'tap';
import { OFF_LOOP_JSON_BYTES, OFF_LOOP_JSON_ELEMENTS } from '../../src/server/routes/v2.js';
import { startApp } from '../helpers/app.js';

// A v2 infer body whose JSON header is large is parsed and decoded on a task worker, not the event loop: its answer
// is the same as the binary form's, its client errors keep their code across the thread, and tensors declaring more
// than the memory budget are refused from their shapes.
const ctx = await startApp();
t.teardown(() => ctx.close());
const { app } = ctx;

const dims = [1, 3, 48, 192];
const count = dims.reduce((a, b) => a * b, 1);
let seed = 11;
const values = Float32Array.from({ length: count }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1);
const infer = (payload: string | Buffer, headers: Record<string, string> = {}) =>
  app.inject({
    method: 'POST',
    url: '/v2/models/text-orientation/infer',
    headers: { 'content-type': 'application/json', ...headers },
    payload,
  });

t.test('a large JSON tensor is answered exactly as its binary form', async (t) => {
  const json = JSON.stringify({ inputs: [{ name: 'x', shape: dims, datatype: 'FP32', data: [...values] }] });
  t.ok(json.length >= OFF_LOOP_JSON_BYTES, `${json.length} bytes: decoded on a task worker`);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'x', shape: dims, datatype: 'FP32', parameters: { binary_data_size: count * 4 } }],
    }),
  );
  t.ok(header.length < OFF_LOOP_JSON_BYTES, 'the binary form is decoded on the event loop');
  const binary = Buffer.concat([header, Buffer.from(values.buffer)]);
  const [a, b] = await Promise.all([
    infer(json),
    infer(binary, {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(header.length),
    }),
  ]);
  t.equal(a.statusCode, 200, a.body);
  t.equal(b.statusCode, 200, b.body);
  t.same(a.json().outputs, b.json().outputs);
});

t.test('client errors in a large body keep their code across the thread', async (t) => {
  const data = new Array(count).fill(0);
  const twice = JSON.stringify({
    inputs: [{ name: 'x', shape: dims, datatype: 'FP32', data }],
    outputs: [{ name: 'softmax_0.tmp_0' }, { name: 'softmax_0.tmp_0' }],
  });
  const r1 = await infer(twice);
  t.equal(r1.statusCode, 400);
  t.match(r1.json(), { code: 'MUON_ERR_INVALID_TENSOR', error: /asked for twice/ });
  const short = JSON.stringify({ inputs: [{ name: 'x', shape: dims, datatype: 'FP32', data: data.slice(1) }] });
  const r2 = await infer(short);
  t.equal(r2.statusCode, 400);
  t.match(r2.json(), { code: 'MUON_ERR_INVALID_TENSOR' });
  const unknown = JSON.stringify({
    inputs: [{ name: 'x', shape: dims, datatype: 'FP32', data }],
    outputs: [{ name: 'nope' }],
  });
  t.equal((await infer(unknown)).statusCode, 400);
  for (const length of ['abc', '-1', String(10 ** 9)]) {
    const r = await infer(twice, { 'inference-header-content-length': length });
    t.equal(r.statusCode, 400, `Inference-Header-Content-Length: ${length}`);
  }
  const broken = Buffer.from(twice.slice(0, -10));
  const r3 = await infer(broken);
  t.equal(r3.statusCode, 400, 'JSON cut short');
});

t.test('tensors declaring more than the budget are refused from their shapes (413)', async (t) => {
  const huge = JSON.stringify({
    inputs: [{ name: 'x', shape: [1_000_000, 3, 48, 192], datatype: 'FP32', data: new Array(count).fill(0) }],
  });
  const r = await infer(huge);
  t.equal(r.statusCode, 413);
  t.match(r.json(), { code: 'MUON_ERR_OVER_MEMORY_BUDGET' });
  // an output the graph does not have is the first mistake, as in a small body
  const both = JSON.stringify({ ...JSON.parse(huge), outputs: [{ name: 'nope' }] });
  const r2 = await infer(both);
  t.equal(r2.statusCode, 400, 'an unknown output is refused before the size');
});

t.test('a large JSON answer is written off the event loop, equal to its binary form', async (t) => {
  // a recognizer's scores for a 320-pixel line: 40 steps x 6,625 classes, far past OFF_LOOP_JSON_ELEMENTS
  const line = [1, 3, 48, 320];
  const n = line.reduce((a, b) => a * b, 1);
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i / 7));
  const header = (binaryOutput: boolean) =>
    Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'x', shape: line, datatype: 'FP32', parameters: { binary_data_size: n * 4 } }],
        parameters: { binary_data_output: binaryOutput },
      }),
    );
  const send = (binaryOutput: boolean) =>
    app.inject({
      method: 'POST',
      url: '/v2/models/text-recognition/infer',
      headers: {
        'content-type': 'application/octet-stream',
        'inference-header-content-length': String(header(binaryOutput).length),
      },
      payload: Buffer.concat([header(binaryOutput), Buffer.from(x.buffer)]),
    });
  const [json, binary] = await Promise.all([send(false), send(true)]);
  t.equal(json.statusCode, 200, json.body.slice(0, 200));
  t.equal(binary.statusCode, 200);
  const [out] = json.json().outputs;
  t.ok(out.data.length >= OFF_LOOP_JSON_ELEMENTS, `${out.data.length} numbers: written on a task worker`);
  const head = Number(binary.headers['inference-header-content-length']);
  const raw = binary.rawPayload.subarray(head);
  const scores = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
  t.same(out.shape, JSON.parse(binary.rawPayload.subarray(0, head).toString()).outputs[0].shape);
  t.ok(
    out.data.every((v: number, i: number) => v === scores[i]),
    'every number is the binary answer’s',
  );
});
