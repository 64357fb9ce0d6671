import { PassThrough } from 'node:stream';
import t from 'tap';
import { takeTurn } from '../../src/server/connection.js';
import { AdmissionBudget, BodyMeter, Holdings } from '../../src/server/memory-budget.js';

// Large bodies are read about 1 MiB at a time between turns of the event loop, so that forty large uploads arriving at once do not
// make turns of tens of milliseconds in which health probes and small requests wait (bench/results/hostile-load.md).
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

t.test('a large metered body is passed on over several turns of the event loop, whole and in order', async (t) => {
  await nextTurn();
  const budget = new AdmissionBudget(64 * MiB, 0, {
    tooLarge: () => new Error('too large'),
    busy: () => new Error('busy'),
  });
  const holdings = new Holdings(new PassThrough() as never);
  const source = new PassThrough({ highWaterMark: 64 * 1024 });
  const out = new BodyMeter(budget, holdings, 4 * MiB).stream(source);
  const chunks = Array.from({ length: 64 }, (_, i) => Buffer.alloc(64 * 1024, i)); // 4 MiB
  const received: Buffer[] = [];
  const perTurn: number[] = [0];
  out.on('data', (c: Buffer) => {
    received.push(c);
    perTurn[perTurn.length - 1] += c.length;
  });
  const ended = new Promise((resolve) => out.on('end', resolve));
  for (const c of chunks) source.write(c);
  source.end();
  let turns = 0;
  while (!out.readableEnded && turns++ < 1000) {
    await nextTurn();
    perTurn.push(0);
  }
  await ended;
  t.same(Buffer.concat(received), Buffer.concat(chunks), 'every byte, in order');
  // a waiting reader goes on in the check phase, with the next turn's allowance: from one poll phase to the next,
  // what is left of one allowance and the start of the next
  const most = Math.max(...perTurn);
  t.ok(most <= 2 * MiB + 64 * 1024, `at most about 2 MiB between two polls (${most})`);
  t.ok(perTurn.filter((n) => n > 0).length >= 2, 'over several turns');
});
