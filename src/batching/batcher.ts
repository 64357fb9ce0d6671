import { systemClock, type Clock } from './clock.js';

/**
 * Limits of one batching queue. They mirror Triton's `dynamic_batching` block so a Triton user reads them at once.
 */
export interface BatchingOptions {
  /** Largest batch handed to the runner (1 disables batching). */
  readonly maxBatchSize: number;
  /** Batch sizes the runner is fastest at; a batch is cut as soon as the largest of them is reached. */
  readonly preferredBatchSizes: readonly number[];
  /** How long the oldest queued request may wait for company before its batch is cut anyway. */
  readonly maxQueueDelayMs: number;
  /** Requests allowed to wait (not counting those already computing); more are refused at the door. */
  readonly maxQueueSize: number;
  /** Batches computing at once; 1 lets the next batch form while the current one runs. */
  readonly maxInFlightBatches: number;
}

/** Runs one batch. Must return exactly one output per input, in order. */
export type BatchRunner<In, Out> = (inputs: In[]) => Promise<Out[]>;

/** Why the batcher refused or dropped a request. */
export type BatcherErrorReason = 'queue_full' | 'deadline' | 'cancelled' | 'closed';

/** A request the batcher refused or dropped before computing it. The server maps `reason` to an HTTP answer. */
export class BatcherError extends Error {
  /** @param reason stable machine-readable cause */
  constructor(
    readonly reason: BatcherErrorReason,
    message: string,
  ) {
    super(message);
    this.name = 'BatcherError';
  }
}

/**
 * What a batch runner returns in place of one member's output to fail that member alone (the others still get
 * theirs): for runners that retry a failed batch member by member.
 */
export class RowFailure {
  constructor(readonly cause: unknown) {}
}

/** Per-request options of {@link Batcher.submit}. */
export interface SubmitOptions {
  /** Absolute time on the batcher's clock after which the request is dropped if it has not started computing. */
  readonly deadline: number;
  /** Aborting it (client gone) removes the request from the queue before it costs compute. */
  readonly signal?: AbortSignal;
  /**
   * Only requests with equal keys share a batch (e.g. a tensor shape), so inputs that cannot be stacked never
   * meet in one batch. Defaults to one key for all.
   */
  readonly key?: string;
  /** Not refused for a full queue: the caller bounds what it queues (a stage request whose page was admitted). */
  readonly admitted?: boolean;
}

/** What the batcher reports as it works; the server turns these into metrics. All hooks are optional. */
export interface BatchObserver {
  /** A batch was cut; `queueWaitMs` holds each member's time in the queue. */
  batchStarted?(size: number, queueWaitMs: readonly number[]): void;
  /** A batch finished (successfully or not) after `durationMs` of compute. */
  batchFinished?(size: number, durationMs: number, error: unknown): void;
  /** Requests left the queue without being computed. */
  dropped?(reason: 'deadline' | 'cancelled', count: number): void;
  /** The number of waiting requests changed. */
  depthChanged?(depth: number): void;
}

interface Entry<In, Out> {
  readonly input: In;
  readonly key: string;
  readonly enqueuedAt: number;
  readonly deadline: number;
  readonly resolve: (out: Out) => void;
  readonly reject: (err: unknown) => void;
  readonly signal?: AbortSignal;
}

/**
 * The batchers a signal's requests were queued on, kept on the signal itself. The signal gets one 'abort' listener,
 * added when a batcher first sees it, that cancels its requests on each of them. A request does not add and remove
 * a listener of its own: the server's signals are its connections' and live as long as they do, and a long-lived
 * listener list (as a long-lived Map or Set) that a request was added to and removed from kept the request's whole
 * object graph alive through minor GCs, into the old space: at 10,000 small requests a second every scavenge took
 * 12-14 ms and a full collection ran every second.
 */
const queuedOn = Symbol('muon.batchers');
type WatchedSignal = AbortSignal & { [queuedOn]?: WeakRef<Batcher<unknown, unknown>>[] };

/**
 * A bounded dynamic-batching queue in front of one runner, knowing nothing of HTTP or ONNX.
 *
 * Cut rule, checked whenever a batch finishes or a timer fires, and once per turn of the event loop in which
 * requests arrived (Triton's dynamic batcher; the turn is what a Node server reads at once: the requests whose bytes
 * came in together are queued before the cut, so an idle model's first batch takes all of them instead of the first
 * alone):
 * 1. expired requests are rejected first, so they never cost compute;
 * 2. the batch is the oldest request plus the following requests with the same key, up to `maxBatchSize`;
 * 3. it is sent when it cannot grow (`maxBatchSize` reached, or the batcher is closing), when the largest
 *    preferred size is reached, or when its oldest request has waited `maxQueueDelayMs` (then trimmed to the
 *    largest preferred size that fits, if any);
 * 4. otherwise the batcher sleeps until the nearest of that delay expiry and any queued request's deadline.
 * While `maxInFlightBatches` batches compute, the next batch keeps forming in the queue.
 */
export class Batcher<In, Out> {
  readonly options: BatchingOptions;
  readonly #run: BatchRunner<In, Out>;
  readonly #clock: Clock;
  readonly #observer: BatchObserver;
  readonly #maxPreferred: number;
  #queue: Entry<In, Out>[] = [];
  #inFlight = 0;
  #timer: unknown = undefined;
  #closing = false;
  /** Set while {@link submitAll} queues its inputs, so the cut waits for all of them. */
  #holding = false;
  #drained: (() => void)[] = [];
  /** A cut is scheduled for the end of this turn of the event loop ({@link Clock.afterTurn}). */
  #pumpScheduled = false;
  /** Exponential moving average of batch compute time, for the Retry-After estimate. */
  #batchMsEma = 0;
  /** What signals hold of this batcher: a weak reference, so a connection does not keep an unloaded model's. */
  readonly #ref = new WeakRef(this as Batcher<unknown, unknown>);

  /**
   * @param run computes one batch
   * @param options queue limits; validated here, so a bad value fails at model load, not on the first request
   * @param observer receives progress events (metrics)
   * @param clock time source; tests pass a fake one
   */
  constructor(run: BatchRunner<In, Out>, options: BatchingOptions, observer: BatchObserver = {}, clock = systemClock) {
    validateOptions(options);
    this.options = Object.freeze({
      ...options,
      preferredBatchSizes: [...options.preferredBatchSizes].sort((a, b) => a - b),
    });
    this.#run = run;
    this.#observer = observer;
    this.#clock = clock;
    this.#maxPreferred = this.options.preferredBatchSizes.at(-1) ?? 0;
  }

  /** Requests waiting to be computed. */
  get depth(): number {
    return this.#queue.length;
  }

  /** Batches computing now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** A rough wait for a newcomer in milliseconds: queued batches times the recent batch compute time. */
  estimatedWaitMs(): number {
    const batches = Math.ceil((this.#queue.length + 1) / this.options.maxBatchSize) + this.#inFlight;
    return batches * this.#batchMsEma;
  }

  /**
   * The drop a request is due before it is queued, counted as one (its client gone, or its deadline passed), or
   * undefined. {@link submit} applies it; a caller about to prepare a request checks it first, to spare the work.
   */
  dropped(opts: Pick<SubmitOptions, 'deadline' | 'signal'>): BatcherError | undefined {
    if (opts.signal?.aborted) {
      this.#observer.dropped?.('cancelled', 1);
      return new BatcherError('cancelled', 'the client went away');
    }
    if (opts.deadline <= this.#clock.now()) {
      this.#observer.dropped?.('deadline', 1);
      return new BatcherError('deadline', 'the request deadline passed before it was queued');
    }
    return undefined;
  }

  /**
   * Queues one input and resolves with its output once its batch has run.
   * Rejects with {@link BatcherError} when refused (`queue_full`, `closed`) or dropped (`deadline`, `cancelled`),
   * and with the runner's error when its batch fails.
   */
  submit(input: In, opts: SubmitOptions): Promise<Out> {
    if (this.#closing) return Promise.reject(new BatcherError('closed', 'the model is shutting down'));
    if (Number.isNaN(opts.deadline)) return Promise.reject(new RangeError('deadline must be a number; this is a bug'));
    const dropped = this.dropped(opts);
    if (dropped) return Promise.reject(dropped);
    const now = this.#clock.now();
    if (this.#queue.length >= this.options.maxQueueSize && !opts.admitted) {
      return Promise.reject(new BatcherError('queue_full', `the queue is full (${this.options.maxQueueSize} waiting)`));
    }
    return new Promise<Out>((resolve, reject) => {
      if (opts.signal) this.#watch(opts.signal);
      this.#queue.push({
        input,
        key: opts.key ?? '',
        enqueuedAt: now,
        deadline: opts.deadline,
        resolve,
        reject,
        signal: opts.signal,
      });
      if (!this.#holding) this.#pumpAfterTurn();
    });
  }

  /**
   * Queues several inputs at once: all are in the queue before the next cut is decided, so they can share one
   * batch even when the batcher is idle (on a clock without turns, one `submit` after another would send the first
   * alone; the system clock's end-of-turn cut groups them anyway). A sequence
   * scheduler submits one step of all its active sequences this way. Each promise settles as `submit`'s would.
   */
  submitAll(items: readonly { readonly input: In; readonly opts: SubmitOptions }[]): Promise<Out>[] {
    this.#holding = true;
    let promises: Promise<Out>[];
    try {
      promises = items.map(({ input, opts }) => this.submit(input, opts));
    } finally {
      this.#holding = false;
    }
    this.#pumpAfterTurn();
    return promises;
  }

  /**
   * Stops accepting requests, sends everything queued without waiting for company, and resolves when the last
   * batch has finished. Safe to call more than once.
   */
  close(): Promise<void> {
    this.#closing = true;
    const done = new Promise<void>((resolve) => this.#drained.push(resolve));
    this.#pump();
    return done;
  }

  /** Makes sure that aborting `signal` cancels its requests queued here (see {@link queuedOn}). */
  #watch(signal: WatchedSignal): void {
    let batchers = signal[queuedOn];
    if (batchers === undefined) {
      const listeners: WeakRef<Batcher<unknown, unknown>>[] = (batchers = signal[queuedOn] = []);
      signal.addEventListener('abort', () => {
        for (const ref of listeners) {
          const batcher = ref.deref();
          if (batcher !== undefined) batcher.#cancel(signal);
        }
      });
    }
    if (batchers.includes(this.#ref)) return;
    // a long-lived connection may outlive batchers (models reloaded, unloaded): theirs are dropped, in place, since
    // the listener reads this array
    if (batchers.length >= 8) {
      let kept = 0;
      for (const ref of batchers) if (ref.deref() !== undefined) batchers[kept++] = ref;
      batchers.length = kept;
    }
    batchers.push(this.#ref);
  }

  /** Rejects the requests of `signal` still queued; those already cut into a batch compute, their answers unread. */
  #cancel(signal: AbortSignal): void {
    const gone = this.#queue.filter((e) => e.signal === signal);
    if (gone.length === 0) return;
    this.#queue = this.#queue.filter((e) => e.signal !== signal);
    for (const e of gone) e.reject(new BatcherError('cancelled', 'the client went away'));
    this.#observer.dropped?.('cancelled', gone.length);
    this.#pump();
  }

  /** Arrivals: one cut at the end of this turn of the event loop for all of them (at once on a clock without turns). */
  #pumpAfterTurn(): void {
    if (this.#clock.afterTurn === undefined) return this.#pump();
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    this.#clock.afterTurn(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  /** The single scheduling step; every state change ends here. */
  #pump(): void {
    if (this.#timer !== undefined) {
      this.#clock.clearTimer(this.#timer);
      this.#timer = undefined;
    }
    const now = this.#clock.now();
    this.#expire(now);
    while (this.#inFlight < this.options.maxInFlightBatches && this.#queue.length > 0) {
      const batch = this.#cut(now);
      if (!batch) break;
      this.#launch(batch, now);
    }
    this.#observer.depthChanged?.(this.#queue.length);
    this.#arm(now);
    if (this.#closing && this.#queue.length === 0 && this.#inFlight === 0) {
      for (const resolve of this.#drained.splice(0)) resolve();
    }
  }

  #expire(now: number): void {
    if (!this.#queue.some((e) => e.deadline <= now)) return;
    const kept: Entry<In, Out>[] = [];
    let dropped = 0;
    for (const e of this.#queue) {
      if (e.deadline > now) {
        kept.push(e);
        continue;
      }
      dropped++;
      e.reject(new BatcherError('deadline', 'the request deadline passed while it was queued'));
    }
    this.#queue = kept;
    this.#observer.dropped?.('deadline', dropped);
  }

  /** Returns the batch to send now, removed from the queue, or undefined to keep waiting. */
  #cut(now: number): Entry<In, Out>[] | undefined {
    const head = this.#queue[0];
    const { maxBatchSize, maxQueueDelayMs, preferredBatchSizes } = this.options;
    const candidates: Entry<In, Out>[] = [];
    for (const e of this.#queue) {
      if (e.key === head.key) candidates.push(e);
      if (candidates.length === maxBatchSize) break;
    }
    let size: number | undefined;
    if (candidates.length === maxBatchSize || this.#closing) {
      size = candidates.length;
    } else if (this.#maxPreferred > 0 && candidates.length >= this.#maxPreferred) {
      size = this.#maxPreferred;
    } else if (now - head.enqueuedAt >= maxQueueDelayMs) {
      size = preferredBatchSizes.findLast((p) => p <= candidates.length) ?? candidates.length;
    }
    if (size === undefined) return undefined;
    const batch = candidates.slice(0, size);
    const taken = new Set(batch);
    this.#queue = this.#queue.filter((e) => !taken.has(e));
    return batch;
  }

  #launch(batch: Entry<In, Out>[], now: number): void {
    this.#inFlight++;
    this.#observer.batchStarted?.(
      batch.length,
      batch.map((e) => now - e.enqueuedAt),
    );
    // Observers must not throw; if one does, its error is dropped here so that a metrics bug can neither stall
    // the queue (#compute pumps in a finally) nor crash the process with an unhandled rejection.
    this.#compute(batch).catch(() => {});
  }

  /** Runs one batch, settles each member exactly once, then schedules the next cut. */
  async #compute(batch: Entry<In, Out>[]): Promise<void> {
    const started = this.#clock.now();
    let error: unknown;
    try {
      // a microtask later, so a runner that throws synchronously never re-enters #pump
      const outputs = await Promise.resolve().then(() => this.#run(batch.map((e) => e.input)));
      if (!Array.isArray(outputs) || outputs.length !== batch.length) {
        throw new Error(`batch runner returned ${outputs?.length} outputs for ${batch.length} inputs; this is a bug`);
      }
      batch.forEach((e, i) => {
        const out: unknown = outputs[i];
        if (out instanceof RowFailure) e.reject(out.cause);
        else e.resolve(outputs[i]);
      });
    } catch (err) {
      error = err;
      for (const e of batch) e.reject(err);
    }
    const ms = this.#clock.now() - started;
    this.#batchMsEma = this.#batchMsEma === 0 ? ms : 0.8 * this.#batchMsEma + 0.2 * ms;
    this.#inFlight--;
    try {
      this.#observer.batchFinished?.(batch.length, ms, error);
    } finally {
      this.#pump(); // a throwing observer must not stall the queue
    }
  }

  /** Sleeps until the nearest moment the queue needs attention: a delay expiry or a deadline. */
  #arm(now: number): void {
    if (this.#queue.length === 0) return;
    let wake = Infinity;
    if (this.#inFlight < this.options.maxInFlightBatches)
      wake = this.#queue[0].enqueuedAt + this.options.maxQueueDelayMs;
    for (const e of this.#queue) if (e.deadline < wake) wake = e.deadline;
    if (wake === Infinity) return;
    this.#timer = this.#clock.setTimer(() => {
      this.#timer = undefined;
      this.#pump();
    }, wake - now);
  }
}

function validateOptions(o: BatchingOptions): void {
  const int = (name: keyof BatchingOptions, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min)
      throw new RangeError(`batching.${name} must be an integer >= ${min}, got ${v}`);
  };
  int('maxBatchSize', o.maxBatchSize, 1);
  int('maxQueueSize', o.maxQueueSize, 1);
  int('maxInFlightBatches', o.maxInFlightBatches, 1);
  if (!(Number.isFinite(o.maxQueueDelayMs) && o.maxQueueDelayMs >= 0)) {
    throw new RangeError(`batching.maxQueueDelayMs must be a number >= 0, got ${o.maxQueueDelayMs}`);
  }
  for (const p of o.preferredBatchSizes) {
    if (!Number.isInteger(p) || p < 1 || p > o.maxBatchSize) {
      throw new RangeError(`batching.preferredBatchSizes entries must be integers in [1, maxBatchSize], got ${p}`);
    }
  }
}
