/**
 * A deterministic fake {@link Clock} for batcher tests: time only moves when a test calls `advance`, and timers fire
 * in time order (ties in the order they were set), each with `now()` equal to its due time.
 *
 * This file holds no tests; it is a helper imported by the test files next to it.
 */
import type { Clock } from '../../src/batching/clock.js';

interface FakeTimer {
  readonly id: number;
  readonly at: number;
  readonly fn: () => void;
}

/** Lets every pending promise callback (and anything they chain) run: a macrotask turn comes after all microtasks. */
export async function flush(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
}

export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #timers = new Map<number, FakeTimer>();
  /** Every delay passed to setTimer, for tests that check what the batcher asked for. */
  readonly requested: number[] = [];

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(fn: () => void, ms: number): unknown {
    if (!Number.isFinite(ms)) throw new RangeError(`FakeClock.setTimer: bad delay ${ms}`);
    this.requested.push(ms);
    const id = ++this.#seq;
    this.#timers.set(id, { id, at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimer(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Timers set and neither fired nor cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Due time of the next timer, or undefined when none is pending. */
  nextAt(): number | undefined {
    return this.#next()?.at;
  }

  #next(): FakeTimer | undefined {
    let best: FakeTimer | undefined;
    for (const t of this.#timers.values()) {
      if (!best || t.at < best.at || (t.at === best.at && t.id < best.id)) best = t;
    }
    return best;
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due on the way in time order, with `now()` set to
   * each timer's due time while it runs. Timers set by a firing timer are honoured if they fall due in the window.
   * Synchronous: promise callbacks queued by the timers run only after the caller yields (see {@link flush}).
   */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`FakeClock.advance: bad step ${ms}`);
    const target = this.#now + ms;
    for (let guard = 0; ; guard++) {
      if (guard > 100_000) throw new Error('FakeClock.advance: timers keep rescheduling themselves');
      const t = this.#next();
      if (!t || t.at > target) break;
      this.#timers.delete(t.id);
      this.#now = t.at;
      t.fn();
    }
    this.#now = target;
  }

  /**
   * Like {@link advance}, but flushes promise callbacks after each timer fires, so work a timer starts (e.g. the
   * batcher handing a batch to its runner) happens at that timer's time rather than at the end of the step.
   */
  async tick(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`FakeClock.tick: bad step ${ms}`);
    const target = this.#now + ms;
    for (let guard = 0; ; guard++) {
      if (guard > 100_000) throw new Error('FakeClock.tick: timers keep rescheduling themselves');
      await flush();
      const t = this.#next();
      if (!t || t.at > target) break;
      this.#timers.delete(t.id);
      this.#now = t.at;
      t.fn();
    }
    this.#now = target;
    await flush();
  }
}
