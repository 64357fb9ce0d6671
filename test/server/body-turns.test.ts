import { PassThrough } from 'node:stream';
import t, { type Test } from 'tap';
import { takeTurn } from '../../src/server/connection.js';
import { AdmissionBudget, BodyMeter, Holdings } from '../../src/server/memory-budget.js';

// Large bodies are read about 1 MiB at a time between turns of the event loop, so that forty large uploads arriving
// at once do not make turns of tens of milliseconds in which health probes and small requests wait
// (bench/results/hostile-load.md).
const MiB = 2 ** 20;
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

t.test('takeTurn: up to 1 MiB a turn goes on at once; past it, the reader waits for the next turn', async (t) => {
  await nextTurn(); // a fresh turn
  t.equal(takeTurn(MiB / 2), undefined);
  t.equal(takeTurn(MiB / 2), undefined, 'exactly 1 MiB still goes on');
  const wait = takeTurn(1);
  t.type(wait, Promise);
  let settled = false;
  void wait!.then(() => (settled = true));
  await Promise.resolve();
  t.notOk(settled, 'not settled by microtasks alone');
  t.type(takeTurn(64 * 1024), Promise, 'the turn is over for every reader');
  await nextTurn();
  t.ok(settled, 'settled once the event loop turned');
  t.equal(takeTurn(MiB), undefined, 'the next turn counts afresh');
});

/** Bodies of `chunks` chunks of 64 KiB, written at once through metered streams; bytes passed on per turn. */
async function readAtOnce(t: Test, readers: number, chunks: number): Promise<number[]> {
  await nextTurn();
  const budget = new AdmissionBudget(256 * MiB, 0, {
    tooLarge: () => new Error('too large'),
    busy: () => new Error('busy'),
  });
  const perTurn: number[] = [0];
  const bodies = Array.from({ length: readers }, (_, r) => {
    const source = new PassThrough({ highWaterMark: 64 * 1024 });
    const out = new BodyMeter(budget, new Holdings(new PassThrough() as never), chunks * 64 * 1024).stream(source);
    const sent = Array.from({ length: chunks }, (_, i) => Buffer.alloc(64 * 1024, (r * 31 + i) % 256));
    const received: Buffer[] = [];
    out.on('data', (c: Buffer) => {
      received.push(c);
      perTurn[perTurn.length - 1] += c.length;
    });
    const ended = new Promise((resolve) => out.on('end', resolve));
    for (const c of sent) source.write(c);
    source.end();
    return { out, sent, received, ended };
  });
  for (let turns = 0; bodies.some((b) => !b.out.readableEnded); turns++) {
    if (turns > 10_000) throw new Error('the bodies were not all passed on');
    await nextTurn();
    perTurn.push(0);
  }
  await Promise.all(bodies.map((b) => b.ended));
  for (const b of bodies) t.same(Buffer.concat(b.received), Buffer.concat(b.sent), 'every byte, in order');
  return perTurn.filter((n) => n > 0);
}

// A waiting reader goes on in the check phase, where these counts are cut too, so one count can hold what is left
// of one turn's allowance and the next turn's: 2 MiB and a chunk at most, however many bodies are being read.
const MOST = 2 * MiB + 64 * 1024;

t.test('a large metered body is passed on over several turns of the event loop, whole and in order', async (t) => {
  const turns = await readAtOnce(t, 1, 64); // 4 MiB
  t.ok(Math.max(...turns) <= MOST, `at most about 2 MiB a turn (${Math.max(...turns)})`);
  t.ok(turns.length >= 2, `over several turns (${turns.length})`);
});

t.test('forty bodies at once take turns: no more bytes a turn than for one', async (t) => {
  const turns = await readAtOnce(t, 40, 8); // 40 x 512 KiB
  t.ok(Math.max(...turns) <= MOST, `at most about 2 MiB a turn (${Math.max(...turns)})`);
  t.ok(turns.length >= 10, `over many turns (${turns.length})`);
});

t.test('a body charged at once takes turns when it is over 256 KiB; a smaller one is read as it is', async (t) => {
  const budget = new AdmissionBudget(64 * MiB, 0, {
    tooLarge: () => new Error('too large'),
    busy: () => new Error('busy'),
  });
  const meter = (declared: number) => {
    const payload = new PassThrough();
    return {
      payload,
      read: new BodyMeter(budget, new Holdings(new PassThrough() as never), declared).meter(payload, false),
    };
  };
  const small = meter(256 * 1024);
  t.equal(small.read, small.payload, '256 KiB: the request stream itself');
  const large = meter(512 * 1024);
  t.not(large.read, large.payload, '512 KiB: through a stream that takes turns');
  const body = Buffer.alloc(512 * 1024, 7);
  large.payload.end(body);
  const chunks: Buffer[] = [];
  for await (const c of large.read as PassThrough) chunks.push(c as Buffer);
  t.same(Buffer.concat(chunks), body, 'whole');
});
