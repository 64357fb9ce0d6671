import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { startApp } from '../helpers/app.js';

// Slow clients: uploads that trickle or stall are cut at MUON_UPLOAD_TIMEOUT_MS, and while they hang the server
// keeps answering everyone else (nothing is decoded or queued before a body is complete).
const root = path.resolve(import.meta.dirname, '../..');
const repo = mkdtempSync(path.join(tmpdir(), 'muon-slow-'));
t.teardown(() => rmSync(repo, { recursive: true, force: true }));
cpSync(path.join(root, 'models/language-id'), path.join(repo, 'language-id'), { recursive: true });
const ctx = await startApp({
  MUON_MODEL_REPOSITORY: repo,
  MUON_UPLOAD_TIMEOUT_MS: '1500',
  MUON_DEFAULT_MODEL: 'language-id',
});
t.teardown(() => ctx.close());
await ctx.app.listen({ host: '127.0.0.1', port: 0 });
const { port } = ctx.app.server.address() as { port: number };

t.test('stalled uploads are cut; other requests are served meanwhile', async (t) => {
  const started = performance.now();
  // 20 clients announce 1 MB and send 10 bytes, then stall
  const stalled = Array.from(
    { length: 20 },
    () =>
      new Promise<{ closedAfterMs: number; answer: string }>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.write(
            'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\nBonjour le',
          );
        });
        let answer = '';
        socket.on('data', (d) => (answer += d.toString()));
        socket.on('close', () => resolve({ closedAfterMs: performance.now() - started, answer }));
        socket.on('error', () => {});
      }),
  );
  const sentence = 'Das ist ein ganz normaler Satz.';
  for (let i = 0; i < 5; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: sentence,
    });
    t.equal(res.status, 200, 'served while 20 uploads stall');
    t.equal(((await res.json()) as { predictions: { label: string }[] }).predictions[0].label, 'deu');
  }
  const t0 = performance.now() - started;
  t.ok(t0 < 1500, `five answers in ${t0.toFixed(0)} ms, before the stalled uploads time out`);
  for (const s of await Promise.all(stalled)) {
    t.ok(
      s.closedAfterMs >= 1000 && s.closedAfterMs < 5000,
      `stalled upload closed after ${s.closedAfterMs.toFixed(0)} ms`,
    );
    t.match(s.answer, /^(HTTP\/1\.1 408|$)/, 'with 408 Request Timeout, or just closed');
  }
  // on a new connection: the five answers' keep-alive connection sat idle past MUON_UPLOAD_TIMEOUT_MS and the server
  // closed it (Node 24's fetch may still pick it from its pool and fail with "other side closed")
  const status = await new Promise<number | undefined>((resolve, reject) =>
    get({ host: '127.0.0.1', port, path: '/v2/health/ready', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode);
    }).on('error', reject),
  );
  t.equal(status, 200);
});

t.test('a connection that sends nothing, or stops between requests, is closed at the upload timeout', async (t) => {
  const closedAfter = (first: string) =>
    new Promise<{ ms: number; answer: string }>((resolve) => {
      const started = performance.now();
      let answer = '';
      const socket = connect(port, '127.0.0.1', () => {
        if (first !== '') socket.write(first);
      });
      socket.on('data', (d) => (answer += d.toString()));
      socket.on('close', () => resolve({ ms: performance.now() - started, answer }));
      socket.on('error', () => {});
    });
  const [silent, idle] = await Promise.all([
    closedAfter(''),
    closedAfter('GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n'),
  ]);
  t.ok(silent.ms >= 1000 && silent.ms < 5000, `a silent connection closed after ${silent.ms.toFixed(0)} ms`);
  t.equal(silent.answer, '');
  t.ok(idle.ms >= 1000 && idle.ms < 5000, `an idle keep-alive connection closed after ${idle.ms.toFixed(0)} ms`);
  t.match(idle.answer, /^HTTP\/1\.1 200/, 'after its answer');
});
