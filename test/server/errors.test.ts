import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { errorCodes } from '../../src/errors.js';
import { metricValue, multipart, startApp } from '../helpers/app.js';

// Every client-visible error: its status, its stable code, Fastify's error shape, no stack trace, and the server
// still serving afterwards.

const root = path.resolve(import.meta.dirname, '../..');
const fixture = (p: string) => readFileSync(path.join(root, 'test/fixtures', p));
const line = fixture('text-lines/line-03.png');

/** A copy of the default repository with the text-orientation manifest's batching replaced. */
function repositoryWith(batching: object, extra: Record<string, object> = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'muon-repo-'));
  cpSync(path.join(root, 'models/text-orientation'), path.join(dir, 'text-orientation'), { recursive: true });
  const file = path.join(dir, 'text-orientation/manifest.json');
  const manifest = JSON.parse(readFileSync(file, 'utf8'));
  writeFileSync(file, JSON.stringify({ ...manifest, batching: { ...manifest.batching, ...batching } }));
  for (const [name, m] of Object.entries(extra)) {
    cpSync(path.join(dir, 'text-orientation'), path.join(dir, name), { recursive: true });
    writeFileSync(path.join(dir, name, 'manifest.json'), JSON.stringify(m));
  }
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function expectError(t: Test, res: { statusCode: number; json(): any; body: string }, status: number, code: string) {
  t.equal(res.statusCode, status, `${code}: ${res.body}`);
  const body = res.json();
  t.equal(body.code, code);
  t.equal(body.statusCode, status);
  t.type(body.error, 'string');
  t.type(body.message, 'string');
  t.notMatch(res.body, /\bat .*\.(ts|js):\d+/, 'no stack trace');
}

const ctx = await startApp({ MUON_MAX_BODY_BYTES: String(200_000), MUON_MAX_IMAGE_PIXELS: String(1_000_000) });
t.teardown(() => ctx.close());
const { app } = ctx;
const raw = (payload: Buffer | string, type: string, url = '/predict') =>
  app.inject({ method: 'POST', url, headers: { 'content-type': type }, payload });

t.test('404: unknown model, unknown route', async (t) => {
  expectError(t, await raw(line, 'image/png', '/predict?model=nope'), 404, 'MUON_ERR_MODEL_NOT_FOUND');
  expectError(t, await raw(line, 'image/png', '/v1/models/nope/predict'), 404, 'MUON_ERR_MODEL_NOT_FOUND');
  expectError(t, await app.inject({ url: '/nowhere' }), 404, 'MUON_ERR_NOT_FOUND');
});

t.test('400: bad query parameters and bad model names', async (t) => {
  expectError(t, await raw(line, 'image/png', '/predict?top_k=0'), 400, 'MUON_ERR_BAD_REQUEST');
  expectError(t, await raw(line, 'image/png', '/predict?top_k=abc'), 400, 'MUON_ERR_BAD_REQUEST');
  expectError(t, await raw(line, 'image/png', '/predict?model=..%2Fetc'), 400, 'MUON_ERR_BAD_REQUEST');
  expectError(t, await raw(line, 'image/png', '/predict?unknown=1'), 400, 'MUON_ERR_BAD_REQUEST');
});

t.test('415: formats outside the allow-list, judged on the bytes', async (t) => {
  expectError(t, await raw(fixture('bad/tiny.svg'), 'image/svg+xml'), 415, 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE');
  expectError(t, await raw(fixture('bad/tiny.svg'), 'image/png'), 415, 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE');
  expectError(t, await raw(fixture('bad/image.gif'), 'image/gif'), 415, 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE');
  expectError(t, await raw(fixture('bad/image.tiff'), 'image/tiff'), 415, 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE');
  expectError(
    t,
    await raw(fixture('bad/not-an-image.txt'), 'application/octet-stream'),
    415,
    'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
  );
  expectError(t, await raw('hello', 'text/plain'), 415, 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE');
  // JSON is the text input's form: another shape is a bad request, a text to an image model is the wrong kind
  expectError(t, await raw('{"a":1}', 'application/json'), 400, 'MUON_ERR_BAD_REQUEST');
  expectError(t, await raw('{"text":"hello"}', 'application/json'), 415, 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE');
  expectError(t, await raw('x', 'application/x-whatever'), 415, 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE');
  const svgPart = multipart([{ name: 'file', filename: 'a.png', type: 'image/png', data: fixture('bad/tiny.svg') }]);
  expectError(
    t,
    await app.inject({ method: 'POST', url: '/predict', ...svgPart }),
    415,
    'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
  );
});

t.test('400: undecodable images, missing or extra input', async (t) => {
  expectError(t, await raw(fixture('bad/truncated.jpg'), 'image/jpeg'), 400, 'MUON_ERR_INVALID_IMAGE');
  const png = fixture('photos/page.png');
  expectError(t, await raw(png.subarray(0, png.length / 2), 'image/png'), 400, 'MUON_ERR_INVALID_IMAGE');
  expectError(t, await app.inject({ method: 'POST', url: '/predict' }), 400, 'MUON_ERR_MISSING_INPUT');
  expectError(t, await raw(Buffer.alloc(0), 'image/png'), 400, 'MUON_ERR_MISSING_INPUT');
  const noFile = multipart([{ name: 'note', data: 'hello' }]);
  expectError(t, await app.inject({ method: 'POST', url: '/predict', ...noFile }), 400, 'MUON_ERR_MISSING_INPUT');
  const two = multipart([
    { name: 'a', filename: 'a.png', type: 'image/png', data: line },
    { name: 'b', filename: 'b.png', type: 'image/png', data: line },
  ]);
  expectError(t, await app.inject({ method: 'POST', url: '/predict', ...two }), 400, 'MUON_ERR_BAD_REQUEST');
});

t.test("400: a malformed multipart body (cut off, no boundary) is the client's fault, not a 500", async (t) => {
  const whole = multipart([{ name: 'file', filename: 'a.png', type: 'image/png', data: line }]);
  const cut = whole.payload.subarray(0, whole.payload.length - 60);
  expectError(
    t,
    await app.inject({ method: 'POST', url: '/predict', headers: whole.headers, payload: cut }),
    400,
    'MUON_ERR_BAD_REQUEST',
  );
  const noBoundary = { 'content-type': 'multipart/form-data' };
  expectError(
    t,
    await app.inject({ method: 'POST', url: '/predict', headers: noBoundary, payload: whole.payload }),
    400,
    'MUON_ERR_BAD_REQUEST',
  );
});

t.test('413: body or file over MUON_MAX_BODY_BYTES', async (t) => {
  const big = Buffer.concat([fixture('photos/astronaut.jpg'), Buffer.alloc(200_000)]);
  expectError(t, await raw(big, 'image/jpeg'), 413, 'MUON_ERR_BODY_TOO_LARGE');
  const part = multipart([{ name: 'file', filename: 'big.jpg', type: 'image/jpeg', data: big }]);
  expectError(t, await app.inject({ method: 'POST', url: '/predict', ...part }), 413, 'MUON_ERR_BODY_TOO_LARGE');
});

t.test('422: image over MUON_MAX_IMAGE_PIXELS (checked from the header)', async (t) => {
  // a valid 2000x1000 PNG is 2 MP, over the 1 MP limit of this app; its header alone decides
  const sharp = (await import('sharp')).default;
  const wide = await sharp({ create: { width: 2000, height: 1000, channels: 3, background: '#fff' } })
    .png()
    .toBuffer();
  expectError(t, await raw(wide, 'image/png'), 422, 'MUON_ERR_IMAGE_DIMENSIONS');
});

t.test('the server still serves after every error above', async (t) => {
  const res = await raw(line, 'image/png');
  t.equal(res.statusCode, 200);
  t.equal((await app.inject({ url: '/v2/health/ready' })).statusCode, 200);
});

t.test('429s retried before their Retry-After are paced as client errors are; each is still sent', async (t) => {
  const c = await startApp({
    MUON_MODEL_REPOSITORY: repositoryWith({ maxBatchSize: 1, maxQueueSize: 2 }),
    MUON_CLIENT_ERROR_RATE: '1', // a burst of 2, then one refusal a second
  });
  t.teardown(() => c.close());
  const send = () =>
    c.app.inject({ method: 'POST', url: '/predict', headers: { 'content-type': 'image/png' }, payload: line });
  // a client that sends its next wave as soon as the last is answered, refused or not
  const answers = [];
  for (let wave = 0; wave < 4; wave++) answers.push(...(await Promise.all(Array.from({ length: 24 }, send))));
  t.same(new Set(answers.map((r) => r.statusCode)), new Set([200, 429]), 'every refusal is still sent');
  t.ok((await metricValue(c.metrics, 'muon_client_errors_paced_total')) > 0, 'and those past the burst were held');
});

t.test('429 with Retry-After when the queue is full; 504 when the deadline passes in the queue', async (t) => {
  const c = await startApp({ MUON_MODEL_REPOSITORY: repositoryWith({ maxBatchSize: 1, maxQueueSize: 2 }) });
  t.teardown(() => c.close());
  const send = (url: string) =>
    c.app.inject({ method: 'POST', url, headers: { 'content-type': 'image/png' }, payload: line });
  const answers = await Promise.all(Array.from({ length: 24 }, () => send('/predict')));
  const full = answers.filter((r) => r.statusCode === 429);
  t.ok(full.length > 0, `${full.length} of 24 refused`);
  t.ok(
    answers.some((r) => r.statusCode === 200),
    'admitted requests are answered',
  );
  t.same(new Set(answers.map((r) => r.statusCode)), new Set([200, 429]), 'nothing but 200 and 429');
  expectError(t, full[0], 429, 'MUON_ERR_QUEUE_FULL');
  t.match(full[0].headers['retry-after'], /^\d+$/);

  // one batch at a time, one item per batch: the later of these wait longer than 1 ms and expire unrun
  const timed = await Promise.all(Array.from({ length: 3 }, () => send('/predict?timeout_ms=1')));
  const late = timed.filter((r) => r.statusCode === 504);
  t.ok(late.length > 0, `${late.length} of 3 timed out`);
  expectError(t, late[0], 504, 'MUON_ERR_DEADLINE_EXCEEDED');
  t.ok((await metricValue(c.metrics, 'muon_requests_dropped_total', { reason: 'deadline' })) > 0, 'drops are counted');
  // the same deadline from the x-muon-timeout-ms header, for /predict and for v2 infer
  const byHeader = (url: string, payload: string | Buffer, type: string) =>
    c.app.inject({ method: 'POST', url, headers: { 'content-type': type, 'x-muon-timeout-ms': '1' }, payload });
  const viaHeader = await Promise.all(Array.from({ length: 3 }, () => byHeader('/predict', line, 'image/png')));
  t.ok(
    viaHeader.some((r) => r.statusCode === 504),
    'x-muon-timeout-ms sets the deadline',
  );
  const x = { name: 'x', shape: [1, 3, 48, 192], datatype: 'FP32', data: new Array(3 * 48 * 192).fill(0) };
  const v2 = await Promise.all(
    Array.from({ length: 3 }, () =>
      byHeader('/v2/models/text-orientation/infer', JSON.stringify({ inputs: [x] }), 'application/json'),
    ),
  );
  t.ok(
    v2.some((r) => r.statusCode === 504 && r.json().code === 'MUON_ERR_DEADLINE_EXCEEDED'),
    'and for v2 infer',
  );
  const bad = await c.app.inject({
    method: 'POST',
    url: '/predict',
    headers: { 'content-type': 'image/png', 'x-muon-timeout-ms': 'soon' },
    payload: line,
  });
  expectError(t, bad, 400, 'MUON_ERR_BAD_REQUEST');
  t.equal((await send('/predict')).statusCode, 200, 'still serving');
});

t.test('503: a model that failed to load; ready stays false and says why', async (t) => {
  const dir = repositoryWith(
    {},
    { broken: { task: 'image-classification', input: { height: 48, width: 192, layout: 'CHW' }, labels: ['a'] } },
  );
  const c = await startApp({ MUON_MODEL_REPOSITORY: dir });
  t.teardown(() => c.close());
  t.equal(c.failures.length, 1);
  t.match(c.failures[0].error, /\/input\/layout/, 'the error names the bad field');
  const ready = await c.app.inject({ url: '/v2/health/ready' });
  t.equal(ready.statusCode, 503);
  t.match(ready.json().models, [
    { name: 'broken', state: 'FAILED', reason: /layout/ },
    { name: 'text-orientation', state: 'READY' },
  ]);
  expectError(
    t,
    await c.app.inject({
      method: 'POST',
      url: '/predict?model=broken',
      headers: { 'content-type': 'image/png' },
      payload: line,
    }),
    503,
    'MUON_ERR_MODEL_NOT_READY',
  );
});

t.test('every error code is documented in the README error table', async (t) => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  for (const { code, statusCode } of errorCodes()) {
    t.match(readme, new RegExp(`\\| \`${code}\` \\| ${statusCode} \\|`), `${code} (${statusCode}) is in the README`);
  }
});
