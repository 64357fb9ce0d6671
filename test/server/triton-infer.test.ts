import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { deflateSync, gunzipSync, gzipSync, inflateSync } from 'node:zlib';
import t from 'tap';
import type { ImageTensor } from '../../src/preprocess/image.js';
import { startApp } from '../helpers/app.js';

// Triton's classification extension and HTTP compression of v2 infer bodies (tritonclient's class_count,
// request_compression_algorithm and response_compression_algorithm), against the real text-orientation model.
const MiB = 2 ** 20;
const ctx = await startApp({ MUON_MAX_BODY_BYTES: String(4 * MiB) });
t.teardown(() => ctx.close());
const { app, repository } = ctx;
const line = readFileSync(path.resolve(import.meta.dirname, '../fixtures/text-lines/line-03.png'));
const prepared = (await repository.readyModel('text-orientation').pipeline.prepare({ kind: 'image', bytes: line }))
  .row as ImageTensor;
const x = { name: 'x', shape: [1, ...prepared.dims], datatype: 'FP32', data: [...prepared.data] };
const OUT = 'softmax_0.tmp_0';
const url = '/v2/models/text-orientation/infer';
const infer = (payload: object) => app.inject({ method: 'POST', url, payload });
const scores: number[] = (await infer({ inputs: [x] })).json().outputs[0].data;

/** Triton's string of a class: C's `std::to_string(float)`, index, label. */
const cls = (i: number, label: string) => `${Math.fround(scores[i]).toFixed(6)}:${i}:${label}`;

t.test('classification: the N best classes as BYTES "score:index:label", JSON or binary', async (t) => {
  const best = scores[0] >= scores[1] ? 0 : 1;
  const labels = ['0', '180'];
  const res = await infer({ inputs: [x], outputs: [{ name: OUT, parameters: { classification: 2 } }] });
  t.equal(res.statusCode, 200, res.body);
  t.same(res.json().outputs, [
    {
      name: OUT,
      datatype: 'BYTES',
      shape: [1, 2],
      data: [cls(best, labels[best]), cls(1 - best, labels[1 - best])],
    },
  ]);
  const one = await infer({ inputs: [x], outputs: [{ name: OUT, parameters: { classification: 1 } }] });
  t.same(one.json().outputs[0].data, [cls(best, labels[best])]);
  // binary, as tritonclient asks by default (binary_data true): 4-byte little-endian length, then the bytes
  const bin = await infer({
    inputs: [x],
    outputs: [{ name: OUT, parameters: { classification: 1, binary_data: true } }],
  });
  t.equal(bin.statusCode, 200);
  const n = Number(bin.headers['inference-header-content-length']);
  const head = JSON.parse(bin.rawPayload.subarray(0, n).toString());
  const text = cls(best, labels[best]);
  t.same(head.outputs, [
    { name: OUT, datatype: 'BYTES', shape: [1, 1], parameters: { binary_data_size: 4 + text.length } },
  ]);
  const raw = bin.rawPayload.subarray(n);
  t.equal(raw.readUInt32LE(0), text.length);
  t.equal(raw.subarray(4).toString(), text);
  // a batch of two rows: [2, N]
  const two = await infer({
    inputs: [{ ...x, shape: [2, ...prepared.dims], data: [...x.data, ...x.data] }],
    outputs: [{ name: OUT, parameters: { classification: 1 } }],
  });
  t.same(two.json().outputs[0], { name: OUT, datatype: 'BYTES', shape: [2, 1], data: [text, text] });
});

t.test(
  'classification: a count that is not a positive integer is a 400; one over the classes gets them all',
  async (t) => {
    for (const classification of [0, -1, 1.5, '2', true, null, 1e20]) {
      const res = await infer({ inputs: [x], outputs: [{ name: OUT, parameters: { classification } }] });
      t.equal(res.statusCode, 400, JSON.stringify(classification));
      t.equal(res.json().code, 'MUON_ERR_BAD_REQUEST', JSON.stringify(classification));
      t.match(res.json().error, /"classification"/);
    }
    const over = await infer({ inputs: [x], outputs: [{ name: OUT, parameters: { classification: 3 } }] });
    t.equal(over.statusCode, 200);
    t.same(over.json().outputs[0].shape, [1, 2], 'both classes, as Triton clamps the count');
  },
);

/** A request whose body is sent compressed, with its Content-Encoding. */
const compressed = (body: Buffer, encoding: string, headers: Record<string, string> = {}) =>
  app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json', 'content-encoding': encoding, ...headers },
    payload: body,
  });
const json = Buffer.from(JSON.stringify({ inputs: [x] }));

t.test('request bodies in gzip or deflate (zlib) are inflated', async (t) => {
  for (const [encoding, body] of [
    ['gzip', gzipSync(json)],
    ['deflate', deflateSync(json)],
    ['GZIP', gzipSync(json)],
    ['identity', json],
  ] as const) {
    const res = await compressed(body, encoding);
    t.equal(res.statusCode, 200, `${encoding}: ${res.body}`);
    t.same(res.json().outputs[0].data, scores, encoding);
  }
  // binary tensor data: the header length counts the inflated JSON
  const data = Buffer.from(Float32Array.from(x.data).buffer);
  const head = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'x', shape: x.shape, datatype: 'FP32', parameters: { binary_data_size: data.length } }],
    }),
  );
  const res = await compressed(gzipSync(Buffer.concat([head, data])), 'gzip', {
    'content-type': 'application/octet-stream',
    'inference-header-content-length': String(head.length),
  });
  t.equal(res.statusCode, 200, res.body);
  t.same(res.json().outputs[0].data, scores);
});

t.test('an encoding other than gzip, deflate or identity is a 415', async (t) => {
  for (const encoding of ['br', 'compress', 'gzip, br', 'zstd']) {
    const res = await compressed(json, encoding);
    t.equal(res.statusCode, 415, encoding);
    t.same(res.json(), {
      error: `Unsupported media type: Content-Encoding '${encoding}' (send gzip, deflate or identity)`,
      code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
    });
  }
});

t.test('an empty body says so, whatever its encoding; a GET ignores the header', async (t) => {
  const empty = await compressed(Buffer.alloc(0), 'gzip');
  t.equal(empty.statusCode, 400);
  t.same(empty.json(), { error: 'No input: the request body is empty', code: 'MUON_ERR_MISSING_INPUT' });
  const get = await app.inject({ url: '/v2/models/text-orientation', headers: { 'content-encoding': 'br' } });
  t.equal(get.statusCode, 200);
  // a GET that sends a body anyway: the body is not decoded, whatever its encoding says
  const getWithBody = await app.inject({
    url: '/v2/models/text-orientation',
    headers: { 'content-encoding': 'br', 'content-type': 'application/octet-stream' },
    payload: Buffer.from('0123456789'),
  });
  t.equal(getWithBody.statusCode, 200);
  // an empty gzip stream inflates to nothing
  const nothing = await compressed(gzipSync(Buffer.alloc(0)), 'gzip');
  t.equal(nothing.json().code, 'MUON_ERR_MISSING_INPUT');
});

t.test('a corrupt or truncated compressed body is a 400', async (t) => {
  const corrupt = await compressed(Buffer.from('this is not gzip at all'), 'gzip');
  t.equal(corrupt.statusCode, 400);
  t.match(corrupt.json(), { code: 'MUON_ERR_BAD_REQUEST', error: /cannot be inflated/ });
  const zipped = gzipSync(json);
  const truncated = await compressed(zipped.subarray(0, zipped.length >> 1), 'gzip');
  t.equal(truncated.statusCode, 400);
  t.same(truncated.json(), { error: 'Bad request: the compressed body ends early', code: 'MUON_ERR_BAD_REQUEST' });
  const notDeflate = await compressed(zipped, 'deflate'); // gzip sent as deflate
  t.equal(notDeflate.statusCode, 400);
  t.equal(notDeflate.json().code, 'MUON_ERR_BAD_REQUEST');
});

t.test('a gzip bomb stops at the body limit: 413, without inflating it all', async (t) => {
  // 64 MiB of zeros in 64 KB: 16 times the 4 MiB body limit
  const bomb = gzipSync(Buffer.alloc(64 * MiB), { level: 9 });
  t.ok(bomb.length < 100_000);
  const res = await compressed(bomb, 'gzip');
  t.equal(res.statusCode, 413);
  t.same(res.json(), {
    error: `Request body is larger than MUON_MAX_BODY_BYTES (inflated) bytes`,
    code: 'MUON_ERR_BODY_TOO_LARGE',
  });
  // over a real socket too: the client reads the refusal, and the server still answers
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(
      {
        port,
        host: '127.0.0.1',
        method: 'POST',
        path: url,
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': bomb.length },
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(bomb);
  });
  t.equal(answer.status, 413);
  t.equal(JSON.parse(answer.body).code, 'MUON_ERR_BODY_TOO_LARGE');
  t.equal((await infer({ inputs: [x] })).statusCode, 200);
});

t.test('responses in gzip or deflate when Accept-Encoding asks, header length uncompressed', async (t) => {
  // the VAD's state output (256 floats) makes an answer worth compressing
  const vadUrl = '/v2/models/voice-activity/infer';
  const payload = {
    inputs: [
      { name: 'input', shape: [1, 576], datatype: 'FP32', data: new Array(576).fill(0.01) },
      { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: new Array(256).fill(0) },
      { name: 'sr', shape: [], datatype: 'INT64', data: [16000] },
    ],
  };
  const post = (headers: Record<string, string>, body: object = payload) =>
    app.inject({ method: 'POST', url: vadUrl, payload: body, headers });
  const plain = await post({});
  t.equal(plain.statusCode, 200, plain.body);
  t.equal(plain.headers['content-encoding'], undefined);
  t.ok(plain.rawPayload.length >= 1024, `${plain.rawPayload.length} bytes`);
  const gz = await post({ 'accept-encoding': 'gzip' });
  t.equal(gz.headers['content-encoding'], 'gzip');
  t.equal(gz.headers.vary, 'accept-encoding');
  t.same(JSON.parse(gunzipSync(gz.rawPayload).toString()), plain.json());
  const df = await post({ 'accept-encoding': 'deflate' });
  t.equal(df.headers['content-encoding'], 'deflate');
  t.same(JSON.parse(inflateSync(df.rawPayload).toString()), plain.json());
  // q=0 refuses an encoding; one we do not have gets the body as it is
  for (const accept of ['gzip;q=0', 'br', 'identity']) {
    const res = await post({ 'accept-encoding': accept });
    t.equal(res.headers['content-encoding'], undefined, accept);
    t.same(res.json(), plain.json(), accept);
  }
  // binary output: Inference-Header-Content-Length is the JSON header's length before compression (Triton's)
  const binary = { ...payload, parameters: { binary_data_output: true } };
  const raw = await post({}, binary);
  const bin = await post({ 'accept-encoding': 'gzip, deflate' }, binary);
  t.equal(bin.headers['content-encoding'], 'gzip');
  t.equal(bin.headers['inference-header-content-length'], raw.headers['inference-header-content-length']);
  t.same(gunzipSync(bin.rawPayload), raw.rawPayload);
  // an answer under 1 KiB goes as it is (identity is always acceptable; clients read Content-Encoding)
  const small = await app.inject({
    method: 'POST',
    url,
    payload: { inputs: [x] },
    headers: { 'accept-encoding': 'gzip' },
  });
  t.equal(small.headers['content-encoding'], undefined);
  t.same(small.json().outputs[0].data, scores);
});
