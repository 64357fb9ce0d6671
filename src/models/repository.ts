import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { Batcher, type BatchingOptions } from '../batching/batcher.js';
import { Errors } from '../errors.js';
import { checkExternalData, hasExternalData } from '../onnx/external-data.js';
import { decodeModel, type ModelProto } from '../onnx/model.js';
import { packageRoot, type Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { ManifestError, modelNamePattern, parseManifest, type Manifest } from './manifest.js';
import { PoisonedInputs } from './poisoned-inputs.js';
import { WorkerSessionPool } from './session-pool.js';
import { ModelSession, type ServingSession, type SessionOptions } from './session.js';
import { isolated, runTensorRows, TensorRow } from './tensors.js';
import { TaskWorkers } from '../workers/task-workers.js';
import type { Prepared, TaskPipeline } from './tasks/task.js';
import { compareVersions, isModelFolder, resolveFile, servedVersions } from './folder.js';
import { LoadError, LoadedModel } from './loaded-model.js';
import { createPipeline } from './pipeline.js';
import { checkSwap } from './rollout.js';

export { LoadError, LoadedModel, type InferOptions } from './loaded-model.js';

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
   * Rejects with MODEL_NOT_FOUND for a name that is not a model folder, LoadError when the load or a check fails.
   */
  async loadModel(name: string): Promise<LoadedModel> {
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

  /**
   * Unloads a model: new requests get 503 at once, the ones already handed to it are answered, then it is freed.
   * Rejects with MODEL_NOT_FOUND for a name that is not a model folder.
   */
  async unloadModel(name: string): Promise<void> {
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

/** A READY status over the versions loaded; unversioned requests get the highest version. */
function ready(name: string, versions: Map<string, LoadedModel>): Extract<ModelStatus, { state: 'READY' }> {
  const order = [...versions.keys()].sort(compareVersions);
  return { state: 'READY', name, model: versions.get(order.at(-1)!)!, versions };
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
