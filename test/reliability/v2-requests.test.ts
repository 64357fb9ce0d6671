import t from 'tap';
import type { Test } from 'tap';
import { startApp } from '../helpers/app.js';

// The raw-tensor requests a review sent to crash or confuse the server (issue 11): each one gets a 400 with
// MUON_ERR_INVALID_TENSOR, and the model keeps serving.
const ctx = await startApp();
t.teardown(() => ctx.close());
const { app } = ctx;

const infer = (model: string, body: unknown) =>
  app.inject({
    method: 'POST',
    url: `/v2/models/${model}/infer`,
    headers: { 'content-type': 'application/json' },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
const zeros = (n: number) => new Array<number>(n).fill(0);
const line = { name: 'x', shape: [1, 3, 48, 320], datatype: 'FP32', data: zeros(3 * 48 * 320) };
const vad = (input: number[], state: number[], inputData?: number[]) => ({
  inputs: [
    { name: 'input', shape: input, datatype: 'FP32', data: inputData ?? zeros(input.reduce((a, b) => a * b, 1)) },
    { name: 'state', shape: state, datatype: 'FP32', data: zeros(state.reduce((a, b) => a * b, 1)) },
    { name: 'sr', shape: [], datatype: 'INT64', data: [16000] },
  ],
});

const refused = async (t: Test, res: Awaited<ReturnType<typeof infer>>, says: RegExp) => {
  t.equal(res.statusCode, 400, res.body.slice(0, 300));
  t.equal(res.json().code, 'MUON_ERR_INVALID_TENSOR');
  t.match(res.json().error, says);
};

t.test('one output named 60 times is refused before anything runs (it was a 358 MB answer and an OOM)', async (t) => {
  const name = 'softmax_11.tmp_0';
  const res = await infer('text-recognition', {
    inputs: [line],
    outputs: Array.from({ length: 60 }, () => ({ name })),
  });
  await refused(t, res, /output 'softmax_11.tmp_0' is asked for twice/);
  t.ok(res.body.length < 1000);
});

t.test('outputs named after Object.prototype members are unknown outputs', async (t) => {
  for (const name of ['__proto__', 'toString', 'constructor', 'hasOwnProperty']) {
    await refused(t, await infer('text-recognition', { inputs: [line], outputs: [{ name }] }), /unknown output/);
  }
});

t.test('data nested 10,000 deep', async (t) => {
  const deep = '['.repeat(10_000) + '0' + ']'.repeat(10_000);
  const body = `{"inputs":[{"name":"x","shape":[1,3,48,320],"datatype":"FP32","data":${deep}}]}`;
  await refused(t, await infer('text-recognition', body), /nested deeper than 64 levels/);
});

t.test('data nested 10,000 deep in a body parsed on a task worker (a JSON header of 32 KiB or more)', async (t) => {
  const deep = '['.repeat(10_000) + '0' + ']'.repeat(10_000);
  const body = `{"inputs":[{"name":"x","shape":[1,3,48,320],"datatype":"FP32","data":${deep}}],"pad":"${' '.repeat(40_000)}"}`;
  await refused(t, await infer('text-recognition', body), /nested deeper than 64 levels/);
});

t.test('data nested within the limit but deeper than its shape is refused by the tensor check', async (t) => {
  const deep = '['.repeat(10) + '0' + ']'.repeat(10);
  const body = `{"inputs":[{"name":"x","shape":[1,3,48,320],"datatype":"FP32","data":${deep}}]}`;
  await refused(t, await infer('text-recognition', body), /nested deeper than its 4 axes/);
  // as many lists as the shape, then one more level
  const deeper = `[${Array.from({ length: 3 }, () => `[${Array.from({ length: 48 }, () => `[${'[0],'.repeat(319)}[0]]`).join(',')}]`).join(',')}]`;
  await refused(
    t,
    await infer(
      'text-recognition',
      `{"inputs":[{"name":"x","shape":[1,3,48,320],"datatype":"FP32","data":[${deeper}]}]}`,
    ),
    /nested deeper than its 4 axes/,
  );
});

t.test('ragged nested data is refused, not re-flowed into the shape (the review requests)', async (t) => {
  const zeros = (n: number) => Array.from({ length: n }, () => 0);
  const features = (data: unknown) => ({ inputs: [{ name: 'features', shape: [2, 620], datatype: 'FP32', data }] });
  // rows of 619 and 621 values: 1,240 in all, as the shape holds
  await refused(
    t,
    await infer('language-id', features([zeros(619), zeros(621)])),
    /must follow its shape \[2, 620\] \(lists at depth 1\)/,
  );
  // one nested row and 620 loose values
  await refused(t, await infer('language-id', features([zeros(620), ...zeros(620)])), /must follow its shape/);
  // three rows for two
  await refused(t, await infer('language-id', features([zeros(620), zeros(620), []])), /\(lists at depth [01]\)/);
  // runs of flattened rows under the first axes, as Triton's clients may send them, are answered as the flat data
  const line = { name: 'x', shape: [1, 3, 48, 320], datatype: 'FP32' };
  const values = Array.from({ length: 3 * 48 * 320 }, (_, i) => Math.sin(i));
  const answers = await Promise.all(
    [values, [values], [[0, 1, 2].map((c) => values.slice(c * 48 * 320, (c + 1) * 48 * 320))]].map((data) =>
      infer('text-recognition', { inputs: [{ ...line, data }] }),
    ),
  );
  t.same(
    answers.map((a) => a.statusCode),
    [200, 200, 200],
  );
  t.same(answers[1].json().outputs, answers[0].json().outputs);
  t.same(answers[2].json().outputs, answers[0].json().outputs);
  // runs at two depths
  await refused(
    t,
    await infer('text-recognition', {
      inputs: [{ ...line, data: [[values.slice(0, 48 * 320), ...values.slice(48 * 320)]] }],
    }),
    /must follow its shape/,
  );
  // flat and nested as the shape says are both answered, the same
  const flat = await infer('language-id', features(zeros(1240)));
  const nested = await infer('language-id', features([zeros(620), zeros(620)]));
  t.equal(flat.statusCode, 200);
  t.same(flat.json().outputs, nested.json().outputs);
});

t.test('nested data as deep as the shape is still accepted, and more values than the shape are refused', async (t) => {
  const nested = [[Array.from({ length: 48 }, () => zeros(320)), Array.from({ length: 48 }, () => zeros(320))]];
  nested[0].push(Array.from({ length: 48 }, () => zeros(320)));
  const ok = await infer('text-recognition', { inputs: [{ ...line, data: nested }] });
  t.equal(ok.statusCode, 200, ok.body.slice(0, 200));
  await refused(
    t,
    await infer('text-recognition', { inputs: [{ ...line, data: zeros(3 * 48 * 320 + 1) }] }),
    /more values/,
  );
});

t.test('non-finite features: refused in JSON (1e39 is Infinity in FP32) and in binary data', async (t) => {
  const features = zeros(620);
  features[7] = 1e39;
  const json = { inputs: [{ name: 'features', shape: [1, 620], datatype: 'FP32', data: features }] };
  await refused(
    t,
    await infer('language-id', json),
    /value 7 \(1e\+39\) is not a number \(finite, within float32 range\)/,
  );

  const data = new Float32Array(620);
  data[3] = Infinity;
  data[5] = NaN;
  const head = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'features', shape: [1, 620], datatype: 'FP32', parameters: { binary_data_size: 2480 } }],
    }),
  );
  const res = await app.inject({
    method: 'POST',
    url: '/v2/models/language-id/infer',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) },
    payload: Buffer.concat([head, Buffer.from(data.buffer)]),
  });
  await refused(t, res, /value 3 is not finite/);
});

t.test('shapes the graph cannot take are refused with a 400, not a 500', async (t) => {
  await refused(
    t,
    await infer('text-orientation', { inputs: [{ name: 'x', shape: [1, 3, 0, 0], datatype: 'FP32', data: [] }] }),
    /input 'x' is empty \(axis 2 has size 0\)/,
  );
  await refused(
    t,
    await infer('ocr', { inputs: [{ name: 'x', shape: [1, 3, 0, 0], datatype: 'FP32', data: [] }] }),
    /is empty/,
  );
  // checked by the runtime: the VAD pads its input by reflection, and its recurrent state must match the batch
  await refused(t, await infer('voice-activity', vad([1, 1], [2, 1, 128])), /model refused these inputs: Pad/);
  await refused(t, await infer('voice-activity', vad([1, 576], [2, 3, 128])), /model refused these inputs: LSTM/);
});

t.test('after all of them the models still answer correctly', async (t) => {
  const res = await infer('voice-activity', vad([1, 576], [2, 1, 128]));
  t.equal(res.statusCode, 200, res.body.slice(0, 200));
  t.same(
    res.json().outputs.map((o: { name: string }) => o.name),
    ['output', 'stateN'],
  );
  const rec = await infer('text-recognition', { inputs: [line], outputs: [{ name: 'softmax_11.tmp_0' }] });
  t.equal(rec.statusCode, 200);
  t.equal((await app.inject({ url: '/v2/health/ready' })).statusCode, 200);
});

t.test(
  'a shape whose product overflows before an empty axis is a tensor error, not "NaN MiB" (the review request)',
  async (t) => {
    const shape = [...Array.from({ length: 20 }, () => 9007199254740991), 0];
    const res = await infer('language-id', { inputs: [{ name: 'features', shape, datatype: 'FP32', data: [] }] });
    await refused(t, res, /has shape \[-1, 620\]/);
    t.notMatch(res.body, /NaN/);
  },
);
