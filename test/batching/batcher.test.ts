/**
 * Tests for the dynamic batcher (src/batching/batcher.ts) on a fake clock: the cut rule (delay, maxBatchSize,
 * preferred sizes, keys), deadlines, cancellation, queue limits, runner failures, close(), concurrency limits and
 * observer events, plus a property-based test over random request/time/completion/abort sequences.
 *
 * Nothing here sleeps on real time: time moves only through FakeClock, and batches finish only when a test
 * completes the runner's deferred for them.
 */
import t from 'tap';
import fc from 'fast-check';
import { getEventListeners } from 'node:events';
import {
  Batcher,
  BatcherError,
  type BatchingOptions,
  type BatcherErrorReason,
  type SubmitOptions,
} from '../../src/batching/batcher.js';
import { systemClock } from '../../src/batching/clock.js';
import { FakeClock, flush } from '../helpers/fake-clock.js';

// ---------------------------------------------------------------------------------------------------------------
// Helpers

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

interface RunnerCall {
  readonly inputs: number[];
  /** Clock time when the runner was called (the cut time; see FakeClock.tick). */
  readonly at: number;
  readonly d: Deferred<unknown[]>;
  done: boolean;
}

const out = (x: number) => `out${x}`;

/** A runner whose batches stay pending until the test completes or fails them. */
class FakeRunner {
  readonly calls: RunnerCall[] = [];
  maxActive = 0;

  constructor(private readonly clock: FakeClock) {}

  readonly run = (inputs: number[]): Promise<unknown[]> => {
    const call: RunnerCall = { inputs: [...inputs], at: this.clock.now(), d: deferred<unknown[]>(), done: false };
    this.calls.push(call);
    this.maxActive = Math.max(this.maxActive, this.active.length);
    return call.d.promise;
  };

  get batches(): number[][] {
    return this.calls.map((c) => c.inputs);
  }

  get active(): RunnerCall[] {
    return this.calls.filter((c) => !c.done);
  }

  #take(i: number): RunnerCall {
    const call = this.calls[i];
    if (!call) throw new Error(`no runner call #${i} (have ${this.calls.length})`);
    if (call.done) throw new Error(`runner call #${i} already completed`);
    call.done = true;
    return call;
  }

  /** Resolves call `i` with `outputs` (default: one `out<x>` per input) and lets the batcher react. */
  async complete(i: number, outputs?: unknown[]): Promise<void> {
    const call = this.#take(i);
    call.d.resolve(outputs ?? call.inputs.map(out));
    await flush();
  }

  async fail(i: number, err: unknown): Promise<void> {
    this.#take(i).d.reject(err);
    await flush();
  }
}

interface Tracked<T> {
  state: 'pending' | 'fulfilled' | 'rejected';
  value?: T;
  error?: unknown;
  settledAt?: number;
  settles: number;
}

function track<T>(p: Promise<T>, clock: FakeClock): Tracked<T> {
  const tr: Tracked<T> = { state: 'pending', settles: 0 };
  p.then(
    (value) => {
      tr.settles++;
      tr.state = 'fulfilled';
      tr.value = value;
      tr.settledAt = clock.now();
    },
    (error: unknown) => {
      tr.settles++;
      tr.state = 'rejected';
      tr.error = error;
      tr.settledAt = clock.now();
    },
  );
  return tr;
}

function reasonOf(tr: Tracked<unknown>): BatcherErrorReason | undefined {
  return tr.state === 'rejected' && tr.error instanceof BatcherError ? tr.error.reason : undefined;
}

interface Recorded {
  started: { size: number; waits: number[]; at: number }[];
  finished: { size: number; durationMs: number; error: unknown }[];
  dropped: { reason: 'deadline' | 'cancelled'; count: number; at: number }[];
  depths: number[];
  /** batcher.depth read inside each depthChanged call; must equal the reported value. */
  depthMismatches: number;
}

const DEFAULTS: BatchingOptions = {
  maxBatchSize: 8,
  preferredBatchSizes: [],
  maxQueueDelayMs: 0,
  maxQueueSize: 100,
  maxInFlightBatches: 1,
};

function setup(options: Partial<BatchingOptions> = {}) {
  const clock = new FakeClock();
  const runner = new FakeRunner(clock);
  const rec: Recorded = { started: [], finished: [], dropped: [], depths: [], depthMismatches: 0 };
  let batcherRef: Batcher<number, unknown> | undefined;
  const batcher = new Batcher<number, unknown>(
    runner.run,
    { ...DEFAULTS, ...options },
    {
      batchStarted: (size, waits) => rec.started.push({ size, waits: [...waits], at: clock.now() }),
      batchFinished: (size, durationMs, error) => rec.finished.push({ size, durationMs, error }),
      dropped: (reason, count) => rec.dropped.push({ reason, count, at: clock.now() }),
      depthChanged: (depth) => {
        rec.depths.push(depth);
        if (batcherRef && batcherRef.depth !== depth) rec.depthMismatches++;
      },
    },
    clock,
  );
  batcherRef = batcher;
  const submit = (input: number, opts: Partial<SubmitOptions> = {}) =>
    track(batcher.submit(input, { deadline: Infinity, ...opts }), clock);
  return { clock, runner, rec, batcher, submit };
}

/** Consecutive duplicates removed. */
function dedup(xs: readonly number[]): number[] {
  return xs.filter((x, i) => i === 0 || xs[i - 1] !== x);
}

// ---------------------------------------------------------------------------------------------------------------
// 1. A lone request

t.test('a lone request with maxQueueDelayMs=0 runs at once as a batch of 1', async (t) => {
  const { runner, submit, clock, batcher } = setup({ maxQueueDelayMs: 0 });
  const p = submit(1);
  await flush();
  t.same(runner.batches, [[1]]);
  t.equal(runner.calls[0].at, 0);
  t.equal(batcher.depth, 0);
  t.equal(batcher.inFlight, 1);
  t.equal(clock.pending, 0, 'no timer left behind');
  await runner.complete(0);
  t.equal(p.state, 'fulfilled');
  t.equal(p.value, 'out1');
  t.equal(batcher.inFlight, 0);
});

t.test('a lone request with maxQueueDelayMs=5 runs exactly at t=5', async (t) => {
  const { runner, submit, clock } = setup({ maxQueueDelayMs: 5 });
  const p = submit(1);
  await flush();
  t.equal(runner.calls.length, 0, 'not at t=0');
  t.equal(clock.nextAt(), 5, 'a timer is armed for the delay expiry');
  await clock.tick(4.999);
  t.equal(runner.calls.length, 0, 'not before t=5');
  await clock.tick(0.001);
  t.same(runner.batches, [[1]]);
  t.equal(runner.calls[0].at, 5, 'exactly at t=5');
  await clock.tick(100);
  t.equal(runner.calls.length, 1, 'runs once');
  await runner.complete(0);
  t.equal(p.value, 'out1');
});

// ---------------------------------------------------------------------------------------------------------------
// 2. The next batch forms while one runs

t.test('requests arriving during a batch form the next batch, cut as soon as the first completes', async (t) => {
  const { runner, submit, clock, batcher } = setup({ maxQueueDelayMs: 5, maxBatchSize: 8, maxInFlightBatches: 1 });
  const first = submit(0);
  await clock.tick(5);
  t.same(runner.batches, [[0]]);
  await clock.tick(1);
  const rest = [1, 2, 3, 4, 5, 6, 7].map((x) => submit(x));
  await clock.tick(50);
  t.equal(runner.calls.length, 1, 'no second batch while one is in flight');
  t.equal(batcher.depth, 7);
  t.equal(clock.pending, 0, 'no delay timer while the in-flight limit is reached');
  await runner.complete(0);
  t.same(runner.batches, [[0], [1, 2, 3, 4, 5, 6, 7]]);
  t.equal(runner.calls[1].at, 56, 'cut the moment the first batch completed');
  await runner.complete(1);
  t.equal(first.value, 'out0');
  t.same(
    rest.map((p) => p.value),
    [1, 2, 3, 4, 5, 6, 7].map(out),
  );
});

t.test('a follower whose own delay has not expired still waits after the batch ahead completes', async (t) => {
  const { runner, submit, clock } = setup({ maxQueueDelayMs: 10 });
  submit(0);
  await clock.tick(10);
  t.same(runner.batches, [[0]]);
  await clock.tick(2); // t=12
  submit(1);
  await clock.tick(1); // t=13
  await runner.complete(0);
  t.equal(runner.calls.length, 1, 'the follower has waited only 1 ms');
  await clock.tick(8); // t=21
  t.equal(runner.calls.length, 1);
  await clock.tick(1); // t=22
  t.same(runner.batches, [[0], [1]]);
  t.equal(runner.calls[1].at, 22);
});

// ---------------------------------------------------------------------------------------------------------------
// 3. maxBatchSize

t.test('maxBatchSize caps batches: 10 queued with max 4 -> 4, 4, 2 in FIFO order', async (t) => {
  const { runner, submit, clock } = setup({ maxBatchSize: 4, maxQueueDelayMs: 100 });
  const ps = Array.from({ length: 10 }, (_, i) => submit(i));
  await flush();
  t.same(runner.batches, [[0, 1, 2, 3]], 'a full batch is cut at once, long before the delay');
  t.equal(runner.calls[0].at, 0);
  await runner.complete(0);
  t.same(runner.batches[1], [4, 5, 6, 7], 'the next full batch is cut as soon as there is room');
  t.equal(runner.calls[1].at, 0);
  await runner.complete(1);
  t.equal(runner.calls.length, 2, 'the last 2 wait for the delay: the batch can still grow');
  await clock.tick(99);
  t.equal(runner.calls.length, 2);
  await clock.tick(1);
  t.same(runner.batches, [
    [0, 1, 2, 3],
    [4, 5, 6, 7],
    [8, 9],
  ]);
  t.equal(runner.calls[2].at, 100);
  await runner.complete(2);
  t.same(
    ps.map((p) => p.value),
    Array.from({ length: 10 }, (_, i) => out(i)),
  );
});

t.test('maxBatchSize with room for several batches: full ones go at once, the rest at the delay', async (t) => {
  const { runner, submit, clock } = setup({ maxBatchSize: 4, maxQueueDelayMs: 100, maxInFlightBatches: 3 });
  for (let i = 0; i < 10; i++) submit(i);
  await flush();
  t.same(runner.batches, [
    [0, 1, 2, 3],
    [4, 5, 6, 7],
  ]);
  await clock.tick(100);
  t.same(runner.batches[2], [8, 9]);
  t.equal(runner.calls[2].at, 100);
});

t.test('maxBatchSize 1 disables batching', async (t) => {
  const { runner, submit, clock } = setup({ maxBatchSize: 1, maxQueueDelayMs: 100, maxInFlightBatches: 2 });
  for (let i = 0; i < 3; i++) submit(i);
  await flush();
  t.same(runner.batches, [[0], [1]], 'each request is a full batch: no waiting');
  await runner.complete(0);
  t.same(runner.batches, [[0], [1], [2]]);
  t.equal(clock.now(), 0);
});

// ---------------------------------------------------------------------------------------------------------------
// 4. Preferred batch sizes

t.test('preferred sizes [2,4]: reaching the largest preferred size cuts at once', async (t) => {
  const { runner, submit } = setup({ preferredBatchSizes: [2, 4], maxBatchSize: 8, maxQueueDelayMs: 10 });
  for (let i = 0; i < 3; i++) submit(i);
  await flush();
  t.equal(runner.calls.length, 0, '3 is below the largest preferred size');
  submit(3);
  await flush();
  t.same(runner.batches, [[0, 1, 2, 3]]);
  t.equal(runner.calls[0].at, 0);
});

t.test('preferred sizes [2,4]: at the delay 3 queued are cut as 2, then the remaining 1 right after', async (t) => {
  const { runner, submit, clock } = setup({ preferredBatchSizes: [2, 4], maxBatchSize: 8, maxQueueDelayMs: 10 });
  const ps = [0, 1, 2].map((x) => submit(x));
  await clock.tick(9);
  t.equal(runner.calls.length, 0);
  await clock.tick(1);
  t.same(runner.batches, [[0, 1]], 'trimmed to the largest preferred size that fits');
  t.equal(runner.calls[0].at, 10);
  await runner.complete(0);
  t.same(runner.batches, [[0, 1], [2]], 'the remainder has waited too, so it goes at once');
  t.equal(runner.calls[1].at, 10);
  await runner.complete(1);
  t.same(
    ps.map((p) => p.value),
    [0, 1, 2].map(out),
  );
});

t.test('preferred sizes [2,4] with two batches allowed in flight: 2 and 1 both at the delay', async (t) => {
  const { runner, submit, clock } = setup({
    preferredBatchSizes: [4, 2], // unsorted on purpose
    maxBatchSize: 8,
    maxQueueDelayMs: 10,
    maxInFlightBatches: 2,
  });
  for (let i = 0; i < 3; i++) submit(i);
  await clock.tick(10);
  t.same(runner.batches, [[0, 1], [2]]);
  t.same(
    runner.calls.map((c) => c.at),
    [10, 10],
  );
});

t.test('preferred sizes: a backlog larger than the largest preferred size is cut at that size', async (t) => {
  const { runner, submit, clock } = setup({ preferredBatchSizes: [2, 4], maxBatchSize: 8, maxQueueDelayMs: 10 });
  submit(0);
  await clock.tick(10);
  t.same(runner.batches, [[0]], 'below every preferred size: sent as is at the delay');
  for (let i = 1; i <= 7; i++) submit(i);
  await clock.tick(20);
  await runner.complete(0);
  t.same(runner.batches[1], [1, 2, 3, 4]);
  await runner.complete(1);
  t.same(runner.batches[2], [5, 6], 'the rest has waited past the delay: trimmed to 2');
  await runner.complete(2);
  t.same(runner.batches[3], [7]);
});

t.test('preferred sizes [1,2,4]: at the delay 3 queued are trimmed to the largest fitting size, 2', async (t) => {
  const { runner, submit, clock } = setup({
    preferredBatchSizes: [1, 2, 4],
    maxBatchSize: 8,
    maxQueueDelayMs: 10,
    maxInFlightBatches: 2,
  });
  for (let i = 0; i < 3; i++) submit(i);
  await clock.tick(10);
  t.same(runner.batches, [[0, 1], [2]]);
});

t.test('preferred sizes are sorted in the frozen options', async (t) => {
  const { batcher } = setup({ preferredBatchSizes: [4, 1, 2] });
  t.same(batcher.options.preferredBatchSizes, [1, 2, 4]);
  t.ok(Object.isFrozen(batcher.options));
});

// ---------------------------------------------------------------------------------------------------------------
// 5. Deadlines

t.test('a request whose deadline passes while queued is rejected at its deadline, never computed', async (t) => {
  const { runner, submit, clock, rec } = setup({ maxQueueDelayMs: 10 });
  const late = submit(1, { deadline: 3 });
  const ok = submit(2);
  await flush();
  t.equal(clock.nextAt(), 3, 'the timer wakes for the deadline, not the longer delay');
  await clock.tick(2.5);
  t.equal(late.state, 'pending');
  await clock.tick(0.5);
  t.equal(reasonOf(late), 'deadline');
  t.equal(late.settledAt, 3, 'rejected exactly at its deadline');
  t.same(
    rec.dropped.map(({ reason, count }) => ({ reason, count })),
    [{ reason: 'deadline', count: 1 }],
  );
  await clock.tick(7);
  t.same(runner.batches, [[2]], 'the expired request never reached the runner');
  await runner.complete(0);
  t.equal(ok.value, 'out2');
});

t.test('a deadline passing while a batch is in flight still wakes the batcher', async (t) => {
  const { runner, submit, clock, rec } = setup({ maxQueueDelayMs: 0, maxInFlightBatches: 1 });
  submit(0);
  await flush();
  t.same(runner.batches, [[0]]);
  const late = submit(1, { deadline: 7 });
  const other = submit(2);
  await clock.tick(6);
  t.equal(late.state, 'pending');
  await clock.tick(1);
  t.equal(reasonOf(late), 'deadline');
  t.equal(late.settledAt, 7);
  t.same(
    rec.dropped.map((d) => [d.reason, d.count, d.at]),
    [['deadline', 1, 7]],
  );
  t.equal(runner.calls.length, 1, 'the batch is still in flight');
  await runner.complete(0);
  t.same(runner.batches, [[0], [2]]);
  await runner.complete(1);
  t.equal(other.value, 'out2');
});

t.test('requests expiring together are reported in one dropped() call', async (t) => {
  const { runner, submit, clock, rec } = setup({ maxQueueDelayMs: 20 });
  const a = submit(1, { deadline: 5 });
  const b = submit(2, { deadline: 5 });
  const c = submit(3, { deadline: 8 });
  await clock.tick(5);
  t.equal(reasonOf(a), 'deadline');
  t.equal(reasonOf(b), 'deadline');
  t.equal(c.state, 'pending');
  await clock.tick(3);
  t.equal(reasonOf(c), 'deadline');
  t.same(
    rec.dropped.map((d) => [d.reason, d.count, d.at]),
    [
      ['deadline', 2, 5],
      ['deadline', 1, 8],
    ],
  );
  await clock.tick(100);
  t.equal(runner.calls.length, 0);
  t.equal(clock.pending, 0, 'an empty queue arms no timer');
});

t.test('a deadline equal to the cut time drops the request rather than computing it', async (t) => {
  const { runner, submit, clock } = setup({ maxQueueDelayMs: 5 });
  const p = submit(1, { deadline: 5 });
  const q = submit(2);
  await clock.tick(5);
  t.equal(reasonOf(p), 'deadline');
  t.same(runner.batches, [[2]]);
  await runner.complete(0);
  t.equal(q.value, 'out2');
});

t.test('a request submitted with its deadline already passed is rejected at once', async (t) => {
  const { runner, submit, clock, rec, batcher } = setup({ maxQueueDelayMs: 5 });
  await clock.tick(10);
  const past = submit(1, { deadline: 4 });
  const now = submit(2, { deadline: 10 });
  await flush();
  t.equal(reasonOf(past), 'deadline');
  t.equal(reasonOf(now), 'deadline', 'deadline == now counts as passed');
  t.equal(past.settledAt, 10);
  t.same(
    rec.dropped.map((d) => [d.reason, d.count]),
    [
      ['deadline', 1],
      ['deadline', 1],
    ],
  );
  t.equal(batcher.depth, 0);
  t.equal(clock.pending, 0);
  await clock.tick(100);
  t.equal(runner.calls.length, 0);
});

// ---------------------------------------------------------------------------------------------------------------
// 6. Cancellation

t.test('aborting a queued request rejects it with cancelled and it is not computed', async (t) => {
  const { runner, submit, clock, rec, batcher } = setup({ maxQueueDelayMs: 10 });
  const ac = new AbortController();
  const p = submit(1, { signal: ac.signal });
  const q = submit(2);
  await clock.tick(3);
  ac.abort();
  await flush();
  t.equal(reasonOf(p), 'cancelled');
  t.equal(p.settledAt, 3, 'rejected when aborted, not at the next cut');
  t.same(
    rec.dropped.map((d) => [d.reason, d.count]),
    [['cancelled', 1]],
  );
  t.equal(batcher.depth, 1);
  await clock.tick(7);
  t.same(runner.batches, [[2]]);
  await runner.complete(0);
  t.equal(q.value, 'out2');
});

t.test('cancelling the head re-arms the delay for the new head', async (t) => {
  const { runner, submit, clock } = setup({ maxQueueDelayMs: 10 });
  const ac = new AbortController();
  submit(1, { signal: ac.signal });
  await clock.tick(4);
  submit(2);
  await clock.tick(1);
  ac.abort();
  await flush();
  await clock.tick(5); // t=10: the old head's expiry
  t.equal(runner.calls.length, 0, 'the new head has waited only 6 ms');
  await clock.tick(4); // t=14
  t.same(runner.batches, [[2]]);
  t.equal(runner.calls[0].at, 14);
});

t.test('aborting after the request was cut into a batch does nothing', async (t) => {
  const { runner, submit, rec } = setup({ maxQueueDelayMs: 0 });
  const ac = new AbortController();
  const p = submit(1, { signal: ac.signal });
  ac.abort(); // synchronously after the cut, before the runner is even called
  await flush();
  t.same(runner.batches, [[1]], 'still computed');
  const ac2 = new AbortController();
  const q = submit(2, { signal: ac2.signal });
  await flush();
  ac2.abort(); // still queued behind the in-flight batch (maxInFlightBatches=1)
  await flush();
  t.equal(reasonOf(q), 'cancelled', 'the queued one is cancelled');
  await runner.complete(0);
  t.equal(p.state, 'fulfilled');
  t.equal(p.value, 'out1', 'the cut one resolves normally');
  t.same(
    rec.dropped.map((d) => [d.reason, d.count]),
    [['cancelled', 1]],
    'only the queued one counts as dropped',
  );
  t.equal(runner.calls.length, 1);
});

t.test('aborting a request whose batch is computing leaves it to resolve', async (t) => {
  const { runner, submit, rec } = setup({ maxQueueDelayMs: 0 });
  const ac = new AbortController();
  const p = submit(1, { signal: ac.signal });
  await flush();
  ac.abort();
  await flush();
  t.equal(p.state, 'pending');
  await runner.complete(0);
  t.equal(p.value, 'out1');
  t.same(rec.dropped, []);
});

t.test(
  'one signal for many requests (a connection): one abort listener, however many requests it queued',
  async (t) => {
    const a = setup({ maxQueueDelayMs: 10 });
    const b = setup({ maxQueueDelayMs: 10 });
    const ac = new AbortController();
    const served: ReturnType<typeof a.submit>[] = [];
    // request after request on the same signal, each answered before the next: nothing accumulates on the signal
    for (let i = 0; i < 50; i++) {
      const p = a.submit(i, { signal: ac.signal });
      await a.clock.tick(10);
      await a.runner.complete(i);
      served.push(p);
    }
    t.ok(served.every((p) => p.state === 'fulfilled'));
    t.equal(getEventListeners(ac.signal, 'abort').length, 1, 'one listener after 50 requests');
    // then two requests queued on one batcher and one on another, all of the same connection
    const p1 = a.submit(100, { signal: ac.signal });
    const p2 = a.submit(101, { signal: ac.signal });
    const other = a.submit(102);
    const q = b.submit(200, { signal: ac.signal });
    await flush();
    t.equal(getEventListeners(ac.signal, 'abort').length, 1, 'still one listener for two batchers');
    ac.abort();
    await flush();
    t.same([reasonOf(p1), reasonOf(p2), reasonOf(q)], ['cancelled', 'cancelled', 'cancelled']);
    t.same(
      a.rec.dropped.map((d) => [d.reason, d.count]),
      [['cancelled', 2]],
    );
    t.same(
      b.rec.dropped.map((d) => [d.reason, d.count]),
      [['cancelled', 1]],
    );
    t.equal(a.batcher.depth, 1, 'the request of another signal stays queued');
    await a.clock.tick(10);
    t.same(a.runner.batches.at(-1), [102]);
    await a.runner.complete(50);
    t.equal(other.value, 'out102');
  },
);

t.test('one signal queued on many batchers: aborting it cancels its requests on every one', async (t) => {
  const ac = new AbortController();
  const setups = Array.from({ length: 12 }, () => setup({ maxQueueDelayMs: 10 }));
  const queued = setups.map((s, i) => s.submit(i, { signal: ac.signal }));
  await flush();
  t.equal(getEventListeners(ac.signal, 'abort').length, 1, 'one listener for twelve batchers');
  ac.abort();
  await flush();
  t.same(
    queued.map((p) => reasonOf(p)),
    setups.map(() => 'cancelled'),
  );
  t.ok(setups.every((s) => s.batcher.depth === 0));
});

t.test('an already aborted signal is rejected at submit', async (t) => {
  const { runner, submit, rec, batcher } = setup({ maxQueueDelayMs: 0 });
  const p = submit(1, { signal: AbortSignal.abort() });
  await flush();
  t.equal(reasonOf(p), 'cancelled');
  t.same(
    rec.dropped.map((d) => [d.reason, d.count]),
    [['cancelled', 1]],
  );
  t.equal(batcher.depth, 0);
  t.equal(runner.calls.length, 0);
});

// ---------------------------------------------------------------------------------------------------------------
// 7. Queue full

t.test('a full queue refuses the next submit with queue_full at once', async (t) => {
  const { runner, submit, batcher } = setup({ maxQueueSize: 2, maxQueueDelayMs: 0, maxInFlightBatches: 1 });
  submit(0);
  await flush();
  t.same(runner.batches, [[0]], 'in flight; it does not count against the queue');
  const a = submit(1);
  const b = submit(2);
  const c = submit(3);
  await flush();
  t.equal(reasonOf(c), 'queue_full');
  t.equal(c.settledAt, 0);
  t.match((c.error as Error).message, /queue is full/);
  t.equal(a.state, 'pending');
  t.equal(b.state, 'pending');
  t.equal(batcher.depth, 2);
  await runner.complete(0);
  t.same(runner.batches[1], [1, 2]);
  const d = submit(4);
  await flush();
  t.equal(d.state, 'pending', 'room again once the queue drained into a batch');
  t.equal(batcher.depth, 1);
});

t.test('an admitted submit (a stage request of an admitted page) is queued past a full queue', async (t) => {
  const { runner, submit, batcher } = setup({ maxQueueSize: 1, maxQueueDelayMs: 0, maxInFlightBatches: 1 });
  submit(0);
  await flush();
  const a = submit(1);
  const refused = submit(2);
  const b = submit(3, { admitted: true });
  await flush();
  t.equal(reasonOf(refused), 'queue_full');
  t.equal(a.state, 'pending');
  t.equal(b.state, 'pending', 'its caller bounds what it queues');
  t.equal(batcher.depth, 2);
  await runner.complete(0);
  t.same(runner.batches[1], [1, 3]);
});

// ---------------------------------------------------------------------------------------------------------------
// 8. Keys

t.test('requests with different keys never share a batch', async (t) => {
  const { runner, submit, clock } = setup({ maxQueueDelayMs: 5, maxBatchSize: 4 });
  submit(0, { key: 'a' });
  submit(1, { key: 'b' });
  submit(2, { key: 'a' });
  submit(3, { key: 'b' });
  await clock.tick(5);
  t.same(runner.batches, [[0, 2]]);
  await runner.complete(0);
  t.same(runner.batches, [
    [0, 2],
    [1, 3],
  ]);
});

t.test('batches follow the key of the oldest request (FIFO by head key)', async (t) => {
  const { runner, submit, clock } = setup({ maxQueueDelayMs: 5, maxInFlightBatches: 3 });
  submit(0, { key: 'b' });
  submit(1, { key: 'a' });
  submit(2, { key: 'a' });
  submit(3, { key: 'b' });
  submit(4, { key: 'c' });
  await clock.tick(5);
  t.same(runner.batches, [[0, 3], [1, 2], [4]]);
});

t.test('a full batch of the head key is cut at once, skipping other keys', async (t) => {
  const { runner, submit, clock } = setup({ maxQueueDelayMs: 5, maxBatchSize: 2, maxInFlightBatches: 2 });
  submit(0, { key: 'a' });
  submit(1, { key: 'b' });
  submit(2, { key: 'a' });
  await flush();
  t.same(runner.batches, [[0, 2]]);
  await clock.tick(5);
  t.same(runner.batches, [[0, 2], [1]]);
});

t.test('a full batch of another key waits behind the head key until the head is cut (head-of-line)', async (t) => {
  // Documented behaviour: only the oldest request's key is considered, so key b's full batch goes when a's does.
  const { runner, submit, clock } = setup({ maxQueueDelayMs: 5, maxBatchSize: 2, maxInFlightBatches: 2 });
  submit(0, { key: 'a' });
  submit(1, { key: 'b' });
  submit(2, { key: 'b' });
  await clock.tick(4);
  t.equal(runner.calls.length, 0);
  await clock.tick(1);
  t.same(runner.batches, [[0], [1, 2]]);
});

t.test('an omitted key is one shared key', async (t) => {
  const { runner, submit, clock } = setup({ maxQueueDelayMs: 5 });
  submit(0);
  submit(1, { key: '' });
  submit(2);
  await clock.tick(5);
  t.same(runner.batches, [[0, 1, 2]]);
});

// ---------------------------------------------------------------------------------------------------------------
// 9. Runner errors

t.test('a failing batch rejects all its members and the batcher keeps serving', async (t) => {
  const { runner, submit, rec } = setup({ maxQueueDelayMs: 0 });
  const a = submit(0);
  await flush();
  const b = submit(1);
  const c = submit(2);
  const boom = new Error('boom');
  await runner.fail(0, boom);
  t.equal(a.error, boom, 'rejected with the runner error itself');
  t.same(runner.batches, [[0], [1, 2]]);
  t.equal(rec.finished[0].error, boom);
  await runner.complete(1);
  t.equal(b.value, 'out1');
  t.equal(c.value, 'out2');
  t.equal(rec.finished[1].error, undefined);
});

t.test('a batch of several failing rejects every member with the same error', async (t) => {
  const { runner, submit, clock } = setup({ maxQueueDelayMs: 1 });
  const ps = [0, 1, 2].map((x) => submit(x));
  await clock.tick(1);
  const boom = new Error('boom');
  await runner.fail(0, boom);
  t.same(
    ps.map((p) => p.error),
    [boom, boom, boom],
  );
});

t.test('a runner that throws synchronously rejects the batch and the batcher keeps serving', async (t) => {
  const clock = new FakeClock();
  let calls = 0;
  const batcher = new Batcher<number, string>(
    (inputs) => {
      calls++;
      if (calls === 1) throw new Error('sync boom');
      return Promise.resolve(inputs.map(out));
    },
    { ...DEFAULTS },
    {},
    clock,
  );
  const a = track(batcher.submit(0, { deadline: Infinity }), clock);
  await flush();
  t.match(a.error, { message: 'sync boom' });
  t.equal(batcher.inFlight, 0);
  const b = track(batcher.submit(1, { deadline: Infinity }), clock);
  await flush();
  t.equal(b.value, 'out1');
});

t.test('a runner returning the wrong number of outputs rejects the batch as a bug', async (t) => {
  const { runner, submit, clock, batcher } = setup({ maxQueueDelayMs: 1 });
  const ps = [0, 1].map((x) => submit(x));
  await clock.tick(1);
  await runner.complete(0, ['only one']);
  for (const p of ps) {
    t.equal(p.state, 'rejected');
    t.match((p.error as Error).message, /this is a bug/);
    t.notOk(p.error instanceof BatcherError);
  }
  t.equal(batcher.inFlight, 0);

  const q = submit(2);
  await clock.tick(1);
  await runner.complete(1, undefined as unknown as unknown[]); // default outputs: fine
  t.equal(q.value, 'out2', 'the batcher keeps serving');

  const r = submit(3);
  await clock.tick(1);
  runner.calls[2].done = true;
  runner.calls[2].d.resolve(null as unknown as unknown[]); // not even an array
  await flush();
  t.match((r.error as Error).message, /this is a bug/);
});

// ---------------------------------------------------------------------------------------------------------------
// 10. close()

t.test('close() refuses new submits with closed', async (t) => {
  const { submit, batcher } = setup();
  await batcher.close();
  const p = submit(1);
  await flush();
  t.equal(reasonOf(p), 'closed');
});

t.test('close() cuts queued requests at once and resolves after they finish', async (t) => {
  const { runner, submit, batcher, clock } = setup({ maxQueueDelayMs: 100, preferredBatchSizes: [2, 4] });
  const ps = [0, 1, 2].map((x) => submit(x));
  await flush();
  t.equal(runner.calls.length, 0);
  const closed = track(batcher.close(), clock);
  await flush();
  t.same(runner.batches, [[0, 1, 2]], 'sent without waiting for the delay, and not trimmed');
  t.equal(runner.calls[0].at, 0);
  t.equal(closed.state, 'pending', 'a batch is still computing');
  await runner.complete(0);
  t.equal(closed.state, 'fulfilled');
  t.same(
    ps.map((p) => p.value),
    [0, 1, 2].map(out),
  );
});

t.test('close() drains a backlog behind an in-flight batch, batch by batch, and keys apart', async (t) => {
  const { runner, submit, batcher, clock } = setup({ maxQueueDelayMs: 100, maxBatchSize: 2 });
  submit(0);
  submit(1);
  await flush();
  t.same(runner.batches, [[0, 1]]);
  submit(2);
  submit(3, { key: 'x' });
  submit(4);
  submit(5);
  const closed = track(batcher.close(), clock);
  const late = submit(6);
  await flush();
  t.equal(reasonOf(late), 'closed');
  t.equal(runner.calls.length, 1, 'the in-flight limit still holds while closing');
  await runner.complete(0);
  t.same(runner.batches[1], [2, 4]);
  t.equal(closed.state, 'pending');
  await runner.complete(1);
  t.same(runner.batches[2], [3], 'a lone request of another key is sent without waiting');
  await runner.complete(2);
  t.same(runner.batches[3], [5]);
  t.equal(closed.state, 'pending');
  await runner.complete(3);
  t.equal(closed.state, 'fulfilled');
  t.equal(clock.now(), 0, 'no time had to pass');
});

t.test('close() on an idle batcher resolves at once, and twice is fine', async (t) => {
  const { batcher, clock } = setup();
  const a = track(batcher.close(), clock);
  const b = track(batcher.close(), clock);
  await flush();
  t.equal(a.state, 'fulfilled');
  t.equal(b.state, 'fulfilled');

  const s2 = setup({ maxQueueDelayMs: 0 });
  s2.submit(1);
  await flush();
  const c = track(s2.batcher.close(), s2.clock);
  const d = track(s2.batcher.close(), s2.clock);
  await flush();
  t.equal(c.state, 'pending');
  await s2.runner.complete(0);
  t.equal(c.state, 'fulfilled');
  t.equal(d.state, 'fulfilled');
});

t.test('close() still drops queued requests whose deadline passes while they wait', async (t) => {
  const { runner, submit, batcher, clock } = setup({ maxQueueDelayMs: 0 });
  submit(0);
  await flush();
  const late = submit(1, { deadline: 3 });
  const closed = track(batcher.close(), clock);
  await clock.tick(3);
  t.equal(reasonOf(late), 'deadline');
  await runner.complete(0);
  t.equal(closed.state, 'fulfilled');
  t.equal(runner.calls.length, 1);
});

// ---------------------------------------------------------------------------------------------------------------
// 11. Concurrency

t.test('maxInFlightBatches=2 lets two batches run at once, and no more', async (t) => {
  const { runner, submit, batcher } = setup({ maxQueueDelayMs: 0, maxInFlightBatches: 2 });
  const a = submit(0);
  await flush();
  const b = submit(1);
  await flush();
  const c = submit(2);
  await flush();
  t.same(runner.batches, [[0], [1]]);
  t.equal(batcher.inFlight, 2);
  t.equal(batcher.depth, 1);
  await runner.complete(1); // out of order
  t.equal(b.value, 'out1');
  t.same(runner.batches, [[0], [1], [2]]);
  t.equal(batcher.inFlight, 2);
  await runner.complete(0);
  await runner.complete(2);
  t.equal(a.value, 'out0');
  t.equal(c.value, 'out2');
  t.equal(runner.maxActive, 2);
});

t.test('maxInFlightBatches=1 runs one batch at a time', async (t) => {
  const { runner, submit } = setup({ maxQueueDelayMs: 0, maxInFlightBatches: 1 });
  submit(0);
  await flush();
  submit(1);
  await flush();
  t.equal(runner.calls.length, 1);
  await runner.complete(0);
  await runner.complete(1);
  t.equal(runner.maxActive, 1);
});

// ---------------------------------------------------------------------------------------------------------------
// 12. Observer

t.test('observer: batchStarted sizes and exact queue waits, batchFinished durations, depthChanged', async (t) => {
  const { runner, submit, clock, rec, batcher } = setup({ maxQueueDelayMs: 5 });
  submit(0);
  await clock.tick(2);
  submit(1);
  await clock.tick(2);
  submit(2);
  await clock.tick(1);
  t.same(rec.started, [{ size: 3, waits: [5, 3, 1], at: 5 }]);
  await clock.tick(7);
  await runner.complete(0);
  t.same(rec.finished, [{ size: 3, durationMs: 7, error: undefined }]);
  t.same(dedup(rec.depths), [1, 2, 3, 0]);
  t.equal(rec.depthMismatches, 0, 'every reported depth is the real one');
  t.equal(rec.depths.at(-1), batcher.depth);

  t.equal(batcher.estimatedWaitMs(), 7, 'one batch ahead of a newcomer at the recent batch time');
  submit(3);
  await flush();
  t.equal(batcher.depth, 1);
  t.equal(batcher.estimatedWaitMs(), 7, 'ceil((1 + 1) / 8) batches');
});

t.test('observer: a failing batch is reported finished with its error', async (t) => {
  const { runner, submit, clock, rec } = setup({ maxQueueDelayMs: 0 });
  submit(0);
  await flush();
  await clock.tick(4);
  const boom = new Error('boom');
  await runner.fail(0, boom);
  t.same(
    rec.started.map((s) => [s.size, s.waits]),
    [[1, [0]]],
  );
  t.equal(rec.finished.length, 1);
  t.equal(rec.finished[0].size, 1);
  t.equal(rec.finished[0].durationMs, 4);
  t.equal(rec.finished[0].error, boom);
});

t.test('observer hooks are optional', async (t) => {
  const clock = new FakeClock();
  const runner = new FakeRunner(clock);
  const batcher = new Batcher<number, unknown>(runner.run, { ...DEFAULTS, maxQueueDelayMs: 1 }, {}, clock);
  const ac = new AbortController();
  const a = track(batcher.submit(0, { deadline: 1, signal: ac.signal }), clock);
  const b = track(batcher.submit(1, { deadline: Infinity, signal: ac.signal }), clock);
  const c = track(batcher.submit(2, { deadline: Infinity }), clock);
  await clock.tick(1);
  t.equal(reasonOf(a), 'deadline');
  t.same(runner.batches, [[1, 2]]);
  await runner.complete(0);
  t.equal(b.value, 'out1');
  t.equal(c.value, 'out2');
});

// ---------------------------------------------------------------------------------------------------------------
// 13. Constructor validation

t.test('bad options throw a RangeError naming the option', async (t) => {
  const cases: [Partial<BatchingOptions>, string][] = [
    [{ maxBatchSize: 0 }, 'maxBatchSize'],
    [{ maxBatchSize: 1.5 }, 'maxBatchSize'],
    [{ maxBatchSize: Number.NaN }, 'maxBatchSize'],
    [{ maxQueueSize: 0 }, 'maxQueueSize'],
    [{ maxQueueSize: -3 }, 'maxQueueSize'],
    [{ maxInFlightBatches: 0 }, 'maxInFlightBatches'],
    [{ maxInFlightBatches: Infinity }, 'maxInFlightBatches'],
    [{ maxQueueDelayMs: -1 }, 'maxQueueDelayMs'],
    [{ maxQueueDelayMs: Number.NaN }, 'maxQueueDelayMs'],
    [{ maxQueueDelayMs: Infinity }, 'maxQueueDelayMs'],
    [{ preferredBatchSizes: [0] }, 'preferredBatchSizes'],
    [{ preferredBatchSizes: [2.5] }, 'preferredBatchSizes'],
    [{ maxBatchSize: 4, preferredBatchSizes: [2, 8] }, 'preferredBatchSizes'],
  ];
  for (const [bad, name] of cases) {
    t.throws(
      () => new Batcher<number, number>(async (x) => x, { ...DEFAULTS, ...bad }),
      { name: 'RangeError', message: new RegExp(`batching\\.${name}\\b`) },
      `${JSON.stringify(bad)} names ${name}`,
    );
  }
  t.doesNotThrow(
    () =>
      new Batcher<number, number>(async (x) => x, {
        maxBatchSize: 1,
        preferredBatchSizes: [1],
        maxQueueDelayMs: 0,
        maxQueueSize: 1,
        maxInFlightBatches: 1,
      }),
    'the smallest valid options',
  );
  t.doesNotThrow(() => new Batcher<number, number>(async (x) => x, { ...DEFAULTS, maxQueueDelayMs: 0.25 }));
});

t.test('BatcherError carries a stable reason and name', async (t) => {
  const err = new BatcherError('queue_full', 'full');
  t.equal(err.name, 'BatcherError');
  t.equal(err.reason, 'queue_full');
  t.ok(err instanceof Error);
});

t.test("systemClock: monotonic now(), unref'ed timers that clearTimer cancels (no real waiting)", async (t) => {
  const a = systemClock.now();
  const b = systemClock.now();
  t.type(a, 'number');
  t.ok(b >= a);
  let fired = false;
  const handle = systemClock.setTimer(() => {
    fired = true;
  }, -5);
  t.equal((handle as NodeJS.Timeout).hasRef(), false, 'a pending wake-up does not keep the process alive');
  systemClock.clearTimer(handle);
  await flush();
  await flush();
  t.equal(fired, false);
});

t.test('systemClock: the requests that arrive in one turn of the event loop share the first batch', async (t) => {
  const calls: number[][] = [];
  const pending: Deferred<unknown[]>[] = [];
  const batcher = new Batcher<number, unknown>(
    (inputs) => {
      calls.push([...inputs]);
      const d = deferred<unknown[]>();
      pending.push(d);
      return d.promise;
    },
    { maxBatchSize: 8, preferredBatchSizes: [], maxQueueDelayMs: 0, maxQueueSize: 100, maxInFlightBatches: 1 },
    {},
    systemClock,
  );
  const opts = { deadline: Infinity };
  // an idle model: five arrivals in one turn (a server reading five requests from one poll) make one batch, not a
  // batch of the first alone followed by one of the other four
  const first = [1, 2, 3, 4, 5].map((x) => batcher.submit(x, opts));
  t.same(calls, [], 'nothing is cut before the turn ends');
  await flush();
  t.same(calls, [[1, 2, 3, 4, 5]]);
  // while it computes, arrivals of later turns queue, and go together once it is done
  const second = [batcher.submit(6, opts)];
  await flush();
  second.push(batcher.submit(7, opts));
  await flush();
  t.same(calls, [[1, 2, 3, 4, 5]]);
  pending[0].resolve(['a', 'b', 'c', 'd', 'e']);
  t.same(await Promise.all(first), ['a', 'b', 'c', 'd', 'e']);
  await flush();
  t.same(calls, [
    [1, 2, 3, 4, 5],
    [6, 7],
  ]);
  pending[1].resolve(['f', 'g']);
  t.same(await Promise.all(second), ['f', 'g']);
  // a lone request on an idle model goes at the end of its turn, alone
  const lone = batcher.submit(8, opts);
  await flush();
  t.same(calls.at(-1), [8]);
  pending[2].resolve(['h']);
  t.equal(await lone, 'h');
  await batcher.close();
});

t.test('FakeClock fires timers in time order, then set order, and honours clearTimer', async (t) => {
  const clock = new FakeClock(100);
  const log: string[] = [];
  clock.setTimer(() => log.push(`b@${clock.now()}`), 5);
  clock.setTimer(() => log.push(`a@${clock.now()}`), 2);
  clock.setTimer(() => log.push(`c@${clock.now()}`), 5);
  const gone = clock.setTimer(() => log.push('never'), 3);
  clock.setTimer(() => {
    log.push(`d@${clock.now()}`);
    clock.setTimer(() => log.push(`e@${clock.now()}`), 1); // due inside the same advance
  }, 4);
  clock.clearTimer(gone);
  clock.advance(4.5);
  t.same(log, ['a@102', 'd@104']);
  t.equal(clock.now(), 104.5);
  clock.advance(10);
  t.same(log, ['a@102', 'd@104', 'b@105', 'c@105', 'e@105']);
  t.equal(clock.pending, 0);
  t.equal(clock.nextAt(), undefined);
});

// ---------------------------------------------------------------------------------------------------------------
// 14. Property-based test

type SignalMode = 'none' | 'live' | 'aborted';
type Op =
  | { kind: 'submit'; key: 'a' | 'b'; ttl: number | null; signal: SignalMode }
  | { kind: 'advance'; ms: number }
  | { kind: 'complete'; pick: number; outcome: 'ok' | 'fail' | 'wrong' }
  | { kind: 'abort'; pick: number };

const optionsArb: fc.Arbitrary<BatchingOptions> = fc.integer({ min: 1, max: 5 }).chain((max) =>
  fc.record({
    maxBatchSize: fc.constant(max),
    preferredBatchSizes: fc.uniqueArray(fc.integer({ min: 1, max }), { maxLength: 3 }),
    maxQueueDelayMs: fc.integer({ min: 0, max: 10 }),
    maxQueueSize: fc.integer({ min: 1, max: 8 }),
    maxInFlightBatches: fc.integer({ min: 1, max: 3 }),
  }),
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('submit' as const),
      key: fc.constantFrom('a' as const, 'b' as const),
      ttl: fc.option(fc.integer({ min: 0, max: 30 }), { nil: null, freq: 2 }),
      signal: fc.constantFrom<SignalMode>('none', 'none', 'live', 'live', 'aborted'),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 12 }) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('complete' as const),
      pick: fc.nat(),
      outcome: fc.constantFrom<'ok' | 'fail' | 'wrong'>('ok', 'ok', 'ok', 'ok', 'fail', 'wrong'),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('abort' as const), pick: fc.nat() }) },
);

interface ModelReq {
  readonly id: number;
  readonly key: string;
  readonly submittedAt: number;
  readonly deadline: number;
  readonly ac?: AbortController;
  readonly preAborted: boolean;
  readonly closedAtSubmit: boolean;
  readonly depthAtSubmit: number;
  readonly tr: Tracked<unknown>;
  /** Index of the runner call that computed it. */
  call?: number;
  /** Time it was aborted while still queued (a cancellation must follow at that time). */
  abortedWhileQueuedAt?: number;
  abortedAt?: number;
}

/** What a scenario exercised, summed over runs to show the property is not vacuous. */
interface Coverage {
  batches: number;
  multiBatches: number;
  concurrent: number;
  computed: number;
  deadline: number;
  cancelled: number;
  queue_full: number;
  closed: number;
  failedBatches: number;
}

async function runScenario(
  options: BatchingOptions,
  ops: readonly Op[],
  closeAt: number | undefined,
  cov: Coverage,
): Promise<void> {
  // Failures are also recorded, because a throw inside the runner would only reject that batch.
  const violations: string[] = [];
  const check = (cond: unknown, msg: string): void => {
    if (cond) return;
    violations.push(msg);
    throw new Error(msg);
  };
  const clock = new FakeClock();
  const reqs: ModelReq[] = [];
  const calls: {
    ids: number[];
    at: number;
    d: Deferred<unknown[]>;
    done: boolean;
    outcome?: 'ok' | 'fail' | 'wrong';
    err?: Error;
  }[] = [];
  let active = 0;
  const byId = (id: number) => reqs[id];
  const lastComputed = new Map<string, number>();
  const started: { size: number; waits: number[] }[] = [];
  let finished = 0;
  const droppedCount = { deadline: 0, cancelled: 0 };
  let lastDepth: number | undefined;
  const maxPreferred = Math.max(0, ...options.preferredBatchSizes);

  const batcher = new Batcher<number, unknown>(
    (ids) => {
      const at = clock.now();
      active++;
      check(active <= options.maxInFlightBatches, `${active} batches in flight > ${options.maxInFlightBatches}`);
      check(ids.length >= 1 && ids.length <= options.maxBatchSize, `batch of ${ids.length}`);
      const key = byId(ids[0]).key;
      // Oracle of the cut rule: the batch is the head's key run from the model queue, sized as the rule says.
      const q = queued();
      const head = q[0];
      check(head !== undefined && ids[0] === head.id, `batch ${ids} does not start at the head ${head?.id}`);
      const candidates = q.filter((r) => r.key === head.key).slice(0, options.maxBatchSize);
      let size: number | undefined;
      if (candidates.length === options.maxBatchSize || closed) size = candidates.length;
      else if (maxPreferred > 0 && candidates.length >= maxPreferred) size = maxPreferred;
      else if (at - head.submittedAt >= options.maxQueueDelayMs) {
        size =
          [...options.preferredBatchSizes].sort((x, y) => y - x).find((p) => p <= candidates.length) ??
          candidates.length;
      }
      check(size !== undefined, `batch ${ids} cut at ${at} before it was due`);
      const expectedIds = candidates.slice(0, size).map((r) => r.id);
      check(JSON.stringify(ids) === JSON.stringify(expectedIds), `batch ${ids} cut at ${at}, expected ${expectedIds}`);
      for (const id of ids) {
        const r = byId(id);
        check(r.key === key, `batch mixes keys: ${ids.map((i) => byId(i).key).join(',')}`);
        check(r.call === undefined, `request ${id} computed twice`);
        check(r.deadline > at, `request ${id} computed at ${at} after its deadline ${r.deadline}`);
        check(r.tr.state === 'pending', `request ${id} computed after it settled`);
        check(r.abortedWhileQueuedAt === undefined, `request ${id} computed after it was cancelled`);
        const last = lastComputed.get(key) ?? -1;
        check(id > last, `FIFO broken for key ${key}: ${id} after ${last}`);
        lastComputed.set(key, id);
        r.call = calls.length;
      }
      const d = deferred<unknown[]>();
      calls.push({ ids: [...ids], at, d, done: false });
      cov.batches++;
      if (ids.length > 1) cov.multiBatches++;
      if (active > 1) cov.concurrent++;
      return d.promise.finally(() => {
        active--;
      });
    },
    options,
    {
      batchStarted: (size, waits) => started.push({ size, waits: [...waits] }),
      batchFinished: () => finished++,
      dropped: (reason, count) => {
        droppedCount[reason] += count;
      },
      depthChanged: (depth) => {
        lastDepth = depth;
      },
    },
    clock,
  );

  let closed: Tracked<void> | undefined;
  const queued = () => reqs.filter((r) => r.call === undefined && r.tr.state === 'pending' && !r.closedAtSubmit);

  const invariants = (where: string) => {
    check(violations.length === 0, `${where}: ${violations[0]}`);
    const now = clock.now();
    const q = queued();
    check(q.length === batcher.depth, `${where}: model queue ${q.length} != depth ${batcher.depth}`);
    check(lastDepth === undefined || lastDepth === batcher.depth, `${where}: depthChanged said ${lastDepth}`);
    check(batcher.inFlight === calls.filter((c) => !c.done).length, `${where}: inFlight ${batcher.inFlight}`);
    for (const r of q) check(r.deadline > now, `${where}: request ${r.id} still queued past its deadline`);
    for (const r of reqs) {
      if (r.abortedWhileQueuedAt !== undefined) {
        check(reasonOf(r.tr) === 'cancelled', `${where}: request ${r.id} aborted while queued but not cancelled`);
      }
    }
    if (closed && (batcher.inFlight > 0 || batcher.depth > 0)) {
      check(closed.state === 'pending', `${where}: close() resolved before the batcher drained`);
    }
    // Liveness: with room to run a batch, nothing that should have been cut is still waiting.
    if (batcher.inFlight < options.maxInFlightBatches && q.length > 0) {
      const head = q[0];
      const sameKey = q.filter((r) => r.key === head.key).length;
      check(!closed, `${where}: closing with room, yet ${q.length} still queued`);
      check(now - head.submittedAt < options.maxQueueDelayMs, `${where}: head ${head.id} waited past the delay`);
      check(sameKey < options.maxBatchSize, `${where}: a full batch is waiting`);
      check(maxPreferred === 0 || sameKey < maxPreferred, `${where}: the largest preferred size is waiting`);
    }
  };

  const doClose = async () => {
    closed = track(batcher.close(), clock);
    await flush();
  };

  for (let i = 0; i < ops.length; i++) {
    if (i === closeAt) await doClose();
    const op = ops[i];
    switch (op.kind) {
      case 'submit': {
        const id = reqs.length;
        const ac = op.signal === 'none' ? undefined : new AbortController();
        if (op.signal === 'aborted') ac?.abort();
        const deadline = op.ttl === null ? Infinity : clock.now() + op.ttl;
        const depthAtSubmit = batcher.depth;
        const closedAtSubmit = closed !== undefined;
        const tr = track(batcher.submit(id, { deadline, key: op.key, signal: ac?.signal }), clock);
        reqs.push({
          id,
          key: op.key,
          submittedAt: clock.now(),
          deadline,
          ac,
          preAborted: op.signal === 'aborted',
          closedAtSubmit,
          depthAtSubmit,
          tr,
          abortedAt: op.signal === 'aborted' ? clock.now() : undefined,
        });
        await flush();
        const expected: BatcherErrorReason | undefined = closedAtSubmit
          ? 'closed'
          : op.signal === 'aborted'
            ? 'cancelled'
            : deadline <= clock.now()
              ? 'deadline'
              : depthAtSubmit >= options.maxQueueSize
                ? 'queue_full'
                : undefined;
        if (expected) check(reasonOf(tr) === expected, `submit ${id}: expected ${expected}, got ${tr.state}`);
        else check(tr.state === 'pending', `submit ${id}: accepted request settled at once (${tr.state})`);
        break;
      }
      case 'advance':
        // All times in this test are whole milliseconds, so checking after every 1 ms step catches a late cut.
        if (op.ms === 0) await clock.tick(0);
        for (let k = 0; k < op.ms; k++) {
          await clock.tick(1);
          if (k < op.ms - 1) invariants(`during op ${i} (advance to ${clock.now()})`);
        }
        break;
      case 'complete': {
        const open = calls.filter((c) => !c.done);
        if (open.length === 0) break;
        const c = open[op.pick % open.length];
        c.done = true;
        c.outcome = op.outcome;
        if (op.outcome === 'ok') c.d.resolve(c.ids.map(out));
        else if (op.outcome === 'wrong') c.d.resolve([...c.ids.map(out), 'extra']);
        else {
          c.err = new Error(`batch failed at ${clock.now()}`);
          c.d.reject(c.err);
        }
        await flush();
        break;
      }
      case 'abort': {
        const withSignal = reqs.filter((r) => r.ac && !r.ac.signal.aborted);
        if (withSignal.length === 0) break;
        const r = withSignal[op.pick % withSignal.length];
        const wasQueued = queued().includes(r);
        r.abortedAt = clock.now();
        if (wasQueued) r.abortedWhileQueuedAt = clock.now();
        r.ac?.abort();
        await flush();
        break;
      }
    }
    invariants(`after op ${i} (${op.kind})`);
  }

  // Drain: close, then finish every batch until the batcher is empty.
  if (!closed) await doClose();
  invariants('after close');
  for (let guard = 0; batcher.inFlight > 0 || batcher.depth > 0; guard++) {
    check(guard < 1000, 'drain does not terminate');
    for (const c of calls) {
      if (c.done) continue;
      c.done = true;
      c.outcome = 'ok';
      c.d.resolve(c.ids.map(out));
    }
    await flush();
    invariants(`drain ${guard}`);
  }
  await flush();
  check(closed?.state === 'fulfilled', 'close() did not resolve after draining');
  check(clock.pending === 0, `${clock.pending} timers left after draining`);

  // Every request settled exactly once, in the way its history says.
  const counts = { deadline: 0, cancelled: 0 };
  for (const r of reqs) {
    check(r.tr.settles === 1, `request ${r.id} settled ${r.tr.settles} times`);
    if (r.call !== undefined) {
      const c = calls[r.call];
      cov.computed++;
      if (c.outcome === 'ok') check(r.tr.value === out(r.id), `request ${r.id}: wrong output ${String(r.tr.value)}`);
      else if (c.outcome === 'fail') check(r.tr.error === c.err, `request ${r.id}: not rejected with its batch error`);
      else
        check(/this is a bug/.test(String((r.tr.error as Error)?.message)), `request ${r.id}: wrong-count not flagged`);
      continue;
    }
    const reason = reasonOf(r.tr);
    check(reason !== undefined, `request ${r.id} never computed but not rejected by the batcher`);
    if (reason) cov[reason]++;
    switch (reason) {
      case 'closed':
        check(r.closedAtSubmit, `request ${r.id} refused as closed before close()`);
        break;
      case 'queue_full':
        check(!r.closedAtSubmit && r.depthAtSubmit >= options.maxQueueSize, `request ${r.id} refused with room`);
        check(r.tr.settledAt === r.submittedAt, `request ${r.id} refused late`);
        break;
      case 'deadline':
        counts.deadline++;
        check(
          r.tr.settledAt === Math.max(r.deadline, r.submittedAt),
          `request ${r.id} expired at ${r.tr.settledAt}, deadline ${r.deadline}`,
        );
        break;
      case 'cancelled':
        counts.cancelled++;
        check(r.abortedAt !== undefined && r.tr.settledAt === r.abortedAt, `request ${r.id} cancelled without abort`);
        break;
    }
  }
  check(counts.deadline === droppedCount.deadline, `dropped(deadline) ${droppedCount.deadline} != ${counts.deadline}`);
  check(
    counts.cancelled === droppedCount.cancelled,
    `dropped(cancelled) ${droppedCount.cancelled} != ${counts.cancelled}`,
  );

  // The observer saw the same batches the runner did, with exact waits.
  cov.failedBatches += calls.filter((c) => c.outcome !== 'ok').length;
  check(started.length === calls.length && finished === calls.length, 'observer batch counts differ from runner calls');
  started.forEach((s, i) => {
    const c = calls[i];
    check(s.size === c.ids.length, `batchStarted size ${s.size} != ${c.ids.length}`);
    const waits = c.ids.map((id) => c.at - byId(id).submittedAt);
    check(JSON.stringify(s.waits) === JSON.stringify(waits), `batchStarted waits ${s.waits} != ${waits}`);
  });
}

t.test('property: random submit / advance / complete / abort sequences keep every invariant', async (t) => {
  let passed = 0;
  const cov: Coverage = {
    batches: 0,
    multiBatches: 0,
    concurrent: 0,
    computed: 0,
    deadline: 0,
    cancelled: 0,
    queue_full: 0,
    closed: 0,
    failedBatches: 0,
  };
  await fc.assert(
    fc.asyncProperty(
      optionsArb,
      fc.array(opArb, { minLength: 1, maxLength: 60, size: 'max' }),
      // close() mid-sequence in two runs out of three (at an op index, or never when past the end).
      fc.option(fc.integer({ min: 10, max: 60 }), { nil: undefined, freq: 3 }),
      async (options, ops, closeAt) => {
        await runScenario(options, ops, closeAt, cov);
        passed++;
      },
    ),
    { seed: 20240611, numRuns: 200 },
  );
  t.equal(passed, 200, 'all 200 runs passed');
  // The generated scenarios really reached every path, so the invariants above were not checked vacuously.
  for (const [what, n] of Object.entries(cov)) t.ok(n > 0, `exercised ${what}: ${n}`);
});

t.test('a throwing observer does not stall the queue; a NaN deadline is refused', async (t) => {
  const clock = new FakeClock();
  const runner = new FakeRunner(clock);
  const opts: BatchingOptions = {
    maxBatchSize: 1,
    preferredBatchSizes: [],
    maxQueueDelayMs: 0,
    maxQueueSize: 8,
    maxInFlightBatches: 1,
  };
  const b = new Batcher<number, unknown>(
    runner.run,
    opts,
    {
      batchFinished: () => {
        throw new Error('observer bug');
      },
    },
    clock,
  );
  const first = b.submit(1, { deadline: Infinity });
  const second = b.submit(2, { deadline: Infinity });
  await flush();
  runner.calls[0].d.resolve(['a']);
  t.equal(await first, 'a');
  await flush();
  t.equal(runner.calls.length, 2, 'the second batch still ran');
  runner.calls[1].d.resolve(['b']);
  t.equal(await second, 'b');
  await t.rejects(b.submit(3, { deadline: NaN }), RangeError);
});
