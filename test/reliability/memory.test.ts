import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import t from 'tap';
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { decodeWavSliced } from '../../src/preprocess/audio.js';
import { cgroupCpuLimit, cgroupLimit, Holdings, largeInputLane, MemoryBudget } from '../../src/server/memory-budget.js';
import { metricValue, startApp } from '../helpers/app.js';
import { wavFile } from '../helpers/wav.js';

// The memory budget: what requests hold (bodies, decoded pixels and samples, tensors, answers) is admitted against
// MUON_MEMORY_BUDGET_BYTES before the expensive step; what never fits is a 413, what does not fit now waits, then
// is a 429. The requests a review used to exhaust memory (issue 11) are each sent here.

t.test('MemoryBudget: what fits gets in, the rest waits briefly, then 429; past the whole budget 413', async (t) => {
  const outcomes: string[] = [];
  const budget = new MemoryBudget(100, 'MUON_MEMORY_BUDGET_BYTES', 50, { onOutcome: (o) => outcomes.push(o) });
  const a = await budget.acquire(60, 'a');
  t.equal(budget.used, 60);
  const b = budget.acquire(50, 'b'); // waits for a
  const c = await budget.acquire(10, 'c'); // fits: not held up behind b
  t.equal(budget.used, 70);
  const d = budget.acquire(45, 'd'); // waits too
  await t.rejects(budget.acquire(101, 'e'), { code: 'MUON_ERR_OVER_MEMORY_BUDGET', statusCode: 413 });
  a.release();
  a.release(); // idempotent
  const granted = await b;
  t.equal(budget.used, 60, 'b got in when a left; d still does not fit');
  const refused = await d.catch((e: unknown) => e);
  t.match(refused, { code: 'MUON_ERR_MEMORY_BUSY', statusCode: 429, retryAfterSeconds: 1 });
  t.match((refused as Error).message, /d needs about 0\.0 MiB; 0\.0 of 0\.0 MiB are held/);
  granted.release();
  c.release();
  t.equal(budget.used, 0);
  t.same(outcomes, ['admitted', 'admitted', 'refused_too_large', 'waited', 'refused_busy']);
});

t.test('the large-input lane: half the cores decode large inputs at once, the next waits, then 429', async (t) => {
  const lane = largeInputLane(4, 20);
  t.equal(lane.limit, 2);
  const first = await lane.acquire(1, 'a 6300 x 6300 page');
  const second = await lane.acquire(1, 'a 600 s recording');
  const refused = await lane.acquire(1, 'another page').catch((e: unknown) => e);
  t.match(refused, { code: 'MUON_ERR_LARGE_INPUTS_BUSY', statusCode: 429, retryAfterSeconds: 1 });
  t.match((refused as Error).message, /another page: 2 of 2 slots are taken/);
  first.release();
  const third = await lane.acquire(1, 'a third page');
  t.equal(lane.used, 2);
  second.release();
  third.release();
  t.equal(largeInputLane(1, 20).limit, 1, 'one core still has a lane');
});

t.test('what a request holds is given back once its answer is done with and its handler has returned', async (t) => {
  const budget = new MemoryBudget(100, 'MUON_MEMORY_BUDGET_BYTES', 50);
  // the client leaves while the handler still works: its memory is still held
  const response = new EventEmitter() as unknown as ServerResponse;
  const holdings = new Holdings(response);
  let finish!: () => void;
  const handler = holdings.during(async () => {
    holdings.add(await budget.acquire(60, 'a decode'));
    await new Promise<void>((r) => (finish = r));
  });
  await new Promise((r) => setImmediate(r));
  response.emit('close');
  t.equal(budget.used, 60, 'held while the handler works on');
  finish();
  await handler;
  t.equal(budget.used, 0, 'given back when it returns');
  // the handler returns first, the answer is sent after: held until then
  const sent = new EventEmitter() as unknown as ServerResponse;
  const second = new Holdings(sent);
  await second.during(async () => second.add(await budget.acquire(30, 'an answer')));
  t.equal(budget.used, 30);
  sent.emit('close');
  t.equal(budget.used, 0);
});

t.test('whenAnswered calls its function once, with its argument, when the answer is done with', async (t) => {
  const calls: string[] = [];
  const record = (who: string) => calls.push(who);
  const response = new EventEmitter() as unknown as ServerResponse;
  const holdings = new Holdings(response);
  holdings.whenAnswered(record, 'first');
  t.same(calls, [], 'not before');
  response.emit('close');
  response.emit('close');
  t.same(calls, ['first'], 'once, with its argument');
  t.ok(holdings.answered);
  // an answer already gone when the request starts: answered at once, nothing left to call
  const gone = Object.assign(new EventEmitter(), { destroyed: true }) as unknown as ServerResponse;
  const late = new Holdings(gone);
  late.whenAnswered(record, 'late');
  t.ok(late.answered);
  t.same(calls, ['first']);
});

t.test('a long decode stops when its client goes away', async (t) => {
  const long = wavFile({ tag: 1, channels: 1, sampleRate: 1000, bits: 8 }, Buffer.alloc(599_900, 128));
  const gone = new AbortController();
  const decoding = decodeWavSliced(long, 3600, gone.signal);
  gone.abort(new Error('the client went away'));
  await t.rejects(decoding, /the client went away/);
});

t.test('the default budget comes from the cgroup limit (v2, then v1), else RAM', async (t) => {
  const files = (m: Record<string, string>) => (f: string) => m[f];
  t.equal(cgroupLimit(files({ '/sys/fs/cgroup/memory.max': '2147483648' })), 2147483648);
  t.equal(cgroupLimit(files({ '/sys/fs/cgroup/memory.max': 'max' })), undefined);
  t.equal(cgroupLimit(files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '1073741824' })), 1073741824);
  t.equal(cgroupLimit(files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712' })), undefined);
  t.equal(cgroupLimit(files({})), undefined);
});

t.test("the CPU count follows the cgroup's quota (v2, then v1)", async (t) => {
  const files = (m: Record<string, string>) => (f: string) => m[f];
  t.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': '200000 100000' })), 2, 'cgroup v2: 2 CPUs');
  t.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': '150000 100000' })), 2, 'rounded up');
  t.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': 'max 100000' })), undefined, 'no quota');
  t.equal(
    cgroupCpuLimit(
      files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '400000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }),
    ),
    4,
    'cgroup v1',
  );
  t.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1' })), undefined, 'v1 without a quota');
  t.equal(cgroupCpuLimit(files({})), undefined);
});

const ctx = await startApp({ MUON_MEMORY_BUDGET_BYTES: String(160 * 2 ** 20), MUON_MEMORY_WAIT_MS: '200' });
t.teardown(() => ctx.close());
const { app, metrics } = ctx;
const used = () => metricValue(metrics, 'muon_memory_budget_bytes', { kind: 'used' });

t.test('the budget is in /metrics and /v2, and nothing is held between requests', async (t) => {
  t.equal(await metricValue(metrics, 'muon_memory_budget_bytes', { kind: 'limit' }), 160 * 2 ** 20);
  t.match((await app.inject({ url: '/v2' })).json(), {
    memory_budget: { limit_bytes: 160 * 2 ** 20, source: 'MUON_MEMORY_BUDGET_BYTES' },
  });
  const res = await app.inject({
    method: 'POST',
    url: '/predict?model=text-orientation',
    headers: { 'content-type': 'image/png' },
    payload: readFileSync(new URL('../fixtures/text-lines/line-03.png', import.meta.url)),
  });
  t.equal(res.statusCode, 200);
  t.equal(await used(), 0);
});

t.test('a 600 s WAV at 1 kHz, 8-bit (600 KB) needing 77 MB decoded fits; past the budget it is a 413', async (t) => {
  const long = wavFile({ tag: 1, channels: 1, sampleRate: 1000, bits: 8 }, Buffer.alloc(599_900, 128));
  const res = await app.inject({
    method: 'POST',
    url: '/predict?model=voice-activity',
    headers: { 'content-type': 'audio/wav' },
    payload: long,
  });
  t.equal(res.statusCode, 200, res.body.slice(0, 200));
  t.same(res.json().segments, []);
  const small = await startApp({ MUON_MEMORY_BUDGET_BYTES: String(32 * 2 ** 20) });
  t.teardown(() => small.close());
  const refused = await small.app.inject({
    method: 'POST',
    url: '/predict?model=voice-activity',
    headers: { 'content-type': 'audio/wav' },
    payload: long,
  });
  t.equal(refused.statusCode, 413);
  t.equal(refused.json().code, 'MUON_ERR_OVER_MEMORY_BUDGET');
  t.match(
    refused.json().message,
    /this audio input needs about 7\d\.\d MiB, more than the server's whole memory budget of 32\.0 MiB/,
  );
});

t.test('liveness is answered while long recordings decode (they yield to the event loop)', async (t) => {
  const long = wavFile({ tag: 1, channels: 1, sampleRate: 1000, bits: 8 }, Buffer.alloc(599_900, 128));
  const order: string[] = [];
  const vad = Array.from({ length: 2 }, () =>
    app
      .inject({
        method: 'POST',
        url: '/predict?model=voice-activity',
        headers: { 'content-type': 'audio/wav' },
        payload: long,
      })
      .then((r) => order.push(`vad ${r.statusCode}`)),
  );
  await new Promise((r) => setImmediate(r));
  const live = app.inject({ url: '/v2/health/live' }).then((r) => order.push(`live ${r.statusCode}`));
  await Promise.all([...vad, live]);
  t.equal(order[0], 'live 200', order.join(', '));
  t.equal(await used(), 0);
});

t.test(
  '12 pages of 6300x6300 (131 KB PNGs): each held shrunk, admitted in turn through the large-input lane, no 5xx',
  async (t) => {
    const page = await sharp({ create: { width: 6300, height: 6300, channels: 3, background: '#f4f4f4' } })
      .png({ compressionLevel: 9 })
      .toBuffer();
    t.ok(page.length < 200_000, `${page.length} bytes`);
    const answers = await Promise.all(
      Array.from({ length: 12 }, () =>
        app.inject({
          method: 'POST',
          url: '/predict?model=ocr',
          headers: { 'content-type': 'image/png' },
          payload: page,
        }),
      ),
    );
    const codes = answers.map((r) => r.statusCode);
    t.ok(
      codes.every((c) => c === 200 || c === 429),
      codes.join(' '),
    );
    t.ok(codes.includes(200));
    // each page decodes 3072 x 3072 at most (36 MiB with the detector's tensors): a large input, one at a time on
    // this machine's lane (half its cores), the others wait briefly and are told when to come back
    for (const r of answers.filter((r) => r.statusCode === 429)) {
      t.match(r.json().code, /^MUON_ERR_(LARGE_INPUTS|MEMORY)_BUSY$/);
      t.equal(r.headers['retry-after'], '1');
    }
    const lane = await Promise.all(
      ['admitted', 'waited', 'refused_busy'].map((o) =>
        metricValue(metrics, 'muon_large_input_admissions_total', { outcome: o }),
      ),
    );
    t.ok(lane[1] + lane[2] > 0, `some waited or were refused: ${lane} (${codes})`);
    t.equal(await used(), 0);
  },
);

t.test('a page shrunk as it decodes answers boxes in the page as sent', async (t) => {
  const original = readFileSync(new URL('../fixtures/photos/page.png', import.meta.url));
  const { width } = await sharp(original).metadata();
  const factor = 6000 / width!;
  const big = await sharp(original).resize(6000).png().toBuffer();
  const ask = (payload: Buffer) =>
    app.inject({ method: 'POST', url: '/predict?model=ocr', headers: { 'content-type': 'image/png' }, payload });
  const [small, large] = [(await ask(original)).json().lines, (await ask(big)).json().lines];
  const first = small.find((l: { text: string }) => /Region-based/.test(l.text));
  const same = large.find((l: { text: string }) => /Region-based/.test(l.text));
  t.ok(first && same, 'the first line is read on both');
  for (let i = 0; i < 4; i++)
    for (let k = 0; k < 2; k++)
      t.ok(
        Math.abs(same.box[i][k] - first.box[i][k] * factor) < 8 * factor,
        `corner ${i}: ${same.box[i]} ~ ${first.box[i]} x ${factor.toFixed(2)}`,
      );
});

t.test('stalled uploads hold what they sent, not what they declared', async (t) => {
  const small = await startApp({ MUON_MEMORY_BUDGET_BYTES: String(16 * 2 ** 20), MUON_MEMORY_WAIT_MS: '200' });
  t.teardown(() => small.close());
  await small.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = small.app.server.address() as { port: number };
  const smallUsed = () => metricValue(small.metrics, 'muon_memory_budget_bytes', { kind: 'used' });
  // 10 connections declare 8 MiB bodies (80 MiB, five times the budget) and send 100 KB of them
  const sockets = await Promise.all(
    Array.from(
      { length: 10 },
      () =>
        new Promise<ReturnType<typeof connect>>((resolve) => {
          const s = connect(port, '127.0.0.1', () => {
            s.write(
              `POST /predict?model=text-orientation HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: ${8 * 2 ** 20}\r\n\r\n`,
            );
            s.write(Buffer.alloc(100_000));
            resolve(s);
          });
          s.on('error', () => {});
        }),
    ),
  );
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  while ((await smallUsed()) < 10 * 2 ** 20) await new Promise((r) => setTimeout(r, 20));
  t.equal(await smallUsed(), 10 * 2 ** 20, 'one 1 MiB step each');
  const res = await fetch(`http://127.0.0.1:${port}/predict?model=text-orientation`, {
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body: readFileSync(new URL('../fixtures/text-lines/line-03.png', import.meta.url)),
  });
  t.equal(res.status, 200, 'an ordinary request still fits');
  sockets.forEach((s) => s.destroy());
  while ((await smallUsed()) > 0) await new Promise((r) => setTimeout(r, 20));
  t.pass('all given back when they are cut');
});

t.test('a client that leaves mid-decode: its memory is given back once its work has stopped', async (t) => {
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as { port: number };
  const long = wavFile({ tag: 1, channels: 1, sampleRate: 1000, bits: 8 }, Buffer.alloc(599_900, 128));
  const socket = connect(port, '127.0.0.1', () => {
    socket.write(
      `POST /predict?model=voice-activity HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: ${long.length}\r\n\r\n`,
    );
    socket.write(long);
  });
  socket.on('error', () => {});
  // the input's cost (decoded and resampled samples) is admitted in the handler, well above the body's 600 KB
  while ((await used()) < 4 * 2 ** 20) await new Promise((r) => setTimeout(r, 5));
  socket.destroy();
  while ((await used()) > 0) await new Promise((r) => setTimeout(r, 20));
  t.pass('given back');
  const ok = await app.inject({
    method: 'POST',
    url: '/predict?model=voice-activity',
    headers: { 'content-type': 'audio/wav' },
    payload: long,
  });
  t.equal(ok.statusCode, 200, 'the next one is served');
});
