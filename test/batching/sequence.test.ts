/**
 * Tests for the sequence scheduler (src/batching/sequence.ts) over the real Batcher with a fake runner and a fake
 * clock: each step of every active sequence shares one batch (Batcher.submitAll), each sequence's rows stay in
 * order with its own state, newcomers join at the next step, and a sequence that fails leaves without the others.
 */
import t from 'tap';
import { Batcher } from '../../src/batching/batcher.js';
import { SequenceScheduler } from '../../src/batching/sequence.js';
import { FakeClock } from '../helpers/fake-clock.js';

/** A row: which sequence, which frame, and the state so far (the sum of its frames). */
interface Row {
  readonly id: string;
  readonly frame: number;
  readonly state: number;
}

function setup(maxBatchSize = 16) {
  const clock = new FakeClock(0);
  const batches: Row[][] = [];
  const batcher = new Batcher<Row, number>(
    async (rows) => {
      batches.push(rows);
      if (rows.some((r) => r.id === 'boom' && r.frame === 2)) throw new Error('runner failed');
      return rows.map((r) => r.state + r.frame); // the new state
    },
    { maxBatchSize, preferredBatchSizes: [], maxQueueDelayMs: 0, maxQueueSize: 64, maxInFlightBatches: 1 },
    {},
    clock,
  );
  const scheduler = new SequenceScheduler<Row, number>((rows) =>
    batcher.submitAll(rows.map(({ row, opts }) => ({ input: row, opts }))),
  );
  /** Runs `frames` frames; resolves with the states seen after each frame. */
  const run = async (
    id: string,
    frames: number,
    opts: { deadline?: number; signal?: AbortSignal; onFrame?: (frame: number) => unknown } = {},
  ) => {
    const states: number[] = [];
    let frame = 0;
    await scheduler.run(
      (prev) => {
        if (prev !== undefined) states.push(prev);
        opts.onFrame?.(frame);
        if (frame === frames) return undefined;
        return { id, frame: ++frame, state: prev ?? 0 };
      },
      { deadline: opts.deadline ?? 1e9, signal: opts.signal },
    );
    return states;
  };
  return { batches, run, scheduler, clock };
}

t.test('concurrent sequences share each step, in order, each with its own state', async (t) => {
  const { batches, run, scheduler } = setup();
  const [a, b, c] = await Promise.all([run('a', 4), run('b', 2), run('c', 3)]);
  t.same(a, [1, 3, 6, 10], 'a: running sums of its own frames');
  t.same(b, [1, 3]);
  t.same(c, [1, 3, 6]);
  t.same(
    batches.map((rows) => rows.map((r) => `${r.id}${r.frame}`)),
    [['a1', 'b1', 'c1'], ['a2', 'b2', 'c2'], ['a3', 'c3'], ['a4']],
    'one batch per step, holding every active sequence',
  );
  t.equal(scheduler.active, 0);
  t.same(await run('none', 0), [], 'an empty sequence resolves at once');
});

t.test('a sequence arriving mid-step joins at the next step', async (t) => {
  const { batches, run } = setup();
  const first = run('a', 3);
  await Promise.resolve();
  const late = run('b', 2);
  t.same(await Promise.all([first, late]), [
    [1, 3, 6],
    [1, 3],
  ]);
  t.same(
    batches[0].map((r) => r.id),
    ['a'],
    'the first step had started',
  );
  t.ok(
    batches.slice(1).some((rows) => rows.length === 2),
    'then both share a batch',
  );
});

t.test('more sequences than maxBatchSize: a step is split, order is kept', async (t) => {
  const { batches, run } = setup(2);
  const states = await Promise.all(['a', 'b', 'c'].map((id) => run(id, 2)));
  t.same(states, [
    [1, 3],
    [1, 3],
    [1, 3],
  ]);
  t.ok(batches.every((rows) => rows.length <= 2));
});

t.test('a cancelled or expired sequence leaves at its next step; the others finish', async (t) => {
  const { run, clock } = setup();
  const gone = new AbortController();
  const cancelled = run('x', 4, { signal: gone.signal });
  // y's deadline passes while it is mid-sequence (after its third frame)
  const expired = run('y', 40, { deadline: 5, onFrame: (f) => f === 3 && clock.advance(10) });
  const ok = run('ok', 5);
  const cancelledLater = run('z', 6, { signal: gone.signal, onFrame: (f) => f === 2 && gone.abort() });
  const reason = (p: Promise<unknown>) =>
    p.then(
      () => 'resolved',
      (err: { reason?: string }) => err.reason,
    );
  t.equal(await reason(cancelled), 'cancelled');
  t.equal(await reason(cancelledLater), 'cancelled', 'cancelled mid-sequence');
  t.equal(await reason(expired), 'deadline', 'expired mid-sequence');
  t.same(await ok, [1, 3, 6, 10, 15]);
});

t.test('a failing batch fails the sequences in it; later sequences run', async (t) => {
  const { run } = setup();
  const [boom, other] = [run('boom', 4), run('other', 4)];
  await t.rejects(boom, { message: 'runner failed' });
  await t.rejects(other, { message: 'runner failed' }, 'it shared the failing batch');
  t.same(await run('after', 2), [1, 3]);
});
