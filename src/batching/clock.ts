/**
 * The batcher's only view of time. Production uses {@link systemClock}; tests pass a fake one so the cut rule
 * and deadlines can be checked without sleeping.
 */
export interface Clock {
  /** Milliseconds on a monotonic scale (not wall time). */
  now(): number;
  /** Schedules `fn` after `ms`; the returned handle is only ever passed back to {@link Clock.clearTimer}. */
  setTimer(fn: () => void, ms: number): unknown;
  /** Cancels a timer made by {@link Clock.setTimer}; a handle that already fired is ignored. */
  clearTimer(handle: unknown): void;
  /**
   * Runs `fn` once the event loop has handled the input that is ready now (`setImmediate`), so that requests that
   * arrive together are seen together. Absent (fake clocks), the batcher decides at once.
   */
  afterTurn?(fn: () => void): void;
}

/** The real clock: `performance.now()` and unref'ed timers, so a pending wake-up never keeps the process alive. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref();
    return t;
  },
  clearTimer(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
  afterTurn(fn) {
    setImmediate(fn);
  },
};
