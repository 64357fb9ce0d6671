import { createHash } from 'node:crypto';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Logger } from 'pino';
import { Batcher, BatcherError, type BatchingOptions } from '../batching/batcher.js';
import { Errors } from '../errors.js';
import { checkExternalData, hasExternalData } from '../onnx/external-data.js';
import { decodeModel, type ModelProto } from '../onnx/model.js';
import { packageRoot, type Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { ManifestError, modelNamePattern, npmPackagePattern, parseManifest, type Manifest } from './manifest.js';
import { mediaInput, mediaKind } from './media.js';
import { PoisonedInputs } from './poisoned-inputs.js';
import { WorkerSessionPool } from './session-pool.js';
import {
  ModelSession,
  type HostTensor,
  type ServingSession,
  type SessionOptions,
  type SessionRunner,
} from './session.js';
import { checkFeeds, graphRejection, isolated, runTensorRows, TensorRow, type TensorOutputs } from './tensors.js';
import { faceDetection } from './tasks/face-detection.js';
import { imageClassification } from './tasks/image-classification.js';
import { languageId } from './tasks/language-id.js';
import { ocr } from './tasks/ocr.js';
import { textRecognition } from './tasks/text-recognition.js';
import { voiceActivity } from './tasks/voice-activity.js';
import { inlineTaskWorkers, TaskWorkers } from '../workers/task-workers.js';
import type {
  ModelInput,
  PredictParams,
  Prepared,
  StageModels,
  SubmitRows,
  TaskContext,
  TaskPipeline,
} from './tasks/task.js';

/** A pipeline factory for one task, given that task's manifest. */
type TaskFactory<T extends Manifest['task']> = (
  ctx: TaskContext<Extract<Manifest, { task: T }>>,
) => TaskPipeline<any, any, any> | Promise<TaskPipeline<any, any, any>>;

/** Task name to pipeline factory: the only place a manifest's `task` is looked at. */
const tasks: { [T in Manifest['task']]: TaskFactory<T> } = {
  'image-classification': imageClassification,
  'language-id': languageId,
  'voice-activity': voiceActivity,
  'face-detection': faceDetection,
  'text-recognition': textRecognition,
  ocr,
};

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

/** A model loaded, warmed up and serving behind its own batcher. */
export class LoadedModel {
  /**
   * @param dir the model folder
   * @param timeoutMs default per-request deadline
   */
  constructor(
    readonly name: string,
    readonly dir: string,
    readonly manifest: Manifest,
    readonly session: ServingSession,
    readonly pipeline: TaskPipeline,
    readonly batcher: Batcher<unknown, unknown>,
    readonly timeoutMs: number,
    readonly labels: readonly string[],
    private readonly metrics: Metrics,
  ) {}

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
   * Counts a request from the moment it is handed to this model (synchronously, so a swap that replaces the model
   * after a lookup still sees it) until its answer, so {@link close} frees the session only once nobody uses it.
   */
  async #tracked<T>(work: () => Promise<T>, admitted = false): Promise<T> {
    if (this.#closed) throw new Errors.MODEL_NOT_READY(this.name, 'this version was replaced or unloaded');
    // admission control at the door, before any decoding: under overload the CPU must go to requests that can be
    // served, not to preprocessing requests the queue would refuse anyway (that collapsed goodput to a third)
    const { maxQueueSize, maxBatchSize, maxInFlightBatches } = this.batcher.options;
    if (!admitted && this.#inFlight >= maxQueueSize + maxBatchSize * maxInFlightBatches) {
      throw Object.assign(new Errors.QUEUE_FULL(this.name, `${this.#inFlight} requests in progress`), {
        retryAfterSeconds: Math.max(1, Math.ceil(this.batcher.estimatedWaitMs() / 1000)),
      });
    }
    this.#inFlight++;
    try {
      return await work();
    } finally {
      if (--this.#inFlight === 0) this.#idle?.();
    }
  }

  /** Preprocesses one request, queues it for batching, and turns its output row into the task's answer. */
  infer(input: ModelInput, opts: InferOptions): Promise<unknown> {
    return this.#tracked(() => this.#infer(input, opts), opts.admitted);
  }

  async #infer(input: ModelInput, opts: InferOptions): Promise<unknown> {
    const t0 = performance.now();
    let prepared: Awaited<ReturnType<TaskPipeline['prepare']>>;
    try {
      prepared = await this.pipeline.prepare(input, opts.signal);
    } catch (err) {
      if (opts.signal?.aborted) throw new Errors.CLIENT_CLOSED();
      throw err;
    }
    this.metrics.preprocessDuration.observe({ model: this.name }, (performance.now() - t0) / 1000);
    let out: unknown;
    try {
      const step = { deadline: opts.deadline, signal: opts.signal };
      out = this.pipeline.sequence
        ? await this.#runSequence(this.pipeline.sequence, prepared.row, step)
        : await this.batcher.submit(prepared.row, { ...step, key: prepared.key });
    } catch (err) {
      throw this.#asClientError(err, opts);
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
    // a stage model's refusal (queue full, deadline, ...) reached a multi-model pipeline already translated
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
      await this.session.release();
    })();
    return this.#closed;
  }
}

/** Errors of a stage model that a pipeline passes on unchanged (load, deadlines, shutdown, a stage not ready). */
const passThrough = new Set(
  ['QUEUE_FULL', 'DEADLINE_EXCEEDED', 'CLIENT_CLOSED', 'SHUTTING_DOWN', 'MODEL_NOT_READY'].map((k) => `MUON_ERR_${k}`),
);

/** The longest wait between two background reloads of a model that broke. */
const MAX_RELOAD_BACKOFF_MS = 300_000;

/** Status of one model folder in the repository. */
export type ModelStatus =
  | { readonly state: 'LOADING'; readonly name: string }
  | {
      readonly state: 'READY';
      readonly name: string;
      /** The version unversioned requests get: the highest one served. */
      readonly model: LoadedModel;
      /** Every version served, by version. */
      readonly versions: ReadonlyMap<string, LoadedModel>;
    }
  | {
      readonly state: 'FAILED';
      readonly name: string;
      readonly error: string;
      /** Background reloads tried so far, and when the next one starts (epoch ms), for a model that broke. */
      readonly reloads?: number;
      readonly nextReloadAt?: number;
    }
  /** Unloaded on purpose (`POST /v2/repository/models/{name}/unload`); does not count against readiness. */
  | { readonly state: 'UNAVAILABLE'; readonly name: string };

/** A load that was refused: the folder's model did not load, or did not pass the checks before a swap. */
export class LoadError extends Error {
  override name = 'LoadError';
}

/**
 * The model repository: one folder per model, each with a `manifest.json`. Loads every model, keeps their status,
 * and is the server's single view of what can be served.
 */
export class ModelRepository {
  readonly #models = new Map<string, ModelStatus>();
  #loaded = false;

  /**
   * @param faults fault injection for tests: the session workers' entry module
   */
  constructor(
    private readonly config: Config,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly faults: { readonly workerEntry?: URL } = {},
  ) {
    this.#workers = new TaskWorkers(config.taskThreads, config.preprocessThreads);
  }

  /** The threads every model's pre- and post-processing runs on. */
  readonly #workers: TaskWorkers;

  #draining = false;

  /** True once every model is loaded and warmed up, and none failed, until the server starts draining. */
  get ready(): boolean {
    // models changed through the management API do not count: a failed load of a new model must not take every
    // replica out of its load balancer (the failure is the load call's answer, and the index shows it)
    const models = [...this.#models.values()].filter((s) => s.state === 'READY' || !this.#managed.has(s.name));
    return !this.#draining && this.#loaded && models.every((s) => s.state === 'READY' || s.state === 'UNAVAILABLE');
  }

  /** True once shutdown began: readiness answers 503 so load balancers stop sending traffic. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Starts draining: readiness turns 503 at once; requests are still served until the server closes. */
  beginDrain(): void {
    this.#draining = true;
    this.#stopHealing();
  }

  /** Pending background reloads of failed models, by name. */
  readonly #healing = new Map<string, NodeJS.Timeout>();

  /**
   * Reloads a model whose sessions broke at run time (workers that kept dying) from its folder, in the background:
   * the first try after MUON_RELOAD_BACKOFF_MS, each next one after twice as long (at most 5 minutes), until it
   * serves again or is unloaded. Readiness stays 503 meanwhile; `/v1/models` shows the attempts.
   */
  #healLater(name: string, attempt: number): void {
    if (this.#draining || this.#healing.has(name)) return;
    const delay = Math.min(MAX_RELOAD_BACKOFF_MS, this.config.reloadBackoffMs * 2 ** attempt);
    const s = this.#models.get(name);
    if (s?.state === 'FAILED') this.#models.set(name, { ...s, reloads: attempt, nextReloadAt: Date.now() + delay });
    const timer = setTimeout(() => {
      this.#healing.delete(name);
      void this.#serially(name, async () => {
        if (this.#models.get(name)?.state !== 'FAILED' || this.#draining) return; // reloaded or unloaded meanwhile
        try {
          const versions = await this.#loadVersions(name, threadsPerModel(this.config, this.#models.size));
          this.#models.set(name, ready(name, versions));
          this.metrics.modelReloads.inc({ model: name, outcome: 'ready' });
          this.log.info({ model: name, attempt: attempt + 1 }, 'failed model reloaded; serving again');
        } catch (err) {
          this.metrics.modelReloads.inc({ model: name, outcome: 'failed' });
          const error = this.#redact(err instanceof Error ? err.message : String(err));
          this.#models.set(name, { state: 'FAILED', name, error });
          this.log.warn({ model: name, err, attempt: attempt + 1 }, 'reloading a failed model failed; trying again');
          this.#healLater(name, attempt + 1);
        }
      });
    }, delay);
    timer.unref();
    this.#healing.set(name, timer);
  }

  /** Cancels the pending background reload of `name` (an explicit load or unload takes over), or of every model. */
  #stopHealing(name?: string): void {
    for (const [model, timer] of this.#healing)
      if (name === undefined || model === name) {
        clearTimeout(timer);
        this.#healing.delete(model);
      }
  }

  /** Inputs that killed a model's session workers, by model name: kept across its reloads. */
  readonly #poisoned = new Map<string, PoisonedInputs>();

  #poisonedOf(name: string): PoisonedInputs {
    let known = this.#poisoned.get(name);
    if (!known) this.#poisoned.set(name, (known = new PoisonedInputs()));
    return known;
  }

  /** Status of a model by name, or undefined when no such folder exists. */
  status(name: string): ModelStatus | undefined {
    return this.#models.get(name);
  }

  /**
   * A model that can serve now, in `version` when given (else its highest version); throws MODEL_NOT_FOUND (404),
   * VERSION_NOT_FOUND (404) or MODEL_NOT_READY (503) otherwise.
   */
  readyModel(name: string, version?: string): LoadedModel {
    const s = this.#models.get(name);
    if (!s) throw new Errors.MODEL_NOT_FOUND(name);
    if (s.state !== 'READY') {
      const why = { LOADING: 'it is loading', FAILED: 'it failed to load', UNAVAILABLE: 'it is unloaded' }[s.state];
      throw new Errors.MODEL_NOT_READY(name, why);
    }
    if (version === undefined) return s.model;
    const v = s.versions.get(version);
    if (!v) throw new Errors.VERSION_NOT_FOUND(name, version);
    return v;
  }

  /** The versions a model serves, oldest first (empty unless it is ready). */
  versions(name: string): string[] {
    const s = this.#models.get(name);
    return s?.state === 'READY' ? [...s.versions.keys()].sort(compareVersions) : [];
  }

  /** All models, in name order. */
  list(): ModelStatus[] {
    return [...this.#models.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Finds every model folder and loads them one by one (loading in parallel would only fight over the same cores).
   * A model that fails is marked FAILED with its reason; the server then never reports ready.
   * @returns the failures, empty when all loaded
   */
  async loadAll(): Promise<{ name: string; error: string }[]> {
    const names = await this.#folders();
    for (const name of names) this.#models.set(name, { state: 'LOADING', name });
    const threads = threadsPerModel(this.config, names.length);
    // while the models load; a thread that cannot start is started again by the first op that needs it
    const workersStarted = this.#workers
      .warm()
      .catch((err: unknown) => this.log.warn({ err }, 'task workers did not all start'));
    const failures: { name: string; error: string }[] = [];
    for (const name of names.sort()) {
      const started = performance.now();
      try {
        const versions = await this.#loadVersions(name, threads);
        this.#models.set(name, ready(name, versions));
        for (const model of versions.values()) {
          this.log.info(
            {
              model: name,
              version: model.version,
              task: model.task,
              provider: model.session.provider,
              thread: model.manifest.runtime.thread,
              intraOpThreads: threads,
              ms: Math.round(performance.now() - started),
            },
            'model ready',
          );
        }
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        this.#models.set(name, { state: 'FAILED', name, error: this.#redact(error) });
        failures.push({ name, error });
        this.log.error({ model: name, err }, 'model failed to load');
      }
    }
    await workersStarted;
    this.#loaded = true;
    return failures;
  }

  /** Model folders of the repository (those with a manifest.json and a valid name), in name order. */
  async #folders(): Promise<string[]> {
    const root = this.config.modelRepository;
    if (!existsSync(root)) throw new Error(`model repository ${root} does not exist (MUON_MODEL_REPOSITORY)`);
    const names: string[] = [];
    for (const entry of await readdir(root, { withFileTypes: true })) {
      if (!entry.isDirectory() || !isModelFolder(path.join(root, entry.name))) continue;
      if (!new RegExp(modelNamePattern).test(entry.name)) {
        this.log.warn({ folder: entry.name }, 'skipping model folder: name must match %s', modelNamePattern);
        continue;
      }
      names.push(entry.name);
    }
    return names.sort();
  }

  /**
   * A failure reason as clients may read it (readiness, the index and `/v1/models` need no token): the server's
   * folders are named relative to the repository or the package, other absolute paths by their last component.
   * The log keeps the whole message.
   */
  #redact(message: string): string {
    const roots: [string, string][] = [
      [this.config.modelRepository, '<repository>'],
      [packageRoot, '<package>'],
    ];
    let out = message;
    for (const [root, name] of roots)
      out = out
        .split(root + path.sep)
        .join(name + '/')
        .split(root)
        .join(name);
    return out.replace(/(?<![\w<>.])\/(?:[^\s'"`:,()]+\/)+([^\s'"`:,()/]+)/g, '…/$1');
  }

  /** Triton's repository index: every model folder and every model known, with state, version and reason. */
  async index(): Promise<{ name: string; version?: string; state: string; reason?: string }[]> {
    const names = new Set([...(await this.#folders()), ...this.#models.keys()]);
    type Entry = { name: string; version?: string; state: string; reason?: string };
    return [...names].sort().flatMap((name): Entry[] => {
      const s = this.#models.get(name);
      if (!s) return [{ name, state: 'UNAVAILABLE', reason: 'not loaded' }];
      if (s.state === 'READY') return this.versions(name).map((version) => ({ name, version, state: 'READY' }));
      if (s.state === 'FAILED') return [{ name, state: 'UNAVAILABLE', reason: s.error }];
      return [{ name, state: s.state, ...(s.state === 'UNAVAILABLE' ? { reason: 'unloaded' } : {}) }];
    });
  }

  /** Models loaded or unloaded through the management API since start. */
  readonly #managed = new Set<string>();

  /** Loads and unloads of one model run one at a time, in order. */
  readonly #changes = new Map<string, Promise<unknown>>();

  #serially<T>(name: string, change: () => Promise<T>): Promise<T> {
    const next = (this.#changes.get(name) ?? Promise.resolve()).catch(() => {}).then(change);
    this.#changes.set(name, next);
    return next;
  }

  /** Repository changes wait for the startup load to finish (it would race them). */
  #checkStarted(name: string): void {
    if (!this.#loaded) throw new Errors.MODEL_NOT_READY(name, 'the repository is still loading; retry once ready');
  }

  /** Checks a model name from a client: the folder pattern (no separators, no dots first), and that it exists. */
  #checkName(name: string): void {
    const dir = path.join(this.config.modelRepository, name);
    if (!new RegExp(modelNamePattern).test(name) || !existsSync(dir) || !isModelFolder(dir)) {
      throw new Errors.MODEL_NOT_FOUND(name);
    }
  }

  /**
   * Loads a model folder, or reloads it without downtime: the new model is loaded and warmed up while the serving
   * one keeps answering, checked (same task; and when the manifest has `rollout.samples`, its answers on those
   * media files must agree with the serving model's), then swapped in at once. Requests already handed to the old
   * model finish on it; it is freed once they are answered. A failed load or check leaves the old model serving.
   * @throws MODEL_NOT_FOUND for a name that is not a model folder, LoadError when the load or a check fails
   */
  loadModel(name: string): Promise<LoadedModel> {
    this.#checkName(name);
    this.#checkStarted(name);
    this.#managed.add(name);
    return this.#serially(name, async () => {
      this.#stopHealing(name);
      const before = this.#models.get(name);
      if (before?.state !== 'READY') this.#models.set(name, { state: 'LOADING', name });
      let fresh: Map<string, LoadedModel>;
      try {
        fresh = await this.#loadVersions(name, threadsPerModel(this.config, this.#models.size));
      } catch (err) {
        const error = this.#redact(err instanceof Error ? err.message : String(err));
        if (this.#models.get(name)?.state !== 'READY') this.#models.set(name, { state: 'FAILED', name, error });
        this.log.warn({ model: name, err }, 'model load failed');
        throw new LoadError(error, { cause: err });
      }
      const next = ready(name, fresh);
      // read after loading: the serving model may have broken meanwhile (nothing to check the new one against)
      const now = this.#models.get(name);
      const serving = now?.state === 'READY' ? now : undefined;
      if (serving) {
        try {
          await checkSwap(serving.model, next.model);
        } catch (err) {
          for (const m of fresh.values()) this.#forget(m, serving.versions.get(m.version));
          await Promise.all([...fresh.values()].map((m) => m.close()));
          throw new LoadError((err as Error).message, { cause: err });
        }
      }
      this.#models.set(name, next);
      this.log.info(
        { model: name, versions: [...fresh.keys()], replaced: serving ? [...serving.versions.keys()] : null },
        'model loaded',
      );
      for (const old of serving?.versions.values() ?? []) {
        this.#forget(old, fresh.get(old.version));
        old.close().catch((err: unknown) => this.log.error({ model: name, err }, 'freeing the old model failed'));
      }
      return next.model;
    });
  }

  /** Unloads a model: new requests get 503 at once, the ones already handed to it are answered, then it is freed. */
  unloadModel(name: string): Promise<void> {
    if (!this.#models.has(name)) throw new Errors.MODEL_NOT_FOUND(name);
    this.#checkStarted(name);
    this.#managed.add(name);
    return this.#serially(name, async () => {
      this.#stopHealing(name);
      const s = this.#models.get(name);
      this.#models.set(name, { state: 'UNAVAILABLE', name });
      if (s?.state === 'READY') {
        for (const m of s.versions.values()) this.#forget(m);
        await Promise.all([...s.versions.values()].map((m) => m.close()));
        this.log.info({ model: name, versions: [...s.versions.keys()] }, 'model unloaded');
      }
    });
  }

  /** Drops an old model's info series (unless its replacement has the same labels). */
  #forget(old: LoadedModel, replacement?: LoadedModel): void {
    const labels = (m: LoadedModel) => ({ model: m.name, version: m.version, provider: m.session.provider });
    if (replacement && JSON.stringify(labels(old)) === JSON.stringify(labels(replacement))) return;
    this.metrics.modelInfo.remove(labels(old));
  }

  /**
   * Loads every version a model folder serves: the folder's own manifest (one version, its `version` field), or the
   * numbered version folders (`<name>/1/manifest.json`, `<name>/2/...`) its version policy selects (`versions.json`:
   * `{"policy": "latest", "count": n}` (default: latest 1), `{"policy": "specific", "versions": ["1", "3"]}` or
   * `{"policy": "all"}`). A version that fails fails the model: its other versions are freed.
   */
  async #loadVersions(name: string, threads: number): Promise<Map<string, LoadedModel>> {
    const dir = path.join(this.config.modelRepository, name);
    const loaded = new Map<string, LoadedModel>();
    try {
      for (const { version, folder } of await servedVersions(dir)) {
        loaded.set(version ?? '', await this.load(name, threads, folder, version));
      }
    } catch (err) {
      const serving = this.#models.get(name);
      for (const m of loaded.values())
        this.#forget(m, serving?.state === 'READY' ? serving.versions.get(m.version) : undefined);
      await Promise.all([...loaded.values()].map((m) => m.close()));
      throw err;
    }
    // a single-folder model is keyed by its manifest's version
    return new Map([...loaded.values()].map((m) => [m.version, m]));
  }

  /**
   * Loads, checks and warms up one model version. Throws ManifestError for a bad manifest or file.
   * @param dir the folder holding the manifest
   * @param version the version folder's name, which is the version (a manifest `version` must then agree)
   */
  async load(name: string, intraOpThreads: number, dir: string, version?: string): Promise<LoadedModel> {
    const where = path.join(dir, 'manifest.json');
    let json: unknown;
    try {
      json = JSON.parse(await readFile(where, 'utf8'));
    } catch (err) {
      throw new ManifestError(`${where}: not valid JSON: ${(err as Error).message}`);
    }
    if (version !== undefined) {
      const declared = (json as { version?: unknown } | null)?.version;
      if (declared !== undefined && declared !== version)
        throw new ManifestError(`${where}: /version is '${String(declared)}' but the version folder is '${version}'`);
      json = { ...(json as object), version };
    }
    const manifest = parseManifest(json, where);
    if (manifest.name !== undefined && manifest.name !== name) {
      throw new ManifestError(`${where}: /name is '${manifest.name}' but the folder is '${name}'`);
    }
    const { path: modelPath, bytes, external } = await this.readModelFile(name, dir, manifest, where);
    const onWorkers = manifest.runtime.thread === 'worker';
    // one session per in-flight batch on workers; how many can depend on the provider the first one gets
    const { maxInFlightBatches: onCpu, cuda } = manifest.batching;
    const instances = { cpu: onCpu, cuda: cuda?.maxInFlightBatches ?? onCpu };
    const options: SessionOptions = {
      provider: this.config.executionProvider,
      // sessions on workers compute at the same time: together they get the model's share of the cores
      intraOpThreads: Math.max(1, Math.floor(intraOpThreads / (onWorkers ? onCpu : 1))),
      onFallback: (reason) => {
        this.metrics.providerFallbacks.inc({ model: name });
        this.log.warn({ model: name, reason }, 'CUDA unavailable, running on CPU');
      },
    };
    const source = external ? modelPath : bytes;
    let model: LoadedModel | undefined;
    const session: ServingSession = onWorkers
      ? await WorkerSessionPool.create(source, options, instances, {
          workerEntry: this.faults.workerEntry,
          poisoned: this.#poisonedOf(name),
          onRestart: (reason) => {
            this.metrics.sessionRestarts.inc({ model: name });
            this.log.error({ model: name, version: manifest.version, reason }, 'session worker died; replacing it');
          },
          onBroken: (reason) => {
            this.log.error({ model: name, version: manifest.version, reason }, 'model cannot run any more');
            const s = this.#models.get(name);
            if (model && s?.state === 'READY' && [...s.versions.values()].includes(model)) {
              this.#models.set(name, { state: 'FAILED', name, error: this.#redact(reason) });
              // the broken versions are freed once their requests are answered (they fail at once), and the folder
              // is loaded again in the background
              for (const v of s.versions.values())
                v.close().catch((err: unknown) => this.log.warn({ model: name, err }, 'freeing a broken model failed'));
              this.#healLater(name, 0);
            }
          },
        })
      : await ModelSession.create(source, options);
    try {
      const { pipeline, labels } = await createPipeline(manifest, session, dir, where, {
        maxImagePixels: this.config.maxImagePixels,
        workers: this.#workers,
        stages: { names: () => [...this.#models.keys()], model: (stage) => this.readyModel(stage) },
      });
      const batching = effectiveBatching(manifest.batching, session.provider, pipeline.graphMaxBatch, this.config);
      // one queue per model: task rows and raw tensor rows (v2 infer), never in one batch (their keys differ); a
      // failed batch is retried row by row, so one bad input fails alone
      const run = async (rows: unknown[]) =>
        rows[0] instanceof TensorRow
          ? isolated(rows as TensorRow[], (r) => runTensorRows(session, r))
          : isolated(rows, (r) => pipeline.runBatch(r));
      const batcher = new Batcher<unknown, unknown>(run, batching, this.observer(name));
      const timeoutMs = manifest.batching.defaultTimeoutMs ?? this.config.requestTimeoutMs;
      model = new LoadedModel(name, dir, manifest, session, pipeline, batcher, timeoutMs, labels, this.metrics);
      const sessions = onWorkers ? batching.maxInFlightBatches : 1;
      if (this.config.warmup) await warmUp(pipeline, batching.maxBatchSize, sessions);
      this.metrics.modelInfo.set({ model: name, version: manifest.version, provider: session.provider }, 1);
      return model;
    } catch (err) {
      await session.release();
      throw err;
    }
  }

  /**
   * Reads a manifest's model file and checks it: the sha256 the manifest pins, and for models that keep their weights
   * in sidecar files (ONNX external data, needed over 2 GB) the sidecars' ranges and checksums. onnxruntime only
   * finds sidecars from the file's path, so `external` tells the caller to create the session from `path`.
   * Sidecars without checksum entries are not covered by the sha256 (muon-compress always writes them).
   */
  private async readModelFile(name: string, dir: string, manifest: Manifest, where: string) {
    const file = resolveFile(dir, manifest.model.path, manifest.model.package, '/model', where);
    const bytes = await readFile(file);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (manifest.model.sha256 === undefined) {
      this.log.warn({ model: name, sha256 }, 'manifest has no /model/sha256; add it to pin the file');
    } else if (manifest.model.sha256 !== sha256) {
      throw new ManifestError(`${where}: /model/sha256 is ${manifest.model.sha256} but ${file} has ${sha256}`);
    }
    let proto: ModelProto | undefined;
    try {
      proto = decodeModel(bytes);
    } catch {
      // not a valid ONNX file: onnxruntime reports it when the session is created
    }
    const external = proto !== undefined && hasExternalData(proto);
    if (proto && external) {
      await checkExternalData(proto, path.dirname(file), { verifyChecksums: true }).catch((err: Error) => {
        throw new ManifestError(`${file}: ${err.message}`);
      });
    }
    return { path: file, bytes, external };
  }

  /** Drains every model's queue, then frees the sessions. */
  async close(): Promise<void> {
    this.#draining = true; // no background reload starts from now on
    this.#stopHealing();
    await Promise.all([...this.#changes.values()].map((c) => c.catch(() => {})));
    const serving = this.list().flatMap((s) => (s.state === 'READY' ? [...s.versions.values()] : []));
    await Promise.all(serving.map((m) => m.close()));
    await this.#workers.close();
  }

  /** Queue depth of each batcher of a model (its versions, and the old one during a reload), by model. */
  readonly #depths = new Map<string, Map<object, number>>();

  private observer(model: string) {
    const m = this.metrics;
    const self = {};
    const depths = this.#depths.get(model) ?? new Map<object, number>();
    this.#depths.set(model, depths);
    return {
      batchStarted: (size: number, waits: readonly number[]) => {
        m.batchSize.observe({ model }, size);
        for (const w of waits) m.queueWait.observe({ model }, w / 1000);
      },
      batchFinished: (_size: number, ms: number) => m.inferenceDuration.observe({ model }, ms / 1000),
      dropped: (reason: string, count: number) => m.dropped.inc({ model, reason }, count),
      // muon_queue_depth{model} is the sum over the model's batchers, which each report only their own queue
      depthChanged: (depth: number) => {
        if (depth > 0) depths.set(self, depth);
        else depths.delete(self);
        let total = 0;
        for (const d of depths.values()) total += d;
        m.queueDepth.set({ model }, total);
      },
    };
  }
}

/**
 * The manifest's batching limits (with its `cuda` settings on CUDA), narrowed by the graph (a fixed batch axis) and
 * by server-wide overrides.
 */
function effectiveBatching(
  manifest: Manifest['batching'],
  provider: 'cuda' | 'cpu',
  graphMaxBatch: number | undefined,
  config: Config,
): BatchingOptions {
  const b = provider === 'cuda' ? { ...manifest, ...manifest.cuda } : manifest;
  let maxBatchSize = Math.min(b.maxBatchSize, graphMaxBatch ?? Infinity);
  if (!config.batching) maxBatchSize = 1;
  return {
    maxBatchSize,
    preferredBatchSizes: b.preferredBatchSizes.filter((p) => p <= maxBatchSize),
    maxQueueDelayMs: config.maxQueueDelayMs ?? b.maxQueueDelayMs,
    maxQueueSize: b.maxQueueSize,
    maxInFlightBatches: b.maxInFlightBatches,
  };
}

/** Intra-op threads per model: MUON_INTRA_OP_THREADS, else the cores split over the models. */
export function threadsPerModel(config: Config, models: number): number {
  return config.intraOpThreads ?? Math.max(1, Math.floor(config.cpuCount / Math.max(1, models)));
}

/** Outside a repository (the compression CLI) there are no other models to call. */
const noStages: StageModels = {
  names: () => undefined,
  model: (name) => {
    throw new Errors.MODEL_NOT_FOUND(name);
  },
};

/**
 * Builds a model folder's task pipeline around a session: reads its labels and hands the task its manifest. Also
 * what the compression CLI runs calibration media through, so a calibration sample is exactly what the server feeds.
 */
export async function createPipeline(
  manifest: Manifest,
  session: SessionRunner,
  dir: string,
  where: string,
  opts: {
    readonly maxImagePixels: number;
    /** Where the task's CPU work runs; by default on the calling thread (tools). */
    readonly workers?: TaskWorkers;
    readonly stages?: StageModels;
  },
): Promise<{ pipeline: TaskPipeline; labels: readonly string[] }> {
  const read = (ref: { readonly file: string; readonly package?: string }, field: string) =>
    readFile(resolveFile(dir, ref.file, ref.package, field, where), 'utf8');
  const labels = Array.isArray(manifest.labels)
    ? manifest.labels
    : parseLabels(await read(manifest.labels, '/labels/file'));
  // the map is keyed by task, so each factory gets its own task's manifest; TypeScript cannot correlate the two
  const factory = tasks[manifest.task] as TaskFactory<Manifest['task']>;
  const pipeline: TaskPipeline = await factory({
    manifest,
    session,
    labels,
    maxImagePixels: opts.maxImagePixels,
    workers: opts.workers ?? inlineTaskWorkers,
    where,
    readFile: read,
    stages: opts.stages ?? noStages,
  });
  return { pipeline, labels };
}

/** A READY status over the versions loaded; unversioned requests get the highest version. */
function ready(name: string, versions: Map<string, LoadedModel>): Extract<ModelStatus, { state: 'READY' }> {
  const order = [...versions.keys()].sort(compareVersions);
  return { state: 'READY', name, model: versions.get(order.at(-1)!)!, versions };
}

/** Numbered versions compare as numbers, anything else as text. */
function compareVersions(a: string, b: string): number {
  return /^\d+$/.test(a) && /^\d+$/.test(b) ? Number(a) - Number(b) : a.localeCompare(b);
}

const versionFolder = /^\d{1,9}$/;

/** A model folder holds a manifest.json, or numbered version folders that do (a small folder: read in place). */
function isModelFolder(dir: string): boolean {
  if (existsSync(path.join(dir, 'manifest.json'))) return true;
  return readdirSync(dir, { withFileTypes: true }).some(
    (e) => e.isDirectory() && versionFolder.test(e.name) && existsSync(path.join(dir, e.name, 'manifest.json')),
  );
}

/** The version folders a model folder's policy selects, oldest first; a single-manifest folder is one version. */
async function servedVersions(dir: string): Promise<{ version?: string; folder: string }[]> {
  if (existsSync(path.join(dir, 'manifest.json'))) return [{ folder: dir }];
  const all = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isDirectory() && versionFolder.test(e.name) && existsSync(path.join(dir, e.name, 'manifest.json')))
    .map((e) => String(Number(e.name)))
    .sort(compareVersions);
  const where = path.join(dir, 'versions.json');
  let policy: { policy?: unknown; count?: unknown; versions?: unknown } = { policy: 'latest', count: 1 };
  if (existsSync(where)) {
    try {
      policy = JSON.parse(await readFile(where, 'utf8'));
    } catch (err) {
      throw new ManifestError(`${where}: not valid JSON: ${(err as Error).message}`);
    }
  }
  let chosen: string[];
  if (policy.policy === 'all') chosen = all;
  else if (policy.policy === 'latest' && Number.isInteger(policy.count ?? 1) && Number(policy.count ?? 1) >= 1)
    chosen = all.slice(-Number(policy.count ?? 1));
  else if (policy.policy === 'specific' && Array.isArray(policy.versions)) {
    const wanted = policy.versions.map(String);
    const missing = wanted.filter((v) => !all.includes(v));
    if (missing.length) throw new ManifestError(`${where}: versions ${missing.join(', ')} have no folder`);
    chosen = all.filter((v) => wanted.includes(v));
  } else {
    throw new ManifestError(
      `${where}: /policy must be {"policy": "latest", "count": n}, {"policy": "specific", "versions": [...]} or {"policy": "all"}`,
    );
  }
  if (chosen.length === 0) throw new ManifestError(`${where}: the policy selects no version`);
  const numbered = (await readdir(dir)).filter((n) => versionFolder.test(n));
  const twice = numbered.filter((n, i) => numbered.findIndex((m) => Number(m) === Number(n)) !== i);
  if (twice.length) throw new ManifestError(`${dir}: version folders ${twice.join(', ')} repeat a version`);
  // folder names like "007" are the version "7"
  const folderOf = new Map(
    (await readdir(dir)).filter((n) => versionFolder.test(n)).map((n) => [String(Number(n)), path.join(dir, n)]),
  );
  return chosen.map((version) => ({ version, folder: folderOf.get(version)! }));
}

/**
 * The checks a new model passes before it replaces a serving one: the same task (clients read its answers), and,
 * when its manifest lists rollout samples, answers that agree with the serving model's on at least `minAgreement` of
 * them. Answers agree when they are equal once scores are ignored, numbers (boxes, milliseconds) rounded to integers,
 * and only the first prediction kept: the same top-1 label, text, boxes, faces or segments.
 */
async function checkSwap(serving: LoadedModel, fresh: LoadedModel): Promise<void> {
  if (fresh.task !== serving.task) {
    throw new Error(`the new manifest's task is ${fresh.task}; the serving model's is ${serving.task}`);
  }
  const rollout = fresh.manifest.rollout;
  if (!rollout) return;
  const dir = resolveFile(
    fresh.dir,
    rollout.samples,
    undefined,
    '/rollout/samples',
    path.join(fresh.dir, 'manifest.json'),
  );
  const files = (await readdir(dir)).filter((f) => mediaKind(f) !== undefined).sort();
  if (files.length === 0) throw new Error(`/rollout/samples: no media files in ${dir}`);
  let agree = 0;
  const wrong = files.filter((f) => !(fresh.pipeline.accepts as readonly string[]).includes(mediaKind(f)!));
  if (wrong.length) throw new Error(`/rollout/samples: ${wrong.join(', ')} cannot be sent to a ${fresh.task} model`);
  for (const file of files) {
    const input = mediaInput(mediaKind(file)!, await readFile(path.join(dir, file)), file);
    // a check, not traffic: not refused at the doors of a busy serving model
    const opts = { deadline: performance.now() + 60_000, timeoutMs: 60_000, admitted: true };
    const [a, b] = await Promise.all([serving.infer(input, opts), fresh.infer(input, opts)]);
    if (JSON.stringify(comparable(a)) === JSON.stringify(comparable(b))) agree++;
  }
  const rate = agree / files.length;
  if (rate < rollout.minAgreement) {
    throw new Error(
      `the new model agrees with the serving one on ${agree} of ${files.length} rollout samples (${rate.toFixed(3)} < /rollout/minAgreement ${rollout.minAgreement})`,
    );
  }
}

/** An answer reduced to what {@link checkSwap} compares. */
function comparable(v: unknown, key = ''): unknown {
  if (Array.isArray(v)) return (key === 'predictions' ? v.slice(0, 1) : v).map((x) => comparable(x));
  if (typeof v === 'number') return Math.round(v);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.entries(v)
        .filter(([k]) => k !== 'score')
        .map(([k, x]) => [k, comparable(x, k)]),
    );
  return v;
}

/**
 * Runs one full-size batch of zeros on each session at once, so the first real request does not pay for arena
 * growth and kernel setup (on CUDA: the convolution algorithm search) on any of them.
 */
async function warmUp(pipeline: TaskPipeline, size: number, sessions: number): Promise<void> {
  const row: Prepared<unknown> = pipeline.warmupRow();
  await Promise.all(
    Array.from({ length: sessions }, () => pipeline.runBatch(Array.from({ length: size }, () => row.row))),
  );
}

/** Label files: one label per line; a final newline does not make an extra label. */
function parseLabels(text: string): string[] {
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

/**
 * Resolves a file named by a manifest, relative to the model folder or to an installed npm package, and refuses
 * anything that escapes that base folder.
 */
export function resolveFile(dir: string, file: string, pkg: string | undefined, field: string, where: string): string {
  let base = dir;
  if (pkg !== undefined) {
    if (!new RegExp(npmPackagePattern).test(pkg))
      throw new ManifestError(`${where}: ${field}: '${pkg}' is not an npm package name`);
    // look next to the model folder first, then in the server's own node_modules
    const searched = [dir, packageRoot].flatMap(
      (from) => createRequire(path.resolve(from, 'x.js')).resolve.paths(pkg) ?? [],
    );
    const found = searched.map((p) => path.join(p, pkg)).find((p) => existsSync(path.join(p, 'package.json')));
    if (!found) throw new ManifestError(`${where}: ${field}: npm package '${pkg}' is not installed (run npm ci)`);
    base = found;
  }
  const outside = () =>
    new ManifestError(`${where}: ${field} '${file}' points outside ${pkg ? `package '${pkg}'` : 'the model folder'}`);
  const full = path.resolve(base, file);
  if (!isInside(base, full)) throw outside();
  if (!existsSync(full)) throw new ManifestError(`${where}: ${field}: ${full} does not exist`);
  // and where it really is: a symlink (the file or a folder on the way) must not lead out of the base folder
  if (!isInside(realpathSync(base), realpathSync(full))) throw outside();
  return full;
}

/** True when `file` is `base` or below it. */
function isInside(base: string, file: string): boolean {
  const rel = path.relative(base, file);
  return !rel.startsWith('..') && !path.isAbsolute(rel);
}
