import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { metricValue, startApp } from '../helpers/app.js';

// A client that hangs up while its request waits in the queue must not cost compute. Over a real socket (port 0):
// with a 60 s batching delay, a lone request sits in the queue; the client disconnects; the entry must leave the
// queue at once, counted as cancelled, and the model must never run it.

const root = path.resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(path.join(tmpdir(), 'muon-disconnect-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
cpSync(path.join(root, 'models/text-orientation'), path.join(dir, 'text-orientation'), { recursive: true });
const file = path.join(dir, 'text-orientation/manifest.json');
const manifest = JSON.parse(readFileSync(file, 'utf8'));
writeFileSync(file, JSON.stringify({ ...manifest, batching: { maxBatchSize: 8, maxQueueDelayMs: 60_000 } }));

const ctx = await startApp({ MUON_MODEL_REPOSITORY: dir, MUON_WARMUP: 'false' });
t.teardown(() => ctx.close());
await ctx.app.listen({ port: 0, host: '127.0.0.1' });
const { port } = ctx.app.server.address() as { port: number };
const model = ctx.repository.status('text-orientation');
if (model?.state !== 'READY') throw new Error('model not loaded');
const batcher = model.model.batcher;

t.test('a disconnected client is dropped from the queue before compute', async (t) => {
  const body = readFileSync(path.join(root, 'test/fixtures/text-lines/line-03.png'));
  const req = request({
    port,
    method: 'POST',
    path: '/predict',
    headers: { 'content-type': 'image/png', 'content-length': body.length },
  });
  req.on('error', () => {}); // the socket is destroyed on purpose
  req.end(body);
  for (let i = 0; i < 500 && batcher.depth === 0; i++) await sleep(10);
  t.equal(batcher.depth, 1, 'the request is waiting in the queue');
  req.destroy();
  for (let i = 0; i < 500 && batcher.depth === 1; i++) await sleep(10);
  t.equal(batcher.depth, 0, 'the queue is empty again');
  t.equal(
    await metricValue(ctx.metrics, 'muon_requests_dropped_total', { reason: 'cancelled' }),
    1,
    'counted as cancelled',
  );
  t.equal(await metricValue(ctx.metrics, 'muon_batch_size_count'), 0, 'no batch ever ran');
});

// The cancellation signal is the connection's (server/request-metrics.ts): a request on a reused keep-alive
// connection is cancelled when its client hangs up too, and the earlier requests leave no listener behind.
t.test('a request on a reused keep-alive connection is dropped when its client hangs up', async (t) => {
  const body = readFileSync(path.join(root, 'test/fixtures/text-lines/line-03.png'));
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const warnings: string[] = [];
  const onWarning = (w: Error) => {
    if (w.name === 'MaxListenersExceededWarning') warnings.push(w.message);
  };
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const send = (timeoutMs?: number) => {
    const req = request({
      agent,
      port,
      method: 'POST',
      path: `/predict${timeoutMs === undefined ? '' : `?timeout_ms=${timeoutMs}`}`,
      headers: { 'content-type': 'image/png', 'content-length': body.length },
    });
    const answered = new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
      });
      req.on('error', reject);
    });
    req.end(body);
    return { req, answered };
  };
  const before = await metricValue(ctx.metrics, 'muon_requests_dropped_total', { reason: 'cancelled' });
  // requests whose deadline passes in the queue are answered, and keep the connection
  for (let i = 0; i < 12; i++) {
    const { status, reused } = await send(200).answered;
    t.equal(status, 504, `request ${i} timed out in the queue`);
    if (i > 0) t.ok(reused, `request ${i} came on the same connection`);
  }
  const { req, answered } = send();
  answered.catch(() => {}); // the socket is destroyed on purpose
  for (let i = 0; i < 500 && batcher.depth === 0; i++) await sleep(10);
  t.equal(batcher.depth, 1, 'the last request is waiting in the queue');
  t.ok(req.reusedSocket, 'on the reused connection');
  req.destroy();
  for (let i = 0; i < 500 && batcher.depth === 1; i++) await sleep(10);
  t.equal(batcher.depth, 0, 'the queue is empty again');
  t.equal(
    await metricValue(ctx.metrics, 'muon_requests_dropped_total', { reason: 'cancelled' }),
    before + 1,
    'counted as cancelled',
  );
  t.same(warnings, [], 'no warning (no listener piled up on the connection)');
});

// Pipelined requests (sent one after another without waiting for the answers) reach their handlers at once, while
// the socket still belongs to the first response: none may be taken for a client that hung up.
t.test('pipelined requests on one connection all wait in the queue, and are answered in order', async (t) => {
  const body = readFileSync(path.join(root, 'test/fixtures/text-lines/line-03.png'));
  const head = (id: string) =>
    `POST /predict?timeout_ms=1500 HTTP/1.1\r\nhost: x\r\nx-request-id: ${id}\r\n` +
    `content-type: image/png\r\ncontent-length: ${body.length}\r\n\r\n`;
  const before = await metricValue(ctx.metrics, 'muon_requests_dropped_total', { reason: 'cancelled' });
  const socket = connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  let answers = '';
  socket.on('data', (d: Buffer) => (answers += d.toString('latin1')));
  socket.write(Buffer.concat([Buffer.from(head('first')), body, Buffer.from(head('second')), body]));
  for (let i = 0; i < 500 && batcher.depth < 2; i++) await sleep(10);
  t.equal(batcher.depth, 2, 'both wait in the queue');
  for (let i = 0; i < 500 && (answers.match(/HTTP\/1\.1 /g) ?? []).length < 2; i++) await sleep(10);
  t.same(
    [...answers.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]),
    ['504', '504'],
    'both answered when their deadline passed in the queue, none as cancelled',
  );
  t.same(
    [...answers.matchAll(/x-request-id: (\w+)/g)].map((m) => m[1]),
    ['first', 'second'],
    'in order',
  );
  t.equal(
    await metricValue(ctx.metrics, 'muon_requests_dropped_total', { reason: 'cancelled' }),
    before,
    'nothing counted as cancelled',
  );
});
