// Client errors are paced per client address: a client that keeps sending requests the server refuses (a retry loop
// around a malformed request, a brute-forced admin token) gets each further refusal a little later, so that a client
// which waits for its answers, as nearly all do, slows to the configured rate of errors and leaves the CPU to the
// requests that succeed. Nothing else changes: a successful answer is never delayed, every refusal is still sent,
// and what the request held of the memory budget is given back before the wait.

/** Clients remembered at most; beyond it, those with a full allowance (who owe nothing) are forgotten first. */
const MAX_CLIENTS = 10_000;

interface Allowance {
  /** Refusals the client may still get at once; negative: owed, each 1 / rate seconds. */
  tokens: number;
  at: number;
  /** Refusals of this client waiting to be sent. */
  waiting: number;
}

/** Why an answer is not delayed although it is over the rate, so that the caller sends it now. */
export type Undelayed = 'within-rate' | 'too-many-waiting';

/**
 * A token bucket of client errors per client: `burst` refusals at once, then `rate` per second. {@link delayFor}
 * says how long a refusal is held; the delay never exceeds `maxDelayMs`, and a client already owed `maxWaiting`
 * held refusals gets its next one at once (so that held answers stay few, whatever a client sends).
 */
export class ErrorPacer {
  readonly #rate: number;
  readonly #burst: number;
  readonly #maxDelayMs: number;
  readonly #maxWaiting: number;
  readonly #clients = new Map<string, Allowance>();

  constructor(o: { rate: number; burst?: number; maxDelayMs?: number; maxWaiting?: number }) {
    if (!(o.rate > 0)) throw new RangeError(`rate must be > 0, got ${o.rate}`);
    this.#rate = o.rate;
    this.#burst = o.burst ?? 2 * o.rate;
    this.#maxDelayMs = o.maxDelayMs ?? 1000;
    this.#maxWaiting = o.maxWaiting ?? 64;
  }

  /**
   * Charges one refusal to `client` and returns how long to hold it (ms), or why it goes now. Call {@link sent}
   * once a held refusal has gone.
   */
  delayFor(client: string, now = performance.now()): number | Undelayed {
    let a = this.#clients.get(client);
    if (a === undefined) {
      if (this.#clients.size >= MAX_CLIENTS) this.#forget(now);
      a = { tokens: this.#burst, at: now, waiting: 0 };
      this.#clients.set(client, a);
    }
    a.tokens = Math.min(this.#burst, a.tokens + ((now - a.at) * this.#rate) / 1000);
    a.at = now;
    if (a.tokens >= 1) {
      a.tokens -= 1;
      return 'within-rate';
    }
    if (a.waiting >= this.#maxWaiting) return 'too-many-waiting';
    // what is owed is capped at the longest delay: a client does not build up a debt it could never pay
    a.tokens = Math.max(a.tokens - 1, -(this.#maxDelayMs * this.#rate) / 1000);
    a.waiting++;
    // the refusal goes once what the client owes has refilled
    return Math.min(this.#maxDelayMs, (-a.tokens * 1000) / this.#rate);
  }

  /** A held refusal of `client` has been sent. */
  sent(client: string): void {
    const a = this.#clients.get(client);
    if (a && a.waiting > 0) a.waiting--;
  }

  /** Clients remembered (for tests). */
  get size(): number {
    return this.#clients.size;
  }

  /** Forgets the clients whose allowance has refilled, else the longest unseen half. */
  #forget(now: number): void {
    for (const [client, a] of this.#clients) {
      if (a.waiting === 0 && a.tokens + ((now - a.at) * this.#rate) / 1000 >= this.#burst) this.#clients.delete(client);
    }
    if (this.#clients.size < MAX_CLIENTS) return;
    let drop = this.#clients.size / 2;
    for (const [client, a] of this.#clients) {
      if (drop-- <= 0) break;
      if (a.waiting === 0) this.#clients.delete(client);
    }
  }
}

/** Whether an answer counts as a client's error: a 4xx other than 429 (the server's overload, not the client's fault). */
export function isClientError(statusCode: number): boolean {
  return statusCode >= 400 && statusCode < 500 && statusCode !== 429;
}
