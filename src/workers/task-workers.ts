import type { Worker } from 'node:worker_threads';
import { ping, type Op } from './ops.js';
import { sibling, startWorker } from './start-worker.js';
import { fromWire, transferables, type OpReply, type OpRequest } from './wire.js';

interface Pending {
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
}

/**
 * The ops in flight on one thread, by id. An id is a slot, reused once its op has settled: a long-lived Map that
 * every op is added to and deleted from would keep the ops' callers (their requests' whole object graphs) alive
 * through the event loop's minor GCs (see HandlerWatchdog in src/server/connection.ts).
 */
class PendingOps {
  readonly #slots: (Pending | undefined)[] = [];
  readonly #free: number[] = [];
  #size = 0;

  get size(): number {
    return this.#size;
  }

  add(p: Pending): number {
    const id = this.#free.pop() ?? this.#slots.length;
    this.#slots[id] = p;
    this.#size++;
    return id;
  }

  /** The op of `id`, no longer pending; undefined when it is not (settled already). */
  take(id: number): Pending | undefined {
    const p = this.#slots[id];
    if (p === undefined) return undefined;
    this.#slots[id] = undefined;
    this.#free.push(id);
    this.#size--;
    return p;
  }

  /** Every pending op, none pending any more. */
  takeAll(): Pending[] {
    const all = this.#slots.filter((p): p is Pending => p !== undefined);
    this.#slots.length = this.#free.length = this.#size = 0;
    return all;
  }
}

interface Thread {
  readonly worker: Worker;
  readonly pending: PendingOps;
}

/**
 * The threads the tasks' CPU work runs on (ops: image decoding and sampling, audio decoding and resampling, OCR
 * post-processing), so that the event loop only speaks HTTP, admits, queues and answers. An op goes to the
 * thread with the fewest ops in flight; a thread starts on first use and holds the process open only while it has
 * work. With 0 threads the ops run on the event loop (in slices where they are long), as they did before.
 *
 * A thread that dies fails the ops it had (500) and is replaced by the next op; nothing else is lost.
 */
export class TaskWorkers {
  readonly #threads: (Thread | undefined)[];
  readonly #imageThreads: number;
  readonly #nice: number;
  readonly #entry: URL;
  #closed = false;
  /** Ops running inline on the event loop now. */
  #inline = 0;
  /** Requests in progress in the server (see {@link requestStarted}). */
  #requests = 0;

  /**
   * @param threads worker threads (0: run on the calling thread)
   * @param imageThreads libvips threads per image on each worker
   * @param nice how much lower than the event loop the workers' CPU priority is (MUON_WORKER_NICE)
   */
  constructor(threads: number, imageThreads = 1, entry = sibling('task-worker', import.meta.url), nice = 0) {
    if (!Number.isInteger(threads) || threads < 0) throw new RangeError(`threads must be >= 0, got ${threads}`);
    this.#threads = Array.from({ length: threads }, () => undefined);
    this.#imageThreads = imageThreads;
    this.#nice = nice;
    this.#entry = entry;
  }

  /**
   * A request is in progress from this call until {@link requestEnded}: an `inline` op runs on the event loop only
   * while at most one is (see {@link run}). The served models count theirs (LoadedModel), an OCR page's lines too.
   */
  requestStarted(): void {
    this.#requests++;
  }

  requestEnded(): void {
    this.#requests--;
  }

  /** Worker threads (0 when ops run on the event loop). */
  get size(): number {
    return this.#threads.length;
  }

  /**
   * Runs one op. `move` lists arrays of the arguments the caller gives up: they travel without a copy when each
   * spans its whole buffer (and are unusable here afterwards). `signal` stops a long op between slices when it runs
   * on the event loop; on a worker the op runs to its end, off the loop. `inline` runs it here when the request it
   * prepares is the only one in progress (see {@link requestStarted}) and nothing else is being prepared (no op on
   * a thread, none inline): for work smaller than the hop to a thread (see {@link isSmallImage}), which a lone
   * request should not pay, but which, beside other requests, would hold up the loop. (Testing for ops in flight
   * alone was not enough: an inline op ends before the loop reads the next request, so under load every small
   * image was prepared on the loop.)
   */
  run<A, R>(
    op: Op<A, R>,
    args: A,
    opts: { move?: readonly ArrayBufferView[]; signal?: AbortSignal; inline?: boolean } = {},
  ): Promise<R> {
    if (this.#threads.length === 0) return op.run(args, opts.signal);
    if (
      opts.inline === true &&
      this.#requests <= 1 &&
      this.#inline === 0 &&
      this.#threads.every((t) => !t?.pending.size)
    ) {
      this.#inline++;
      const done = () => void this.#inline--;
      try {
        return op.run(args, opts.signal).finally(done);
      } catch (err) {
        done(); // an op that throws before it returns its promise
        return Promise.reject(err as Error);
      }
    }
    if (this.#closed) return Promise.reject(new Error('task workers are closed'));
    // a cold pool starts whole, so that ops spread from the first (a failed start fails the op below, not this)
    if (this.#threads.includes(undefined)) this.warm().catch(() => {});
    return this.#post(this.#threads[this.#leastBusy()]!, op, args, opts.move);
  }

  /**
   * Starts every thread and resolves once each has loaded its modules and answered (the repository calls it while
   * models load, so that the first requests do not wait for a thread to boot, nor stagger behind one that does).
   */
  async warm(): Promise<void> {
    if (this.#closed) return;
    for (let slot = 0; slot < this.#threads.length; slot++) this.#threads[slot] ??= this.#start(slot);
    await Promise.all(this.#threads.map((t) => t && this.#post(t, ping, {})));
  }

  #post<A, R>(thread: Thread, op: Op<A, R>, args: A, move: readonly ArrayBufferView[] = []): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      if (thread.pending.size === 0) thread.worker.ref();
      const id = thread.pending.add({ resolve: resolve as (v: unknown) => void, reject });
      const msg: OpRequest = { id, op: op.name, args };
      try {
        thread.worker.postMessage(msg, transferables(move));
      } catch (err) {
        this.#settle(thread, id);
        reject(err as Error);
      }
    });
  }

  /** Stops every thread; ops in flight fail. */
  async close(): Promise<void> {
    this.#closed = true;
    const threads = this.#threads.filter((t): t is Thread => t !== undefined);
    this.#threads.fill(undefined);
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  #leastBusy(): number {
    let best = 0;
    let load = Infinity;
    this.#threads.forEach((t, i) => {
      const n = t?.pending.size ?? 0;
      if (n < load) [best, load] = [i, n];
    });
    return best;
  }

  #start(slot: number): Thread {
    const worker = startWorker(this.#entry, { imageThreads: this.#imageThreads, nice: this.#nice });
    const thread: Thread = { worker, pending: new PendingOps() };
    worker.unref();
    worker.on('message', (reply: OpReply) => {
      const p = this.#settle(thread, reply.id);
      if (!p) return;
      if (reply.ok) p.resolve(reply.result);
      else p.reject(fromWire(reply.error));
    });
    let why = 'exited';
    // a reply that cannot be read back (it should never happen: ops return plain data) ends the thread, which fails
    // its ops once it has stopped: an op's caller may lend it memory it writes (a row slot), taken back on failure
    worker.on('messageerror', (err) => {
      why = `sent a reply that could not be read (${err.message})`;
      if (this.#threads[slot] === thread) this.#threads[slot] = undefined; // no new op for it; the next starts one
      void worker.terminate();
    });
    worker.on('error', (err) => (why = err.message));
    worker.on('exit', (code) => {
      if (this.#threads[slot] === thread) this.#threads[slot] = undefined; // the next op starts a new one
      for (const p of thread.pending.takeAll()) p.reject(new Error(`task worker ${why} (code ${code})`));
    });
    return thread;
  }

  #settle(thread: Thread, id: number): Pending | undefined {
    const p = thread.pending.take(id);
    if (thread.pending.size === 0) thread.worker.unref();
    return p;
  }
}

/** Ops on the calling thread: for tools (the compressor, benches) that need no event loop kept free. */
export const inlineTaskWorkers = new TaskWorkers(0);
