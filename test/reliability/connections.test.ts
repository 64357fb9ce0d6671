import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { Metrics } from '../../src/metrics.js';
import { ModelRepository } from '../../src/models/repository.js';
import { buildApp } from '../../src/server/app.js';

// Requests that hold a connection: a multipart upload that stalls, a part with many header lines, a handler that
// does not answer. Every one is answered or closed in bounded time, and expected 5xx are not logged as faults.
const root = path.resolve(import.meta.dirname, '../..');
const repo = mkdtempSync(path.join(tmpdir(), 'muon-conn-'));
t.teardown(() => rmSync(repo, { recursive: true, force: true }));
cpSync(path.join(root, 'models/language-id'), path.join(repo, 'language-id'), { recursive: true });
cpSync(path.join(root, 'models/text-orientation'), path.join(repo, 'text-orientation'), { recursive: true });
// language-id waits 5 s for a batch to fill: longer than the 2 s watchdog below
const manifestFile = path.join(repo, 'language-id/manifest.json');
const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
writeFileSync(manifestFile, JSON.stringify({ ...manifest, batching: { ...manifest.batching, maxQueueDelayMs: 5000 } }));

const lines: Record<string, unknown>[] = [];
const logger = pino(
  { level: 'info' },
  new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  }),
);
const config = loadConfig({
  MUON_EXECUTION_PROVIDER: 'cpu',
  MUON_MODEL_REPOSITORY: repo,
  MUON_DEFAULT_MODEL: 'text-orientation',
  MUON_UPLOAD_TIMEOUT_MS: '1500',
  MUON_HANDLER_TIMEOUT_MS: '2000',
});
const metrics = new Metrics(false);
const repository = new ModelRepository(config, metrics, logger);
await repository.loadAll();
const app = buildApp({ config, metrics, repository, logger });
t.teardown(async () => {
  await app.close();
  await repository.close();
});
await app.listen({ host: '127.0.0.1', port: 0 });
const { port } = app.server.address() as { port: number };

/** Sends raw bytes on a fresh connection; resolves with what came back and when the connection closed. */
function raw(head: string, body: Buffer, waitMs = 8000): Promise<{ answer: string; closedAfterMs: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    let answer = '';
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(head);
      socket.write(body);
    });
    const give = setTimeout(() => socket.destroy(), waitMs);
    socket.on('data', (d) => {
      answer += d.toString();
      // an answer on a keep-alive connection: done
      if (/\r\n\r\n[\s\S]*\}$/.test(answer)) socket.end();
    });
    socket.on('close', () => {
      clearTimeout(give);
      resolve({ answer, closedAfterMs: performance.now() - started });
    });
    socket.on('error', () => {});
  });
}

const png = readFileSync(path.join(root, 'test/fixtures/text-lines/line-03.png'));
const boundary = 'muon-raw-boundary';
const multipartHead = (length: number) =>
  `POST /predict?model=text-orientation HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${length}\r\n\r\n`;

t.test('a multipart part with 64 or more header lines is answered', async (t) => {
  for (const n of [63, 64, 65, 200]) {
    const extra = Array.from({ length: n }, (_, i) => `X-Extra-${i}: ${i}\r\n`).join('');
    const body = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n${extra}\r\n`,
      ),
      png,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const { answer, closedAfterMs } = await raw(multipartHead(body.length), body);
    t.match(answer, /^HTTP\/1\.1 200 /, `${n} header lines: answered`);
    t.ok(closedAfterMs < 8000, `${n} header lines: in ${closedAfterMs.toFixed(0)} ms`);
  }
  // past the 64th line busboy drops a part's headers: a Content-Disposition there leaves the part without a name
  for (const n of [64, 65, 500]) {
    const extra = Array.from({ length: n }, (_, i) => `X-Extra-${i}: ${i}\r\n`).join('');
    const body = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\n${extra}Content-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n`,
      ),
      png,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const { answer } = await raw(multipartHead(body.length), body);
    t.match(answer, /^HTTP\/1\.1 400 /, `${n} lines before Content-Disposition: 400`);
    t.match(answer, /MUON_ERR_MISSING_INPUT.*among its first 64 header lines/, 'saying why');
  }
});

t.test('a multipart upload that stalls is cut at the upload timeout, not held for ever', async (t) => {
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n`),
    png.subarray(0, 100),
  ]);
  const { closedAfterMs } = await raw(multipartHead(body.length + 100_000), body, 20_000);
  t.ok(closedAfterMs >= 1000 && closedAfterMs < 10_000, `closed after ${closedAfterMs.toFixed(0)} ms`);
});

t.test('a request its handler does not answer in time gets a 503 from the watchdog', async (t) => {
  const body = Buffer.from('Bonjour tout le monde');
  const { answer } = await raw(
    `POST /predict?model=language-id HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n`,
    body,
  );
  t.match(answer, /^HTTP\/1\.1 503 /);
  t.match(answer, /"code":"MUON_ERR_HANDLER_TIMEOUT"/);
  t.ok(lines.some((l) => l.msg === 'request not answered in time' && l.level === 40));
});

t.test(
  'a GET whose handler never answers gets the same 503 (bodiless requests skip the holdings, not the watchdog)',
  async (t) => {
    const other = buildApp({ config, metrics: new Metrics(false), repository, logger });
    other.get('/hangs', () => new Promise(() => {}));
    t.teardown(() => other.close());
    const res = await other.inject({ method: 'GET', url: '/hangs' });
    t.equal(res.statusCode, 503);
    t.equal(res.json().code, 'MUON_ERR_HANDLER_TIMEOUT');
  },
);

t.test('expected 5xx (503, 504) are logged at info without a stack; 500s at error with one', async (t) => {
  lines.length = 0;
  await repository.unloadModel('language-id').catch(() => {});
  for (let i = 0; i < 3; i++) {
    const res = await app.inject({
      method: 'POST',
      url: '/predict?model=language-id',
      headers: { 'content-type': 'text/plain' },
      payload: 'Bonjour',
    });
    t.equal(res.statusCode, 503);
  }
  const refusals = lines.filter((l) => l.msg === 'request refused' && l.code === 'MUON_ERR_MODEL_NOT_READY');
  t.equal(refusals.length, 3);
  t.ok(refusals.every((l) => l.level === 30 && l.err === undefined));
  t.notOk(
    lines.some((l) => (l.level as number) >= 50),
    'nothing at error level',
  );
});
