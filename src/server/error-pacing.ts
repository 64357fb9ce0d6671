// Client errors are paced per client: a client that keeps sending requests the server refuses (a retry loop around
// a malformed request, a brute-forced admin token, a retry loop that ignores a 429's Retry-After) gets each further
// refusal a little later, so that a client which waits for its answers, as nearly all do, slows to the configured
// rate of errors. Nothing else changes: a successful answer is never delayed and every refusal is still sent. What a
// held refusal keeps is small: the request gives back its memory grants and drops its body before the wait, and few
// refusals are held at once.

/** Clients remembered at most; beyond it, the least recently refused are forgotten. */
const MAX_CLIENTS = 10_000;

/** What is remembered of one refused client. */
interface Client {
  /** Refusals the client may still get at once; negative: owed, each 1 / rate seconds. */
  tokens: number;
  /** When `tokens` was last brought up to date. */
  at: number;
  /** Refusals of this client waiting to be sent. */
  waiting: number;
  /**
   * The wait its 429s asked for: from the first 429 of the wait until its last Retry-After ends (see
   * {@link ErrorPacer.ignoredRetryAfter}); both 0 before any 429.
   */
  waitFrom: number;
  waitUntil: number;
}

/** Why an answer is not delayed although it may be over the rate, so that the caller sends it now. */
export type Undelayed = 'within-rate' | 'too-many-waiting';

/**
 * A token bucket of client errors per client: `burst` refusals at once, then `rate` per second. {@link delayFor}
 * says how long a refusal is held; the delay never exceeds `maxDelayMs`. A client already owed `maxWaiting` held
 * refusals gets its next one at once, and so does everyone once `maxHeld` refusals are held in all: held answers
 * stay few whatever clients send.
 */
export class ErrorPacer {
  readonly #rate: number;
  readonly #burst: number;
  readonly #maxDelayMs: number;
  readonly #maxWaiting: number;
  readonly #maxHeld: number;
  /** In the order they were last refused, least recent first. */
  readonly #clients = new Map<string, Client>();
  #held = 0;

  constructor(o: { rate: number; burst?: number; maxDelayMs?: number; maxWaiting?: number; maxHeld?: number }) {
    if (!(o.rate > 0)) throw new RangeError(`rate must be > 0, got ${o.rate}`);
    this.#rate = o.rate;
    this.#burst = o.burst ?? 2 * o.rate;
    this.#maxDelayMs = o.maxDelayMs ?? 1000;
    this.#maxWaiting = o.maxWaiting ?? 64;
    this.#maxHeld = o.maxHeld ?? 1024;
  }

  /**
   * Charges one refusal to `client` (see {@link clientKey}) and returns how long to hold it (ms), or why it goes
   * now. Call {@link sent} once a held refusal has gone.
   */
  delayFor(client: string, now = performance.now()): number | Undelayed {
    const a = this.#refused(client, now);
    a.tokens = Math.min(this.#burst, a.tokens + ((now - a.at) * this.#rate) / 1000);
    a.at = now;
    if (a.tokens >= 1) {
      a.tokens -= 1;
      return 'within-rate';
    }
    if (a.waiting >= this.#maxWaiting || this.#held >= this.#maxHeld) return 'too-many-waiting';
    // what is owed is capped at the longest delay: a client does not build up a debt it could never pay
    a.tokens = Math.max(a.tokens - 1, -(this.#maxDelayMs * this.#rate) / 1000);
    a.waiting++;
    this.#held++;
    // the refusal goes once what the client owes has refilled
    return Math.min(this.#maxDelayMs, (-a.tokens * 1000) / this.#rate);
  }

  /**
   * Records a 429 sent now to `client` with a Retry-After of `retryAfterMs`, and says whether the request it answers
   * arrived while an earlier 429 still asked that client to wait: a client that does not honour Retry-After (a retry
   * loop with no back-off), whose 429s are then paced like client errors, so that it cannot keep the server busy
   * refusing it. Requests sent together before the first 429 reached the client (a burst of first attempts) are not.
   */
  ignoredRetryAfter(client: string, arrivedAt: number, retryAfterMs: number, now = performance.now()): boolean {
    const c = this.#refused(client, now);
    const ignored = arrivedAt > c.waitFrom && arrivedAt < c.waitUntil;
    if (now >= c.waitUntil) c.waitFrom = now; // a new wait begins
    c.waitUntil = Math.max(c.waitUntil, now + retryAfterMs);
    return ignored;
  }

  /** A held refusal of `client` has been sent. */
  sent(client: string): void {
    this.#held--;
    const a = this.#clients.get(client);
    if (a && a.waiting > 0) a.waiting--;
  }

  /** Clients remembered, and refusals held (for tests). */
  get size(): { clients: number; held: number } {
    return { clients: this.#clients.size, held: this.#held };
  }

  /** The client's record, made if new, moved to the most recently refused end. */
  #refused(client: string, now: number): Client {
    let c = this.#clients.get(client);
    if (c === undefined) {
      c = { tokens: this.#burst, at: now, waiting: 0, waitFrom: 0, waitUntil: 0 };
      if (this.#clients.size >= MAX_CLIENTS) this.#forgetOldest();
    } else {
      this.#clients.delete(client);
    }
    this.#clients.set(client, c);
    return c;
  }

  /** Forgets the least recently refused tenth (their held refusals still go out; they start afresh if refused again). */
  #forgetOldest(): void {
    let drop = Math.ceil(MAX_CLIENTS / 10);
    for (const client of this.#clients.keys()) {
      if (drop-- <= 0) break;
      this.#clients.delete(client);
    }
  }
}

/**
 * The client a refusal is charged to: the peer's IPv4 address, or the /64 prefix of its IPv6 address (one host
 * commonly holds a whole /64, and would otherwise get a fresh allowance from each of its addresses).
 */
export function clientKey(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (!address.includes(':')) return address;
  const [head, tail = ''] = address.split('%')[0].toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = address.includes('::') && tail ? tail.split(':') : [];
  const groups = address.includes('::')
    ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => (Number.parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}

/**
 * Whether an answer counts as a client's error: a 4xx other than 429 (the server's overload, not the client's fault;
 * a 429 is paced only when its client did not wait as an earlier one asked: see ErrorPacer.ignoredRetryAfter).
 */
export function isClientError(statusCode: number): boolean {
  return statusCode >= 400 && statusCode < 500 && statusCode !== 429;
}
