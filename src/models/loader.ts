import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { BatchingOptions, BatchObserver } from '../batching/batcher.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { checkExternalData, hasExternalData } from '../onnx/external-data.js';
import { decodeModel, encodeModel, type ModelProto } from '../onnx/model.js';
import type { TaskWorkers } from '../workers/task-workers.js';
import { readManifest, resolveFile } from './folder.js';
import { LoadedModel } from './loaded-model.js';
import { batchingOn, ManifestError, type Manifest } from './manifest.js';
import { createPipeline } from './pipeline.js';
import type { PoisonedInputs } from './poisoned-inputs.js';
import { WorkerSessionPool } from './session-pool.js';
import { cudaNotInstalled, ModelSession, type ServingSession, type SessionOptions } from './session.js';
import { taskDefinition } from './tasks/registry.js';
import type { Prepared, StageModels, TaskPipeline } from './tasks/task.js';

// The loader: one model version from its folder to a served model. Reads and verifies the manifest and the model
// file, creates the sessions, builds the task pipeline and the batcher, and warms them up. What happens to the model
// afterwards (states, swaps, healing) is the repository's.

/** What the repository hands the loader for one model: state that outlives a single load. */
export interface LoadContext {
  /** Inputs that killed this model's session workers before (kept across its reloads). */
  readonly poisoned: PoisonedInputs;
  /** The queue depth of each of the model's batchers (versions, and the old one during a swap), summed in metrics. */
  readonly depths: Map<object, number>;
  /** Other models a pipeline may call (OCR's detector and recognizer stages). */
  readonly stages: StageModels;
  /** Called when the model's session workers kept dying and it cannot run any more. */
  onBroken(model: LoadedModel, reason: string): void;
}

export class ModelLoader {
  /**
   * @param workers the threads every model's pre- and post-processing runs on
   * @param faults fault injection for tests: the session workers' entry module
   */
  constructor(
    readonly config: Config,
    readonly metrics: Metrics,
    readonly log: Logger,
    readonly workers: TaskWorkers,
    readonly faults: { readonly workerEntry?: URL } = {},
  ) {}

  /**
   * Loads, checks and warms up one model version. Throws ManifestError for a bad manifest or file.
   * @param dir the folder holding the manifest
   * @param version the version folder's name, which is the version (a manifest `version` must then agree)
   */
  async load(
    name: string,
    intraOpThreads: number,
    dir: string,
    version: string | undefined,
    context: LoadContext,
  ): Promise<LoadedModel> {
    const { manifest, where } = await readManifest(dir, { name, version });
    const { path: modelPath, bytes, proto, external } = await this.#readModelFile(name, dir, manifest, where);
    const onWorkers = manifest.runtime.thread === 'worker';
    // one session per in-flight batch on workers; how many can depend on the provider the first one gets
    const { maxInFlightBatches: onCpu, cuda } = manifest.batching;
    const instances = { cpu: onCpu, cuda: cuda?.maxInFlightBatches ?? onCpu };
    const options: SessionOptions = {
      provider: this.config.executionProvider,
      // sessions on workers compute at the same time: together they get the model's share of the cores
      intraOpThreads: Math.max(1, Math.floor(intraOpThreads / (onWorkers ? onCpu : 1))),
      // counted per session; said once for the whole repository (providerLine), not per model
      onFallback: (reason) =>
        this.metrics.providerFallbacks.inc({
          model: name,
          reason: cudaNotInstalled(reason) ? 'not_installed' : 'failed',
        }),
    };
    let model: LoadedModel | undefined;
    const createSession = async (source: Uint8Array | string): Promise<ServingSession> =>
      onWorkers
        ? await WorkerSessionPool.create(source, options, instances, {
            workerEntry: this.faults.workerEntry,
            nice: this.config.workerNice,
            poisoned: context.poisoned,
            onRestart: (reason) => {
              this.metrics.sessionRestarts.inc({ model: name });
              this.log.error({ model: name, version: manifest.version, reason }, 'session worker died; replacing it');
            },
            onBroken: (reason) => {
              this.log.error({ model: name, version: manifest.version, reason }, 'model cannot run any more');
              if (model) context.onBroken(model, reason);
            },
          })
        : await ModelSession.create(source, options);
    // the graph the task's pipeline runs, where the task builds one around the file's (weights kept in sidecar
    // files stay with the file's graph: onnxruntime finds them only from its path). The file's graph then only
    // serves the raw tensor API: it runs on the event loop, which saves a worker thread and its isolate (about
    // 36 MB); a task builds its own graph where the file's runs too little per call to be worth a hop (a VAD frame)
    const builds = taskDefinition(manifest.task)?.pipelineGraph;
    const built = builds && proto && !external ? builds(proto, manifest) : undefined;
    if (builds && !built)
      this.log.warn(
        { model: name },
        `${manifest.task}: the file's graph is served as it is (not one the task knows how to wrap)`,
      );
    const source = external ? modelPath : bytes;
    const session = built ? await ModelSession.create(source, options) : await createSession(source);
    let pipelineSession = session;
    if (built) {
      try {
        pipelineSession = await createSession(encodeModel(built));
      } catch (err) {
        // the file's graph still serves, as it is: slower, not broken
        this.log.warn({ model: name, err: (err as Error).message }, 'the graph built around the file failed to load');
      }
    }
    try {
      const { pipeline, labels } = await createPipeline(manifest, pipelineSession, dir, where, {
        maxImagePixels: this.config.maxImagePixels,
        workers: this.workers,
        stages: context.stages,
        fileGraph: session,
        provider: pipelineSession.provider,
      });
      const batching = effectiveBatching(manifest.batching, session.provider, pipeline.graphMaxBatch, this.config);
      model = new LoadedModel({
        name,
        dir,
        manifest,
        session,
        pipelineSession,
        pipeline,
        labels,
        batching,
        observer: batchMetrics(this.metrics, name, context.depths, manifest.version),
        timeoutMs: manifest.batching.defaultTimeoutMs ?? this.config.requestTimeoutMs,
        metrics: this.metrics,
        requests: this.workers,
      });
      const sessions = onWorkers ? batching.maxInFlightBatches : 1;
      if (this.config.warmup) await warmUp(pipeline, batching.maxBatchSize, sessions);
      this.metrics.modelInfo.set({ model: name, version: manifest.version, provider: session.provider }, 1);
      return model;
    } catch (err) {
      await Promise.all([session.release(), pipelineSession !== session && pipelineSession.release()]);
      throw err;
    }
  }

  /**
   * Reads a manifest's model file and checks it: the sha256 the manifest pins, and for models that keep their weights
   * in sidecar files (ONNX external data, needed over 2 GB) the sidecars' ranges and checksums. onnxruntime only
   * finds sidecars from the file's path, so `external` tells the caller to create the session from `path`.
   * Sidecars without checksum entries are not covered by the sha256 (muon-compress always writes them).
   */
  async #readModelFile(name: string, dir: string, manifest: Manifest, where: string) {
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
    return { path: file, bytes, proto, external };
  }
}

/**
 * A batcher's events as the model's metrics, and as its version's statistics (Triton's extension) with the same
 * values; `depths` is shared by all the batchers of one model.
 */
export function batchMetrics(m: Metrics, model: string, depths: Map<object, number>, version = ''): BatchObserver {
  const self = {};
  return {
    batchStarted: (size: number, waits: readonly number[]) => {
      m.batchSize.observe({ model }, size);
      for (const w of waits) m.queueWait.observe({ model }, w / 1000);
      m.statistics.batchStarted(model, version, size, waits);
    },
    batchFinished: (size: number, ms: number) => {
      m.inferenceDuration.observe({ model }, ms / 1000);
      m.statistics.batchFinished(model, version, size, ms);
    },
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
  const b = batchingOn(manifest, provider);
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

/** Intra-op threads per model: MUON_INTRA_OP_THREADS, else the cores split over the models. */
export function threadsPerModel(config: Config, models: number): number {
  return config.intraOpThreads ?? Math.max(1, Math.floor(config.cpuCount / Math.max(1, models)));
}
