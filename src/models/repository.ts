import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { Errors } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { TaskWorkers } from '../workers/task-workers.js';
import { compareVersions, isServedName, modelFolders, redactPaths, servedVersions } from './folder.js';
import { LoadError, LoadedModel } from './loaded-model.js';
import { ModelLoader, threadsPerModel, type LoadContext } from './loader.js';
import { modelNamePattern } from './manifest.js';
import { PoisonedInputs } from './poisoned-inputs.js';
import { providerLine, providerOf } from './providers.js';
import { checkSwap } from './rollout.js';
import { gaugesOf, ready, type ModelStatus } from './status.js';

export { LoadError, LoadedModel, type InferOptions } from './loaded-model.js';

/** The longest wait between two background reloads of a model that broke. */
const MAX_RELOAD_BACKOFF_MS = 300_000;

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
  constructor(config: Config, metrics: Metrics, log: Logger, faults: { readonly workerEntry?: URL } = {}) {
    this.#config = config;
    this.#metrics = metrics;
    this.#log = log;
    this.#workers = new TaskWorkers(config.taskThreads, config.preprocessThreads, undefined, config.workerNice);
    this.#loader = new ModelLoader(config, metrics, log, this.#workers, faults);
    metrics.watchModels(() => this.list().map(gaugesOf));
  }

  readonly #config: Config;
  readonly #metrics: Metrics;
  readonly #log: Logger;

  /** The threads every model's pre- and post-processing runs on. */
  readonly #workers: TaskWorkers;

  /** The task workers, for request work outside a model's pipeline (decoding a large v2 infer body). */
  get workers(): TaskWorkers {
    return this.#workers;
  }

  readonly #loader: ModelLoader;

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
    const delay = Math.min(MAX_RELOAD_BACKOFF_MS, this.#config.reloadBackoffMs * 2 ** attempt);
    const s = this.#models.get(name);
    if (s?.state === 'FAILED') this.#models.set(name, { ...s, reloads: attempt, nextReloadAt: Date.now() + delay });
    const timer = setTimeout(() => {
      this.#healing.delete(name);
      void this.#serially(name, async () => {
        if (this.#models.get(name)?.state !== 'FAILED' || this.#draining) return; // reloaded or unloaded meanwhile
        try {
          const versions = await this.#loadVersions(name, threadsPerModel(this.#config, this.#models.size));
          this.#models.set(name, ready(name, versions));
          this.#metrics.modelReloads.inc({ model: name, outcome: 'ready' });
          this.#log.info({ model: name, attempt: attempt + 1 }, 'failed model reloaded; serving again');
        } catch (err) {
          this.#metrics.modelReloads.inc({ model: name, outcome: 'failed' });
          const error = this.#redact(err instanceof Error ? err.message : String(err));
          this.#models.set(name, { state: 'FAILED', name, error });
          this.#log.warn({ model: name, err, attempt: attempt + 1 }, 'reloading a failed model failed; trying again');
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

  /** Queue depth of each batcher of a model (its versions, and the old one during a reload), by model. */
  readonly #depths = new Map<string, Map<object, number>>();

  #depthsOf(name: string): Map<object, number> {
    let depths = this.#depths.get(name);
    if (!depths) this.#depths.set(name, (depths = new Map()));
    return depths;
  }

  /** What a load of `name` needs from the repository: state kept across its reloads, and the other models. */
  #contextOf(name: string): LoadContext {
    let poisoned = this.#poisoned.get(name);
    if (!poisoned) this.#poisoned.set(name, (poisoned = new PoisonedInputs()));
    return {
      poisoned,
      depths: this.#depthsOf(name),
      stages: { names: () => [...this.#models.keys()], model: (stage) => this.readyModel(stage) },
      onBroken: (model, reason) => this.#broken(model, reason),
    };
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
    const threads = threadsPerModel(this.#config, names.length);
    // while the models load; a thread that cannot start is started again by the first op that needs it
    const workersStarted = this.#workers
      .warm()
      .catch((err: unknown) => this.#log.warn({ err }, 'task workers did not all start'));
    const failures: { name: string; error: string }[] = [];
    for (const name of names.sort()) {
      const started = performance.now();
      try {
        const versions = await this.#loadVersions(name, threads);
        this.#models.set(name, ready(name, versions));
        for (const model of versions.values()) {
          this.#log.info(
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
        this.#log.error({ model: name, err }, 'model failed to load');
      }
    }
    await workersStarted;
    this.#loaded = true;
    const served = this.list().flatMap((s) => (s.state === 'READY' ? [providerOf(s.model)] : []));
    const line = providerLine(served, this.#config.executionProvider);
    this.#log[line.level](line.fields, line.msg);
    return failures;
  }

  /** Model folders of the repository, in name order (see modelFolders). */
  #folders(): Promise<string[]> {
    return modelFolders(this.#config.modelRepository, (folder) =>
      this.#log.warn({ folder }, 'skipping model folder: name must match %s', modelNamePattern),
    );
  }

  /** A failure reason as clients may read it: no absolute paths (the log keeps the whole message). */
  #redact(message: string): string {
    return redactPaths(message, this.#config.modelRepository);
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

  /** Checks a model name from a client (see isServedName). */
  #checkName(name: string): void {
    if (!isServedName(this.#config.modelRepository, name)) throw new Errors.MODEL_NOT_FOUND(name);
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
        fresh = await this.#loadVersions(name, threadsPerModel(this.#config, this.#models.size));
      } catch (err) {
        const error = this.#redact(err instanceof Error ? err.message : String(err));
        if (this.#models.get(name)?.state !== 'READY') this.#models.set(name, { state: 'FAILED', name, error });
        this.#log.warn({ model: name, err }, 'model load failed');
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
      const { fields, level } = providerLine([providerOf(next.model)], this.#config.executionProvider);
      this.#log[level](
        {
          model: name,
          versions: [...fresh.keys()],
          replaced: serving ? [...serving.versions.keys()] : null,
          provider: fields.providers[name],
          ...(fields.cpuReason ? { cpuReason: fields.cpuReason } : {}),
        },
        'model loaded',
      );
      for (const old of serving?.versions.values() ?? []) {
        this.#forget(old, fresh.get(old.version));
        old.close().catch((err: unknown) => this.#log.error({ model: name, err }, 'freeing the old model failed'));
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
        this.#log.info({ model: name, versions: [...s.versions.keys()] }, 'model unloaded');
      }
    });
  }

  /** Drops an old model's info series (unless its replacement has the same labels). */
  #forget(old: LoadedModel, replacement?: LoadedModel): void {
    const labels = (m: LoadedModel) => ({ model: m.name, version: m.version, provider: m.session.provider });
    if (replacement && JSON.stringify(labels(old)) === JSON.stringify(labels(replacement))) return;
    this.#metrics.modelInfo.remove(labels(old));
  }

  /**
   * Loads every version a model folder serves: the folder's own manifest (one version, its `version` field), or the
   * numbered version folders (`<name>/1/manifest.json`, `<name>/2/...`) its version policy selects (`versions.json`:
   * `{"policy": "latest", "count": n}` (default: latest 1), `{"policy": "specific", "versions": ["1", "3"]}` or
   * `{"policy": "all"}`). A version that fails fails the model: its other versions are freed.
   */
  async #loadVersions(name: string, threads: number): Promise<Map<string, LoadedModel>> {
    const dir = path.join(this.#config.modelRepository, name);
    const loaded = new Map<string, LoadedModel>();
    try {
      for (const { version, folder } of await servedVersions(dir)) {
        loaded.set(version ?? '', await this.#loader.load(name, threads, folder, version, this.#contextOf(name)));
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

  /** A model whose session workers kept dying: FAILED, freed, and loaded again in the background. */
  #broken(model: LoadedModel, reason: string): void {
    const s = this.#models.get(model.name);
    if (s?.state !== 'READY' || ![...s.versions.values()].includes(model)) return; // already replaced or unloaded
    this.#models.set(model.name, { state: 'FAILED', name: model.name, error: this.#redact(reason) });
    // the broken versions are freed once their requests are answered (they fail at once), and the folder is loaded
    // again in the background
    for (const v of s.versions.values())
      v.close().catch((err: unknown) => this.#log.warn({ model: model.name, err }, 'freeing a broken model failed'));
    this.#healLater(model.name, 0);
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
}
