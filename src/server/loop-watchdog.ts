/**
 * Notices a blocked event loop: a timer that should fire every `tickMs` and fired `limitMs` late means the loop was
 * held that long. Liveness reports such a block for `windowMs` after it ended, so that an orchestrator restarts a
 * process that keeps wedging even when its probes sometimes get through between two blocks.
 */
export class LoopWatchdog {
  #last: number;
  #stall: { blockedMs: number; endedAt: number } | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #now: () => number;

  constructor(
    readonly limitMs: number,
    readonly windowMs = 60_000,
    tickMs = 100,
    now: () => number = () => performance.now(),
  ) {
    this.#last = now();
    this.#timer = setInterval(() => {
      const t = now();
      const blocked = t - this.#last - tickMs;
      this.#last = t;
      if (blocked > limitMs) this.#stall = { blockedMs: Math.round(blocked), endedAt: t };
    }, tickMs);
    this.#timer.unref();
    this.#now = now;
  }

  /** The last block over the limit, while it is recent; undefined when the loop has been healthy. */
  stalled(): { blockedMs: number; agoMs: number } | undefined {
    if (!this.#stall) return undefined;
    const agoMs = Math.round(this.#now() - this.#stall.endedAt);
    return agoMs <= this.windowMs ? { blockedMs: this.#stall.blockedMs, agoMs } : undefined;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
