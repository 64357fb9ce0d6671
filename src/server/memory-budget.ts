import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import type { ServerResponse } from 'node:http';
import { pipeline, type Readable, Transform } from 'node:stream';
import { Errors } from '../errors.js';
import { takeTurn } from './connection.js';

// What requests hold in memory, admitted against one budget: bodies being received, decoded pixels and samples,
// tensors and responses. A request states its cost before the expensive step; it is admitted at once, waits briefly
// for room, or is refused (429 with Retry-After when it could fit later, 413 when it never could).

/** Where the default budget came from, for `/v1/models` and the log. */
export type BudgetSource = 'MUON_MEMORY_BUDGET_BYTES' | 'cgroup' | 'ram';

/** Share of the container's memory limit (or of the machine's RAM) requests may hold: the rest is the models'. */
const CGROUP_SHARE = 0.5;
const RAM_SHARE = 0.25;

/**
 * The default budget: half the cgroup (v2 or v1) memory limit when the process runs under one, else a quarter of
 * the machine's RAM. Models, the runtime and the heap live in the rest.
 */
export function defaultBudget(read: (file: string) => string | undefined = readText): {
  bytes: number;
  source: BudgetSource;
} {
  const limit = cgroupLimit(read);
  if (limit !== undefined) return { bytes: Math.floor(limit * CGROUP_SHARE), source: 'cgroup' };
  return { bytes: Math.floor(totalmem() * RAM_SHARE), source: 'ram' };
}

export function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The cgroup memory limit in bytes, or undefined where there is none ("max", or v1's "unlimited" sentinel). */
export function cgroupLimit(read: (file: string) => string | undefined): number | undefined {
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    const text = read(file);
    if (text === undefined || text === 'max') continue;
    const v = Number(text);
    // cgroup v1 says "no limit" with a huge page-rounded number (2^63 - 4096)
    if (Number.isSafeInteger(v) && v > 0 && v < 2 ** 60) return Math.min(v, totalmem());
  }
  return undefined;
}

/**
 * The CPUs the cgroup's quota allows (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up; undefined
 * without a quota. A container limited to 2 CPUs on a 64-core host sees 64 cores otherwise, and would start threads
 * (and split onnxruntime's) for 64.
 */
export function cgroupCpuLimit(read: (file: string) => string | undefined = readText): number | undefined {
  const quota = (q: number, period: number) =>
    Number.isFinite(q) && Number.isFinite(period) && q > 0 && period > 0 ? Math.ceil(q / period) : undefined;
  const v2 = read('/sys/fs/cgroup/cpu.max')?.split(/\s+/);
  if (v2 && v2[0] !== 'max') return quota(Number(v2[0]), Number(v2[1] ?? 100_000));
  const v1 = read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us');
  if (v1 !== undefined && v1 !== '-1') return quota(Number(v1), Number(read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')));
  return undefined;
}

/** One admitted cost; `release` gives it back (idempotent). */
export interface Grant {
  readonly bytes: number;
  release(): void;
}

/** What the budget tells the metrics. */
export interface BudgetEvents {
  /** An admission ended: admitted at once, after waiting, or refused (429 or 413). */
  readonly onOutcome?: (outcome: 'admitted' | 'waited' | 'refused_busy' | 'refused_too_large') => void;
}

interface Waiter {
  readonly bytes: number;
  readonly grant: (g: Grant) => void;
  readonly timer: NodeJS.Timeout;
}

/** The errors a budget refuses with: a cost that could never fit, and one that found no room in time. */
export interface Refusals {
  tooLarge(cost: number, limit: number, what: string): Error;
  busy(cost: number, used: number, limit: number, what: string): Error;
}

/**
 * A budget of units (bytes, slots) shared by all requests. A cost that fits is admitted at once, even with larger
 * ones waiting (first fit: a waiting 50 MB page must not hold up every 10 KB request behind it, which took
 * ordinary goodput to 5 % under attack); one that does not fit waits (at most `waitMs`), and when room is made the
 * waiters are admitted in arrival order as far as they fit.
 */
export class AdmissionBudget {
  #used = 0;
  readonly #line: Waiter[] = [];

  constructor(
    readonly limit: number,
    /** How long a cost may wait for room before it is refused (429). */
    readonly waitMs: number,
    private readonly refusals: Refusals,
    private readonly events: BudgetEvents = {},
  ) {}

  /** Units held by admitted requests now. */
  get used(): number {
    return this.#used;
  }

  /**
   * Admits `bytes` for `what` (named in the refusal), waiting up to `waitMs` for room; else the refusals' errors.
   * `quiet`: a further step of a cost already counted (a body's next MiB): an admission at once is not counted again.
   */
  acquire(bytes: number, what: string, { quiet = false } = {}): Promise<Grant> {
    let now: Grant | undefined;
    try {
      now = this.tryAcquire(bytes, what, { quiet });
    } catch (err) {
      return Promise.reject(err);
    }
    return now === undefined ? this.#wait(Math.max(0, Math.ceil(bytes)), what) : Promise.resolve(now);
  }

  /**
   * {@link acquire} when `bytes` fit now (the common case, with no promise to wait on); undefined when they would
   * have to wait. Throws the refusal of a cost larger than the whole budget.
   */
  tryAcquire(bytes: number, what: string, { quiet = false } = {}): Grant | undefined {
    const cost = Math.max(0, Math.ceil(bytes));
    this.refuseIfTooLarge(cost, what);
    if (this.#used + cost > this.limit) return undefined;
    if (!quiet) this.events.onOutcome?.('admitted');
    return this.#take(cost);
  }

  #wait(cost: number, what: string): Promise<Grant> {
    return new Promise<Grant>((resolve, reject) => {
      const waiter: Waiter = {
        bytes: cost,
        grant: (g) => {
          clearTimeout(waiter.timer);
          this.events.onOutcome?.('waited');
          resolve(g);
        },
        timer: setTimeout(() => {
          this.#line.splice(this.#line.indexOf(waiter), 1);
          this.events.onOutcome?.('refused_busy');
          reject(this.refusals.busy(cost, this.#used, this.limit, what));
          this.#admitWaiting(); // the line may move now that its head left
        }, this.waitMs),
      };
      this.#line.push(waiter);
    });
  }

  /** Refuses (413, counted) a cost larger than the whole budget, which no wait could admit. */
  refuseIfTooLarge(bytes: number, what: string): void {
    if (bytes <= this.limit) return;
    this.events.onOutcome?.('refused_too_large');
    throw this.refusals.tooLarge(Math.ceil(bytes), this.limit, what);
  }

  /** Admits `bytes` without waiting, even past the limit (what is already in memory: a response being sent). */
  charge(bytes: number): Grant {
    return this.#take(Math.max(0, Math.ceil(bytes)));
  }

  #take(bytes: number): Grant {
    this.#used += bytes;
    let held = true;
    return {
      bytes,
      release: () => {
        if (!held) return;
        held = false;
        this.#used -= bytes;
        this.#admitWaiting();
      },
    };
  }

  #admitWaiting(): void {
    for (let i = 0; i < this.#line.length;) {
      const next = this.#line[i];
      if (this.#used + next.bytes > this.limit) {
        i++;
        continue;
      }
      this.#line.splice(i, 1);
      next.grant(this.#take(next.bytes));
    }
  }
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

/** The memory budget: bytes, refused with MUON_ERR_OVER_MEMORY_BUDGET (413) or MUON_ERR_MEMORY_BUSY (429). */
export class MemoryBudget extends AdmissionBudget {
  constructor(
    limitBytes: number,
    readonly source: BudgetSource,
    waitMs: number,
    events: BudgetEvents = {},
  ) {
    super(
      limitBytes,
      waitMs,
      {
        tooLarge: (cost, limit, what) =>
          new Errors.OVER_MEMORY_BUDGET(
            `${what} needs about ${mib(cost)} MiB, more than the server's whole memory budget of ${mib(limit)} MiB (MUON_MEMORY_BUDGET_BYTES)`,
          ),
        busy: (cost, used, limit, what) =>
          Object.assign(
            new Errors.MEMORY_BUSY(
              `${what} needs about ${mib(cost)} MiB; ${mib(used)} of ${mib(limit)} MiB are held by requests in progress`,
            ),
            { retryAfterSeconds: 1 },
          ),
      },
      events,
    );
  }
}

/**
 * What one request holds of the budgets. Its grants are given back once its answer is done with (sent, or the
 * client gone) and its handler has returned, whichever comes last: work a client walked away from (a decode that
 * cannot be stopped at once) still holds its memory until it ends.
 */
export class Holdings {
  readonly #grants: Grant[] = [];
  #answered = false;
  #handling = false;
  #released = false;
  #settled = false;

  #onAnswered: ((arg: never) => void) | undefined;
  #answeredArg: unknown;

  constructor(raw: ServerResponse) {
    if (raw.destroyed) this.#answered = true;
    else
      raw.once('close', () => {
        this.#answered = true;
        this.#onAnswered?.(this.#answeredArg as never);
        this.#releaseIfDone();
      });
  }

  /**
   * Has `fn(arg)` called once the answer is done with (sent, or the client gone), from the request's one `close`
   * listener. A function shared by every request and an argument, not a closure made per request: a per-request
   * closure called from here kept each request's whole object graph alive through the event loop's minor
   * collections, which then promoted it (at one connection about 1.8 MB per scavenge, each scavenge 5-10 ms instead
   * of 1-4; `bench/results/lone-request-retention.md`).
   */
  whenAnswered<T>(fn: (arg: T) => void, arg: T): void {
    this.#onAnswered = fn as (arg: never) => void;
    this.#answeredArg = arg;
  }

  /** True once the answer is done with (sent, or the client gone). */
  get answered(): boolean {
    return this.#answered;
  }

  add(grant: Grant): void {
    if (this.#released) grant.release();
    else this.#grants.push(grant);
  }

  /** Runs the request's handler: nothing is given back before it has returned. */
  async during<T>(handler: () => T | Promise<T>): Promise<T> {
    this.#handling = true;
    try {
      return await handler();
    } finally {
      this.#handling = false;
      this.#releaseIfDone();
    }
  }

  /**
   * The answer needs nothing the request was granted (a refusal, held back a while before it is sent): gives it all
   * back now, or once the handler returns.
   */
  settle(): void {
    this.#settled = true;
    this.#releaseIfDone();
  }

  #releaseIfDone(): void {
    if (!(this.#answered || this.#settled) || this.#handling) return;
    this.#released = true;
    for (const grant of this.#grants.splice(0)) grant.release();
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** What this request holds of the memory budget and the large-input lane (set for every request). */
    holdings: Holdings;
    /** Charges the body as it arrives (set for every request, in onRequest). */
    bodyMeter: BodyMeter;
  }
}

/** A body declared larger than this takes turns of the event loop as it is read (see {@link takeTurn}). */
const TAKES_TURNS = 256 * 1024;

/**
 * `payload` passed through, each chunk once `wait` lets it: `wait` gets the chunk's length and returns nothing when
 * it may go now, else a promise (a rejection becomes the stream's error, which reaches the reader).
 */
function gated(payload: Readable, wait: (bytes: number) => Promise<unknown> | undefined): Readable {
  const gate = new Transform({
    transform: (chunk: Buffer, _encoding, done) => {
      const waiting = wait(chunk.length);
      if (waiting === undefined) done(null, chunk);
      else waiting.then(() => done(null, chunk), done);
    },
  });
  pipeline(payload, gate, () => {}); // errors reach the reader through `gate`
  return gate;
}

/** A request body is charged to the budget in steps of this much as it arrives. */
const BODY_STEP = 2 ** 20;

/**
 * Charges a request body to the budget as its bytes arrive, a step at a time (a step waits for room like any other
 * cost): a connection that declares 8 MiB and stalls holds at most one step (1 MiB) more than it sent.
 */
export class BodyMeter {
  #received = 0;
  #charged = 0;

  constructor(
    private readonly budget: AdmissionBudget,
    private readonly holdings: Holdings,
    /** The body's content-length, when it has one (the last step is cut to it); 0 for a body that is never read. */
    private readonly declared: number | undefined,
  ) {}

  /**
   * Counts `bytes` more received. Returns nothing when they are admitted at once (the last step covers them, or the
   * next one fits now), else a promise that settles once they are admitted or refused.
   */
  received(bytes: number): Promise<void> | undefined {
    this.#received += bytes;
    if (this.#received <= this.#charged) return undefined;
    const owed = this.#received - this.#charged;
    const step = Math.max(owed, Math.min(BODY_STEP, (this.declared ?? Infinity) - this.#charged));
    // the first step counts as the body's admission; the next ones only when they wait or are refused
    const what = 'the request body';
    const quiet = this.#charged > 0;
    const admitted = (grant: Grant) => {
      this.holdings.add(grant);
      this.#charged += step;
    };
    try {
      const now = this.budget.tryAcquire(step, what, { quiet });
      if (now !== undefined) return void admitted(now);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.budget.acquire(step, what, { quiet }).then(admitted);
  }

  /**
   * `payload` with its bytes charged. A request without a body (declared 0, also for a body that is never read)
   * passes as it is; a body whose declared length fits one step is charged once, before it is read, and read as it
   * is, or taking turns of the event loop ({@link takeTurn}) when it is over {@link TAKES_TURNS}; a longer or
   * undeclared one goes through {@link stream}. (A pass-through stream costs more than a small request's whole
   * answer.)
   * @param chunked the request declares `transfer-encoding` (a body of unknown length)
   */
  meter(payload: Readable, chunked: boolean): Readable | Promise<Readable> {
    if (this.declared === undefined ? !chunked : this.declared === 0) return payload;
    if (this.declared !== undefined && this.declared <= BODY_STEP) {
      const read = () => (this.declared! > TAKES_TURNS ? gated(payload, takeTurn) : payload);
      return this.received(this.declared)?.then(read) ?? read();
    }
    return this.stream(payload);
  }

  /**
   * `payload` passed through, each chunk let on once admitted (the upload is paused while a step waits) and its
   * turn of the event loop allows ({@link takeTurn}).
   */
  stream(payload: Readable): Readable {
    return gated(payload, (bytes) => {
      const admitted = this.received(bytes);
      const turn = takeTurn(bytes);
      return admitted === undefined && turn === undefined ? undefined : Promise.all([admitted, turn]);
    });
  }
}

/** An input whose decoding holds this much is large: it takes a slot of the large-input lane. */
export const LARGE_INPUT_BYTES = 32 * 2 ** 20;

/**
 * The lane for large inputs (a 6300 x 6300 page, ten minutes of audio): at most half the cores' worth decode and
 * run at once, so they cannot take every core from ordinary requests; the others wait briefly, then get 429.
 */
export function largeInputLane(cpuCount: number, waitMs: number, events: BudgetEvents = {}): AdmissionBudget {
  const slots = Math.max(1, Math.floor(cpuCount / 2));
  return new AdmissionBudget(
    slots,
    waitMs,
    {
      tooLarge: () => new Error('a large input takes one slot; this is a bug'),
      busy: (_cost, used, _limit, what) =>
        Object.assign(new Errors.LARGE_INPUTS_BUSY(`${what}: ${used} of ${slots} slots are taken`), {
          retryAfterSeconds: 1,
        }),
    },
    events,
  );
}
