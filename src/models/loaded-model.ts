import { Batcher, BatcherError, type BatchingOptions, type BatchObserver } from '../batching/batcher.js';
import { Errors } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { type Manifest } from './manifest.js';
import { type HostTensor, type ServingSession } from './session.js';
import { checkFeeds, graphRejection, isolated, runTensorRows, TensorRow, type TensorOutputs } from './tensors.js';
import type { ModelInput, PredictParams, SubmitRows, TaskPipeline } from './tasks/task.js';
import type { TaskWorkers } from '../workers/task-workers.js';

/** Per-request options of {@link LoadedModel.infer}. */
export interface InferOptions extends PredictParams {
  /** Absolute deadline in `performance.now()` milliseconds. */
  readonly deadline: number;
  /** The timeout the deadline came from, for the error message. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** Already admitted by a pipeline that calls this model as a stage (its page was counted at its own door). */
  readonly admitted?: boolean;
}

/** What a {@link LoadedModel} is made of: the loader's product for one model version. */
export type ModelParts = Pick<
  LoadedModel,
  'name' | 'dir' | 'manifest' | 'session' | 'pipelineSession' | 'pipeline' | 'labels' | 'timeoutMs'
> & {
  /** Where the model's requests are counted as in progress (the task workers: a lone one is prepared inline). */
  readonly requests: Pick<TaskWorkers, 'requestStarted' | 'requestEnded'>;
  /** The batching limits in effect (the manifest's, narrowed by the graph, the provider and the server). */
  readonly batching: BatchingOptions;
  /** Receives the batcher's events (the model's metrics). */
  readonly observer: BatchObserver;
  readonly metrics: Metrics;
};

/** A model loaded, warmed up and serving behind its own batcher. */
export class LoadedModel {
  readonly name: string;
  /** The model folder. */
  readonly dir: string;
  readonly manifest: Manifest;
  /** The model file's graph: what the raw tensor API (v2 infer) runs and the metadata describes. */
  readonly session: ServingSession;
  /** What the task's pipeline runs: `session`, or a graph the task built around the file's (see TaskDefinition). */
  readonly pipelineSession: ServingSession;
  readonly pipeline: TaskPipeline;
  readonly labels: readonly string[];
  /** Default per-request deadline. */
  readonly timeoutMs: number;
  /** One queue for the model: task rows and raw tensor rows (v2 infer), never in one batch (their keys differ). */
  readonly batcher: Batcher<unknown, unknown>;
  readonly #metrics: Metrics;
  readonly #requests: ModelParts['requests'];

  constructor(parts: ModelParts) {
    ({
      name: this.name,
      dir: this.dir,
      manifest: this.manifest,
      session: this.session,
      pipelineSession: this.pipelineSession,
      pipeline: this.pipeline,
      labels: this.labels,
      timeoutMs: this.timeoutMs,
      metrics: this.#metrics,
      requests: this.#requests,
    } = parts);
    this.batcher = new Batcher((rows) => this.#runBatch(rows), parts.batching, parts.observer);
  }

  /** Runs one batch: a failed batch is retried row by row, so one bad input fails alone. */
  #runBatch(rows: unknown[]): Promise<unknown[]> {
    return rows[0] instanceof TensorRow
      ? isolated(rows as TensorRow[], (r) => runTensorRows(this.session, r))
      : isolated(rows, (r) => this.pipeline.runBatch(r));
  }

  get version(): string {
    return this.manifest.version;
  }

  /** The longest deadline a client may ask for. */
  get maxTimeoutMs(): number {
    return this.manifest.batching.maxTimeoutMs;
  }

  get task(): string {
    return this.manifest.task;
  }

  #inFlight = 0;
  #idle: (() => void) | undefined;
  #closed: Promise<void> | undefined;
  /**
   * Stage requests waiting for room, oldest first (see {@link #tracked}); a finishing request hands its place to the
   * first. An array of callbacks, not a Set or a listener list: it holds entries only while this model is full.
   */
  #waiting: (() => void)[] = [];

  /**
   * Counts a request from the moment it is handed to this model (synchronously, so a swap that replaces the model
   * after a lookup still sees it) until its answer, so {@link close} frees the session only once nobody uses it.
   *
   * A full model refuses a client's request at once (429), but a pipeline's stage request (`admitted`: an OCR
   * page's line, whose page was counted at its own model's door) waits for a place instead: refusing it would fail
   * a page the server had accepted, and 32 concurrent pages hold more lines than the recognizer's queue. What waits
   * is bounded by the calling model's own limit (its pages in progress times their lines: a page ends only when all
   * its lines have), and each waiting line is a callback: its line's tensor is only made once it has a place, and
   * not at all when the page's deadline passed or its client left while it waited.
   */
  async #tracked<T>(work: () => Promise<T>, admitted = false): Promise<T> {
    if (this.#closed) throw new Errors.MODEL_NOT_READY(this.name, 'this version was replaced or unloaded');
    // admission control at the door, before any decoding: under overload the CPU must go to requests that can be
    // served, not to preprocessing requests the queue would refuse anyway (that collapsed goodput to a third)
    const { maxQueueSize, maxBatchSize, maxInFlightBatches } = this.batcher.options;
    if (this.#inFlight < maxQueueSize + maxBatchSize * maxInFlightBatches) this.#inFlight++;
    else if (!admitted) {
      throw Object.assign(new Errors.QUEUE_FULL(this.name, `${this.#inFlight} requests in progress`), {
        retryAfterSeconds: Math.max(1, Math.ceil(this.batcher.estimatedWaitMs() / 1000)),
      });
    } else await new Promise<void>((resolve) => this.#waiting.push(resolve)); // given a place: #inFlight counts it
    // a waiter that got its place after a swap or an unload began is still answered by this version, as every
    // request handed to it is: close() waits for it
    this.#requests.requestStarted();
    try {
      return await work();
    } finally {
      this.#requests.requestEnded();
      const next = this.#waiting.shift();
      if (next) next();
      else if (--this.#inFlight === 0) this.#idle?.();
    }
  }

  /** Preprocesses one request, queues it for batching, and turns its output row into the task's answer. */
  infer(input: ModelInput, opts: InferOptions): Promise<unknown> {
    return this.#tracked(() => this.#infer(input, opts), opts.admitted);
  }

  async #infer(input: ModelInput, opts: InferOptions): Promise<unknown> {
    const t0 = performance.now();
    // a stage request that waited for its place (#tracked) past its page's deadline, or after its client went away,
    // is dropped before it costs a preparation
    const dropped = this.batcher.dropped(opts);
    if (dropped) throw this.#asClientError(dropped, opts);
    let prepared: Awaited<ReturnType<TaskPipeline['prepare']>>;
    try {
      prepared = await this.pipeline.prepare(input, opts.signal);
    } catch (err) {
      if (opts.signal?.aborted) throw new Errors.CLIENT_CLOSED();
      throw err;
    }
    let out: unknown;
    try {
      this.#metrics.preprocessDuration.observe({ model: this.name }, (performance.now() - t0) / 1000);
      const { deadline, signal, admitted } = opts;
      // (each options object written out whole: one shape at every call, where a spread migrated maps per request)
      out = this.pipeline.sequence
        ? await this.#runSequence(this.pipeline.sequence, prepared.row, { deadline, signal })
        : await this.batcher.submit(prepared.row, { deadline, signal, key: prepared.key, admitted });
    } catch (err) {
      throw this.#asClientError(err, opts);
    } finally {
      // out of the queue, and any batch that read the row has ended (a row's promise settles after its batch's)
      prepared.release?.();
    }
    return this.pipeline.finish(out, opts);
  }

  #soloKeys = 0;

  /**
   * Runs raw feeds through the graph (the Open Inference Protocol's `infer`): checked against the graph's inputs,
   * queued on this model's batcher (stacked with other one-row requests of the same shapes), every output returned.
   */
  inferTensors(feeds: Record<string, HostTensor>, opts: InferOptions): Promise<TensorOutputs> {
    return this.#tracked(() => this.#inferTensors(feeds, opts));
  }

  async #inferTensors(feeds: Record<string, HostTensor>, opts: InferOptions): Promise<TensorOutputs> {
    const { key } = checkFeeds(feeds, this.session.inputs, this.session.outputs, () => `solo|${this.#soloKeys++}`);
    try {
      const step = { deadline: opts.deadline, signal: opts.signal, key };
      return (await this.batcher.submit(new TensorRow(feeds, 1), step)) as TensorOutputs;
    } catch (err) {
      // the client chose every value of a raw request: a graph that refuses them answers 400, not 500
      const rejection = graphRejection(err);
      if (rejection !== undefined) throw new Errors.INVALID_TENSOR(`the model refused these inputs: ${rejection}`);
      throw this.#asClientError(err, opts);
    }
  }

  #activeSequences = 0;

  /**
   * Runs a sequence task's request. Each active sequence holds one queue slot per step, so the queue limit is
   * applied here, at the door: a request beyond `maxQueueSize` active sequences is refused before its first step,
   * never part-way through.
   */
  async #runSequence(
    sequence: NonNullable<TaskPipeline['sequence']>,
    row: unknown,
    step: { deadline: number; signal?: AbortSignal },
  ): Promise<unknown> {
    if (this.#activeSequences >= this.batcher.options.maxQueueSize) {
      throw new BatcherError('queue_full', `${this.#activeSequences} sequences in progress`);
    }
    this.#activeSequences++;
    try {
      return await sequence(row, step, this.#submitRows);
    } finally {
      this.#activeSequences--;
    }
  }

  /** What a sequence task submits its steps with: rows stack with rows of the same key (default: one key). */
  readonly #submitRows: SubmitRows<unknown, unknown> = (rows) =>
    this.batcher.submitAll(rows.map(({ row, opts, key }) => ({ input: row, opts: { ...opts, key: key ?? '' } })));

  /** Translates the batcher's refusals, and runtime failures, into the service's error codes. */
  #asClientError(err: unknown, opts: InferOptions): Error {
    // a stage model's refusal reached a multi-model pipeline already translated: the ones about load and time pass
    // through; anything else a stage says (its own 4xx about an internal crop, a missing stage) is this model's fault
    const code = (err as { code?: unknown } | undefined)?.code;
    if (typeof code === 'string' && passThrough.has(code)) return err as Error;
    if (typeof code === 'string' && code.startsWith('MUON_ERR_'))
      return new Errors.INFERENCE_FAILED(this.name, { cause: err });
    if (!(err instanceof BatcherError)) return new Errors.INFERENCE_FAILED(this.name, { cause: err });
    switch (err.reason) {
      case 'queue_full':
        return Object.assign(new Errors.QUEUE_FULL(this.name, err.message), {
          retryAfterSeconds: Math.max(1, Math.ceil(this.batcher.estimatedWaitMs() / 1000)),
        });
      case 'deadline':
        return new Errors.DEADLINE_EXCEEDED(this.name, Math.round(opts.timeoutMs));
      case 'cancelled':
        return new Errors.CLIENT_CLOSED();
      case 'closed':
        return new Errors.SHUTTING_DOWN();
    }
  }

  /** What `GET /v1/models` says about this model. */
  describe(): Record<string, unknown> {
    const { maxBatchSize, preferredBatchSizes, maxQueueDelayMs, maxQueueSize, maxInFlightBatches } =
      this.batcher.options;
    return {
      name: this.name,
      version: this.version,
      task: this.task,
      description: this.manifest.description,
      state: 'READY',
      execution_provider: this.session.provider,
      thread: this.manifest.runtime.thread,
      ...(this.session.fallbackReason ? { fallback_reason: this.session.fallbackReason } : {}),
      input: this.pipeline.inputSpec,
      outputs: this.session.outputs,
      labels: this.labels.length,
      compression: this.manifest.compression ?? null,
      batching: {
        max_batch_size: maxBatchSize,
        preferred_batch_sizes: preferredBatchSizes,
        max_queue_delay_ms: maxQueueDelayMs,
        max_queue_size: maxQueueSize,
        max_in_flight_batches: maxInFlightBatches,
        default_timeout_ms: this.timeoutMs,
        max_timeout_ms: this.maxTimeoutMs,
        fixed_batch: this.pipeline.graphMaxBatch !== undefined,
      },
    };
  }

  /** Waits for the requests handed to this model to be answered, drains the queue and frees the session (once). */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
      await this.batcher.close();
      await Promise.all([
        this.session.release(),
        this.pipelineSession !== this.session && this.pipelineSession.release(),
      ]);
    })();
    return this.#closed;
  }
}

/** Errors of a stage model that a pipeline passes on unchanged (load, deadlines, shutdown, a stage not ready). */
const passThrough = new Set(
  ['QUEUE_FULL', 'DEADLINE_EXCEEDED', 'CLIENT_CLOSED', 'SHUTTING_DOWN', 'MODEL_NOT_READY'].map((k) => `MUON_ERR_${k}`),
);

/** A load that was refused: the folder's model did not load, or did not pass the checks before a swap. */
export class LoadError extends Error {
  override name = 'LoadError';
}
