import { Worker } from 'node:worker_threads';
import type { HostTensor, ServingSession, SessionOptions, TensorInfo } from './session.js';

// A model's sessions on worker threads: the event loop only posts feeds and receives outputs, so HTTP, decoding
// and the other models go on while a graph runs, and `instances` sessions of one model use that many cores.

/** What a worker is started with. */
export interface WorkerInit {
  readonly model: Uint8Array | string;
  readonly options: Omit<SessionOptions, 'onFallback'>;
}

/** Main thread to worker. */
export type WorkerRequest =
  { kind: 'run'; feeds: Record<string, HostTensor>; outputNames: readonly string[] } | { kind: 'release' };

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

interface Job {
  readonly feeds: Record<string, HostTensor>;
  readonly outputNames: readonly string[];
  readonly resolve: (outputs: Record<string, HostTensor>) => void;
  readonly reject: (err: Error) => void;
}

interface Instance {
  readonly worker: Worker;
  job?: Job;
  exited?: boolean;
}

/**
 * `instances` copies of one model, each on its own worker thread. `run` goes to an idle instance, or waits for one
 * in arrival order; one run at a time per instance, as onnxruntime-node runs them anyway.
 */
export class WorkerSessionPool implements ServingSession {
  readonly #instances: Instance[];
  readonly #idle: Instance[];
  readonly #waiting: Job[] = [];
  /** Why the pool cannot run any more (a worker died), once it cannot. */
  #broken: string | undefined;
  #released: Promise<void> | undefined;
  /** Called once nothing waits and no instance computes, while a release waits for that. */
  #onQuiet: (() => void) | undefined;

  private constructor(
    workers: Worker[],
    readonly inputs: TensorInfo[],
    readonly outputs: TensorInfo[],
    readonly provider: 'cuda' | 'cpu',
    readonly fallbackReason: string | undefined,
  ) {
    this.#instances = workers.map((worker) => ({ worker }));
    this.#idle = [...this.#instances];
    for (const instance of this.#instances) {
      instance.worker.on('message', (reply: WorkerReply) => this.#answer(instance, reply));
      instance.worker.on('error', (err) => this.#fail(`session worker failed: ${err.message}`));
      instance.worker.on('exit', (code) => {
        instance.exited = true;
        if (!this.#released) this.#fail(`session worker exited (code ${code})`);
      });
      instance.worker.unref();
    }
  }

  /**
   * Starts `instances` workers, each loading the model, and resolves once all of them are ready. `auto` falls back to
   * CPU in each worker alike; `onFallback` hears about it once.
   */
  static async create(model: Uint8Array | string, opts: SessionOptions, instances: number): Promise<WorkerSessionPool> {
    if (!Number.isInteger(instances) || instances < 1) throw new RangeError(`instances must be >= 1, got ${instances}`);
    const { onFallback, ...options } = opts;
    const init: WorkerInit = { model, options };
    const workers: Worker[] = [];
    try {
      const ready = await Promise.all(
        Array.from({ length: instances }, () => {
          const worker = startWorker(init);
          workers.push(worker);
          return firstReply(worker);
        }),
      );
      const first = ready[0];
      if (first.fallbackReason !== undefined) onFallback?.(first.fallbackReason);
      return new WorkerSessionPool(workers, first.inputs, first.outputs, first.provider, first.fallbackReason);
    } catch (err) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw err;
    }
  }

  /** Number of sessions, i.e. runs that can compute at once. */
  get instances(): number {
    return this.#instances.length;
  }

  /** Runs the graph on an idle instance (feeds are copied to it; outputs come back without a copy). */
  run(feeds: Record<string, HostTensor>, outputNames: readonly string[]): Promise<Record<string, HostTensor>> {
    if (this.#broken) return Promise.reject(new Error(this.#broken));
    if (this.#released) return Promise.reject(new Error('session released; this is a bug'));
    return new Promise((resolve, reject) => {
      this.#waiting.push({ feeds, outputNames, resolve, reject });
      this.#dispatch();
    });
  }

  /** Frees every instance's session and stops its thread, once the runs already asked for are answered. */
  release(): Promise<void> {
    this.#released ??= this.#quiet().then(async () => {
      await Promise.all(
        this.#instances
          .filter((instance) => !instance.exited)
          .map(({ worker }) => {
            const exited = new Promise((resolve) => worker.once('exit', resolve));
            worker.ref();
            worker.postMessage({ kind: 'release' } satisfies WorkerRequest);
            return exited;
          }),
      );
    });
    return this.#released;
  }

  /** Resolves once nothing waits and no instance computes. */
  #quiet(): Promise<void> {
    if (this.#broken || (this.#waiting.length === 0 && this.#idle.length === this.#instances.length))
      return Promise.resolve();
    return new Promise((resolve) => (this.#onQuiet = resolve));
  }

  #dispatch(): void {
    while (this.#idle.length > 0 && this.#waiting.length > 0) {
      const instance = this.#idle.pop()!;
      const job = this.#waiting.shift()!;
      instance.job = job;
      // a worker keeps the process alive only while it computes for someone
      instance.worker.ref();
      // one copy of each feed's own elements (a feed may view a larger pooled buffer, which stays here), handed over
      const feeds: Record<string, HostTensor> = {};
      for (const [name, t] of Object.entries(job.feeds)) feeds[name] = { ...t, data: t.data.slice() };
      instance.worker.postMessage(
        { kind: 'run', feeds, outputNames: job.outputNames } satisfies WorkerRequest,
        Object.values(feeds).map((t) => t.data.buffer as ArrayBuffer),
      );
    }
  }

  #answer(instance: Instance, reply: WorkerReply): void {
    const job = instance.job;
    if (!job) return;
    instance.job = undefined;
    if (!this.#released) instance.worker.unref();
    this.#idle.push(instance);
    if (reply.kind === 'result') job.resolve(reply.outputs);
    else job.reject(new Error(reply.kind === 'error' ? reply.message : `unexpected reply '${reply.kind}'`));
    this.#dispatch();
    if (this.#idle.length === this.#instances.length) this.#onQuiet?.();
  }

  /** A worker died (out of memory, a crash in JS): nothing more runs here; the model's requests fail with 500. */
  #fail(reason: string): void {
    this.#broken ??= reason;
    for (const instance of this.#instances) {
      instance.job?.reject(new Error(reason));
      instance.job = undefined;
    }
    for (const job of this.#waiting.splice(0)) job.reject(new Error(reason));
    this.#onQuiet?.();
  }
}

/** Starts one worker on the compiled entry, or on the TypeScript source through tsx when running from `src/`. */
function startWorker(init: WorkerInit): Worker {
  const fromSource = import.meta.url.endsWith('.ts');
  if (!fromSource) return new Worker(new URL('./session-worker.js', import.meta.url), { workerData: init });
  // tests and bench scripts run the sources through tsx, whose loader a worker does not inherit on Node 20
  const entry = JSON.stringify(new URL('./session-worker.ts', import.meta.url).href);
  const code = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${entry}); });`;
  return new Worker(code, { eval: true, workerData: init });
}

/** Waits for a new worker's first word: its session's signature, or why it could not load. */
function firstReply(worker: Worker): Promise<Extract<WorkerReply, { kind: 'ready' }>> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number) => reject(new Error(`session worker exited while loading (code ${code})`));
    worker.once('error', reject);
    worker.once('exit', onExit);
    worker.once('message', (reply: WorkerReply) => {
      worker.off('error', reject);
      worker.off('exit', onExit);
      if (reply.kind === 'ready') resolve(reply);
      else reject(new Error(reply.kind === 'failed' ? reply.message : `unexpected reply '${reply.kind}'`));
    });
  });
}
