import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { packageRoot } from '../../src/config.js';
import { metricValue, startApp } from '../helpers/app.js';

// A client that stops reading its answer must not hold the memory its request was granted for ever: an adversarial
// review held 4.6 of 6 GiB for as long as its sockets stayed open (26 connections, each an 8 MB request whose 46 MB
// answer it never read), and every request with a body got 429 meanwhile. The socket is cut once it has been idle
// for MUON_UPLOAD_TIMEOUT_MS while the answer is being sent, and the grants come back.
const ctx = await startApp({ MUON_UPLOAD_TIMEOUT_MS: '1500' });
t.teardown(() => ctx.close());
await ctx.app.listen({ port: 0, host: '127.0.0.1' });
const { port } = ctx.app.server.address() as { port: number };
const used = () => metricValue(ctx.metrics, 'muon_memory_budget_bytes', { kind: 'used' });

/**
 * A v2 request to text-recognition over a line `width` pixels wide, binary tensors in and out, as the bytes of one
 * HTTP/1.1 request (its answer: 4 x width / 8 x 6,625 bytes of scores).
 */
function recognizerRequest(width: number): Buffer {
  const shape = [1, 3, 48, width];
  const n = shape.reduce((a, b) => a * b, 1);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'x', shape, datatype: 'FP32', parameters: { binary_data_size: 4 * n } }],
      parameters: { binary_data_output: true },
    }),
  );
  const body = Buffer.concat([header, Buffer.alloc(4 * n)]);
  return Buffer.concat([
    Buffer.from(
      `POST /v2/models/text-recognition/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n` +
        `inference-header-content-length: ${header.length}\r\ncontent-length: ${body.length}\r\n\r\n`,
    ),
    body,
  ]);
}

t.test('an answer its client stops reading is cut, and its memory given back', async (t) => {
  // text-recognition over a 14,000-pixel line, binary output: 40 MB of scores
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  let first = 0;
  const answering = new Promise<void>((resolve) =>
    socket.once('data', (chunk: Buffer) => {
      first = chunk.length;
      socket.pause(); // reads no more
      resolve();
    }),
  );
  socket.write(recognizerRequest(14_000));
  await answering;
  t.ok(first > 0, 'the answer began');
  t.ok((await used()) > 40e6, 'the answer holds its memory while it is sent');
  // (the paused client does not see the server close its end; the server's side is what is checked)
  for (let i = 0; i < 400 && (await used()) > 0; i++) await sleep(50);
  t.equal(await used(), 0, 'every grant is back: the server cut the connection');
  socket.destroy();
  // and the server answers others
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/predict?model=language-id',
    headers: { 'content-type': 'text/plain' },
    payload: 'bonjour tout le monde',
  });
  t.equal(res.statusCode, 200);
});

// The timer a large answer arms must not cut the next request of a pipelined connection while that one computes.
t.test('a pipelined request computing after a large answer is not cut', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'muon-pipelined-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const name of ['text-recognition', 'text-orientation'])
    cpSync(path.join(packageRoot, 'models', name), path.join(dir, name), { recursive: true });
  // a lone text-orientation request waits 2.5 s in the queue: longer than the timeout
  const file = path.join(dir, 'text-orientation/manifest.json');
  const manifest = JSON.parse(readFileSync(file, 'utf8'));
  writeFileSync(file, JSON.stringify({ ...manifest, batching: { maxBatchSize: 8, maxQueueDelayMs: 2500 } }));
  const served = await startApp({ MUON_MODEL_REPOSITORY: dir, MUON_UPLOAD_TIMEOUT_MS: '1000', MUON_WARMUP: 'false' });
  t.teardown(() => served.close());
  await served.app.listen({ port: 0, host: '127.0.0.1' });
  const png = readFileSync(path.join(packageRoot, 'test/fixtures/text-lines/line-03.png'));
  const socket = connect((served.app.server.address() as { port: number }).port, '127.0.0.1');
  let received = '';
  socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(
    Buffer.concat([
      recognizerRequest(2000),
      Buffer.from(
        `POST /predict?model=text-orientation HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\n` +
          `content-length: ${png.length}\r\n\r\n`,
      ),
      png,
    ]),
  );
  for (let i = 0; i < 200 && (received.match(/HTTP\/1\.1 /g) ?? []).length < 2; i++) await sleep(50);
  const statuses = [...received.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]);
  t.same(statuses, ['200', '200'], 'both answered on the one connection');
  t.match(received, /"task":"image-classification"/);
  socket.destroy();
  await closed;
});
