import type { Worker } from 'node:worker_threads';
import { sibling, startWorker } from '../workers/start-worker.js';
import { PoisonedInputs } from './poisoned-inputs.js';
import { existsSync } from 'node:fs';
import {
  type ArgmaxReduction,
  copyOf,
  cudaProviderPath,
  type HostTensor,
  type ServingSession,
  type SessionOptions,
  type TensorInfo,
} from './session.js';

// A model's sessions on worker threads: the event loop only posts feeds and receives outputs, so HTTP, decoding
// and the other models go on while a graph runs, and `instances` sessions of one model use that many cores.

/** What a worker is started with. */
export interface WorkerInit {
  readonly model: Uint8Array | string;
  readonly options: Omit<SessionOptions, 'onFallback'>;
  /** How much lower than the event loop the worker's CPU priority is (MUON_WORKER_NICE). */
  readonly nice?: number;
}

/** Main thread to worker. */
export type WorkerRequest =
  | {
      kind: 'run';
      feeds: Record<string, HostTensor>;
      outputNames: readonly string[];
      reduce: Readonly<Record<string, ArgmaxReduction>>;
    }
  | { kind: 'release' };

/** Worker to main thread. */
export type WorkerReply =
  | {
      kind: 'ready';
      inputs: TensorInfo[];
      outputs: TensorInfo[];
      provider: 'cuda' | 'cpu';
      fallbackReason: string | undefined;
    }
  | { kind: 'failed'; message: string }
  | { kind: 'result'; outputs: Record<string, HostTensor> }
  | { kind: 'error'; message: string };

type Ready = Extract<WorkerReply, { kind: 'ready' }>;

/** What the pool tells its owner about workers that die (the owner logs and counts it). */
export interface PoolEvents {
  /** Receives one line when `auto` falls back to CPU. */
  readonly onFallback?: (reason: string) => void;
  /** A worker died; its run (if any) failed, and a replacement is starting. */
  readonly onRestart?: (reason: string) => void;
  /** Replacements kept dying: the pool refuses every run from now on. */
  readonly onBroken?: (reason: string) => void;
  /** The worker's entry module instead of session-worker: fault-injection tests wrap it. */
  readonly workerEntry?: URL;
  /** Inputs known to kill workers, shared by the model's versions (default: this pool's own). */
  readonly poisoned?: PoisonedInputs;
  /** How much lower than the event loop the workers' CPU priority is (MUON_WORKER_NICE). */
  readonly nice?: number;
}

interface Job {
  readonly feeds: Record<string, HostTensor>;
  readonly outputNames: readonly string[];
  readonly reduce: Readonly<Record<string, ArgmaxReduction>>;
  readonly resolve: (outputs: Record<string, HostTensor>) => void;
  readonly reject: (err: Error) => void;
}

interface Instance {
  readonly worker: Worker;
  /** Settles the start: the first reply, or the worker's death before it. */
  started?: { resolve: (r: Ready) => void; reject: (err: Error) => void };
  job?: Job;
  gone?: boolean;
  /** The last error the worker threw, for the message when it exits. */
  error?: string;
}

/** Replacements in a row that may die before one answers a run; then the pool gives up. */
const MAX_RESTARTS = 3;
/** How long a released worker may take to free its session and exit before it is terminated. */
const RELEASE_TIMEOUT_MS = 10_000;

/**
 * `instances` copies of one model, each on its own worker thread. `run` goes to an idle instance, or waits for one
 * in arrival order; one run at a time per instance, as onnxruntime-node runs them anyway. A worker that dies fails
 * only its own run and is replaced.
 */
export class WorkerSessionPool implements ServingSession {
  readonly #init: WorkerInit;
  readonly #events: PoolEvents;
  readonly #instances = new Set<Instance>();
  readonly #idle: Instance[] = [];
  readonly #waiting: Job[] = [];
  /** Why the pool cannot run any more, once it cannot. */
  #broken: string | undefined;
  #restartsInARow = 0;
  /** Inputs that killed workers: refused, not allowed to break the model. */
  readonly #poisoned: PoisonedInputs;
  #released: Promise<void> | undefined;
  /** Called once nothing waits and no instance computes, while a release waits for that. */
  #onQuiet: (() => void) | undefined;
  #signature!: Ready;

  private constructor(init: WorkerInit, events: PoolEvents) {
    this.#init = init;
    this.#events = events;
    this.#poisoned = events.poisoned ?? new PoisonedInputs();
  }

  /**
   * Starts the model's workers and resolves once all of them are ready: where CUDA is possible, one first, to learn
   * the provider it got, then the rest of `instances` for that provider. Fails when one cannot load, or when `auto` put some on CUDA and
   * others on the CPU (a GPU short of memory).
   */
  static async create(
    model: Uint8Array | string,
    opts: SessionOptions,
    instances: Readonly<Record<'cpu' | 'cuda', number>>,
    events: Omit<PoolEvents, 'onFallback'> = {},
  ): Promise<WorkerSessionPool> {
    for (const n of Object.values(instances))
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`instances must be >= 1, got ${n}`);
    const { onFallback, ...options } = opts;
    const pool = new WorkerSessionPool({ model, options, nice: events.nice }, { ...events, onFallback });
    // on a machine without the CUDA provider the answer is known: start them all at once
    const surelyCpu = options.provider === 'cpu' || !existsSync(cudaProviderPath());
    const starts = Array.from({ length: surelyCpu ? instances.cpu : 1 }, () => pool.#start());
    try {
      const first = await starts[0].ready;
      while (starts.length < instances[first.provider]) starts.push(pool.#start());
      const rest = await Promise.all(starts.slice(1).map((s) => s.ready));
      const elsewhere = rest.find((r) => r.provider !== first.provider);
      if (elsewhere) {
        throw new Error(
          `${starts.length} sessions of this model did not all get CUDA (one fell back to the CPU: ` +
            `${elsewhere.fallbackReason ?? first.fallbackReason}); lower maxInFlightBatches or free GPU memory`,
        );
      }
      // a worker that loaded and then died while the others loaded must not be handed runs
      const died = starts.find((s) => s.instance.gone);
      if (died)
        throw new Error(
          `a session worker exited while the others loaded${died.instance.error ? `: ${died.instance.error}` : ''}`,
        );
      pool.#signature = first;
      if (first.fallbackReason !== undefined) onFallback?.(first.fallbackReason);
      for (const { instance } of starts) pool.#idle.push(instance);
      return pool;
    } catch (err) {
      // waiting for their exit holds the process open: a worker that answered `failed` is already unreferenced (and
      // referencing it again did not hold the process open in a test), so with nothing else to do the process could
      // end before the caller hears why
      const holdOpen = setInterval(() => {}, 1000);
      try {
        // stopping a thread while onnxruntime is still creating its session aborts the whole process (a native
        // exception in a finalizer): the others finish loading first, for as long as a release may take
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.allSettled(starts.map((s) => s.ready)),
          new Promise((resolve) => (timer = setTimeout(resolve, RELEASE_TIMEOUT_MS))),
        ]);
        clearTimeout(timer);
        await Promise.all(starts.map((s) => s.instance.worker.terminate()));
      } finally {
        clearInterval(holdOpen);
      }
      throw err;
    }
  }

  get inputs(): TensorInfo[] {
    return this.#signature.inputs;
  }

  get outputs(): TensorInfo[] {
    return this.#signature.outputs;
  }

  get provider(): 'cuda' | 'cpu' {
    return this.#signature.provider;
  }

  get fallbackReason(): string | undefined {
    return this.#signature.fallbackReason;
  }

  /** Why the pool refuses to run, once replacements for dead workers kept dying. */
  get broken(): string | undefined {
    return this.#broken;
  }

  /** Sessions alive now (runs that can compute at once). */
  get instances(): number {
    return [...this.#instances].filter((i) => !i.started).length;
  }

  /** Feeds in shared memory are lent to the worker as they are (see {@link readsSharedMemory}). */
  readonly readsSharedMemory = true;

  /**
   * Runs the graph on an idle instance: feeds in shared memory are lent, others copied to it; outputs come back as
   * the worker posts them (see postToLoop), those named in `reduce` reduced there (see ModelSession.run).
   */
  run(
    feeds: Record<string, HostTensor>,
    outputNames: readonly string[],
    reduce: Readonly<Record<string, ArgmaxReduction>> = {},
  ): Promise<Record<string, HostTensor>> {
    if (this.#broken) return Promise.reject(new Error(this.#broken));
    if (this.#released) return Promise.reject(new Error('session released; this is a bug'));
    const deaths = this.#poisoned.refused(feeds);
    if (deaths !== undefined)
      return Promise.reject(new Error(`this input killed a session worker ${deaths} times; it is not run again`));
    return new Promise((resolve, reject) => {
      this.#waiting.push({ feeds, outputNames, reduce, resolve, reject });
      this.#dispatch();
    });
  }

  /** Frees every instance's session and stops its thread, once the runs already asked for are answered. */
  release(): Promise<void> {
    this.#released ??= this.#quiet().then(async () => {
      await Promise.all(
        [...this.#instances].map(({ worker, gone }) => {
          if (gone) return;
          const exited = new Promise((resolve) => worker.once('exit', resolve));
          worker.ref();
          worker.postMessage({ kind: 'release' } satisfies WorkerRequest);
          const timer = setTimeout(() => void worker.terminate(), RELEASE_TIMEOUT_MS);
          return exited.finally(() => clearTimeout(timer));
        }),
      );
    });
    return this.#released;
  }

  /** Starts one worker with its listeners in place from the first moment; `ready` settles with its first reply. */
  #start(): { instance: Instance; ready: Promise<Ready> } {
    const instance: Instance = {
      worker: startWorker(this.#events.workerEntry ?? sibling('session-worker', import.meta.url), this.#init),
    };
    const ready = new Promise<Ready>((resolve, reject) => (instance.started = { resolve, reject }));
    // whoever starts it may stop waiting (create gives up at the first failure): never an unhandled rejection
    ready.catch(() => {});
    this.#instances.add(instance);
    instance.worker.on('message', (reply: WorkerReply) => this.#onMessage(instance, reply));
    instance.worker.on('error', (err: unknown) => (instance.error = err instanceof Error ? err.message : String(err)));
    instance.worker.on('exit', (code) => this.#onExit(instance, code));
    return { instance, ready };
  }

  #onMessage(instance: Instance, reply: WorkerReply): void {
    const started = instance.started;
    if (started) {
      instance.started = undefined;
      // loading kept the process alive; from now on only a run does
      instance.worker.unref();
      if (reply.kind === 'ready') started.resolve(reply);
      else started.reject(new Error(reply.kind === 'failed' ? reply.message : `unexpected reply '${reply.kind}'`));
      return;
    }
    const job = instance.job;
    if (!job) return;
    instance.job = undefined;
    if (!this.#released) instance.worker.unref();
    this.#idle.push(instance);
    if (reply.kind === 'result') {
      this.#restartsInARow = 0;
      job.resolve(reply.outputs);
    } else job.reject(new Error(reply.kind === 'error' ? reply.message : `unexpected reply '${reply.kind}'`));
    this.#dispatch();
    this.#checkQuiet();
  }

  #onExit(instance: Instance, code: number): void {
    instance.gone = true;
    this.#instances.delete(instance);
    const at = this.#idle.indexOf(instance);
    if (at >= 0) this.#idle.splice(at, 1);
    const reason = `session worker exited (code ${code}${instance.error ? `: ${instance.error}` : ''})`;
    instance.started?.reject(new Error(reason));
    const job = instance.job;
    job?.reject(new Error(reason));
    instance.job = undefined;
    // a death counts against the input it ran; once an input has killed workers repeatedly it is to blame, not the
    // model: its deaths no longer count towards giving up on the model (and it is refused from now on)
    const inputsFault = job !== undefined && this.#poisoned.died(job.feeds);
    if (!this.#signature || this.#released || this.#broken) {
      // still starting (create fails), or shutting down: nothing to replace
      if (this.#instances.size === 0) this.#rejectWaiting(reason);
      this.#checkQuiet();
      return;
    }
    if (!inputsFault && ++this.#restartsInARow > MAX_RESTARTS) {
      this.#fail(`${reason}; ${MAX_RESTARTS} replacements in a row died too`);
      return;
    }
    this.#events.onRestart?.(reason);
    const replacement = this.#start();
    replacement.ready.then(
      (r) => {
        // under `auto` a replacement may land on the other provider (a GPU now short of memory): that counts as dying
        if (this.#released || this.#broken || r.provider !== this.provider)
          return void replacement.instance.worker.terminate();
        this.#idle.push(replacement.instance);
        this.#dispatch();
      },
      // a replacement that cannot load exits, and its exit counts towards MAX_RESTARTS like any other
      () => {},
    );
    this.#checkQuiet();
  }

  #dispatch(): void {
    while (this.#idle.length > 0 && this.#waiting.length > 0) {
      const instance = this.#idle.pop()!;
      const job = this.#waiting.shift()!;
      instance.job = job;
      // a worker keeps the process alive only while it computes for someone
      instance.worker.ref();
      // a feed in shared memory is lent as it is (the worker copies it before its run, and its owner takes it back
      // once the run settles: after the answer, or when the pool gives up, with the dying worker's answer unused);
      // any other is copied once, its own elements only (it may view a larger pooled buffer, which stays here), and
      // the copy handed over
      const feeds: Record<string, HostTensor> = {};
      const moved: ArrayBuffer[] = [];
      for (const [name, t] of Object.entries(job.feeds)) {
        if (t.data.buffer instanceof SharedArrayBuffer) feeds[name] = t;
        else {
          feeds[name] = { ...t, data: copyOf(t.data) };
          moved.push(feeds[name].data.buffer as ArrayBuffer);
        }
      }
      const run = { kind: 'run', feeds, outputNames: job.outputNames, reduce: job.reduce } satisfies WorkerRequest;
      instance.worker.postMessage(run, moved);
    }
  }

  /** Resolves once nothing waits and no instance computes. */
  #quiet(): Promise<void> {
    return new Promise((resolve) => {
      this.#onQuiet = resolve;
      this.#checkQuiet();
    });
  }

  #checkQuiet(): void {
    const computing = [...this.#instances].some((i) => i.job);
    if (this.#onQuiet && !computing && this.#waiting.length === 0) this.#onQuiet();
  }

  #rejectWaiting(reason: string): void {
    for (const job of this.#waiting.splice(0)) job.reject(new Error(reason));
  }

  /** Gives up: every run asked for and every later one fails with `reason`; the live workers are stopped. */
  #fail(reason: string): void {
    this.#broken = reason;
    this.#events.onBroken?.(reason);
    for (const instance of this.#instances) {
      instance.job?.reject(new Error(reason));
      instance.job = undefined;
      void instance.worker.terminate();
    }
    this.#rejectWaiting(reason);
    this.#checkQuiet();
  }
}
