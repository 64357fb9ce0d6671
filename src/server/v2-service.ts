import { createHash, timingSafeEqual } from 'node:crypto';
import type { Config } from '../config.js';
import { Errors } from '../errors.js';
import { LoadError, type LoadedModel, type ModelRepository } from '../models/repository.js';
import type { TensorOutputs } from '../models/tensors.js';
import type { Metrics } from '../metrics.js';
import { modelConfigJson } from '../protocol/triton-config.js';
import { modelStatisticsJson, type StatisticsOf } from '../protocol/triton-stats.js';
import { checkRequestedOutputs, type InferRequest } from '../protocol/v2-codec.js';
import { datatypeOfGraphType } from '../protocol/v2-tensors.js';

// The Open Inference Protocol's operations, whatever carries them: the REST routes (routes/v2.ts) and the gRPC
// service (grpc/) answer from these, so both protocols give the same answers and the same errors.

/** A model's v2 metadata: its versions, and its graph's tensors with v2 datatypes (-1 for a dynamic dimension). */
export function modelMetadata(repository: ModelRepository, m: LoadedModel) {
  const tensors = (list: LoadedModel['session']['inputs']) =>
    list.map((t) => ({
      name: t.name,
      datatype: datatypeOfGraphType(t.type),
      shape: t.shape.map((d) => (typeof d === 'number' ? d : -1)),
    }));
  return {
    name: m.name,
    versions: repository.versions(m.name),
    platform: 'onnxruntime_onnx',
    inputs: tensors(m.session.inputs),
    outputs: tensors(m.session.outputs),
  };
}

/**
 * Repository changes need `Authorization: Bearer $MUON_ADMIN_TOKEN` (an HTTP header, or gRPC metadata); without a
 * token configured they are disabled. Compared as hashes in constant time.
 */
export function checkAdminToken(config: Config, authorization: string | undefined): void {
  if (config.adminToken === undefined) throw new Errors.ADMIN_DISABLED();
  const given = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')?.[1];
  if (given === undefined) throw new Errors.UNAUTHORIZED('send Authorization: Bearer <MUON_ADMIN_TOKEN>');
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(config.adminToken).digest();
  if (!timingSafeEqual(a, b)) throw new Errors.UNAUTHORIZED('wrong token');
}

/** Loads (or reloads) a model folder; a failed load or check is MUON_ERR_LOAD_FAILED, the serving version stays. */
export async function loadModel(repository: ModelRepository, name: string): Promise<void> {
  try {
    await repository.loadModel(name);
  } catch (err) {
    if (err instanceof LoadError) throw new Errors.LOAD_FAILED(name, err.message);
    throw err;
  }
}

/** Where a decoded infer request goes, and what bounds it. */
export interface InferTarget {
  readonly name: string;
  readonly version?: string;
  /** When the request arrived (`performance.now()`): its deadline counts from there. */
  readonly arrival: number;
  /** The request's deadline budget once its serving model is known (the client's, capped by the model's). */
  readonly timeoutMs: (model: LoadedModel) => number;
  /** Aborts when the client is gone. */
  readonly signal: AbortSignal;
  /** Told the model serving the request once it is known (for the request metrics and statistics). */
  readonly onModel?: (model: LoadedModel) => void;
}

/**
 * Hands a decoded request to the model serving it now (looked up again: a reload may have swapped it while the
 * request waited for memory), on the model's own batcher, next to `/predict` requests.
 */
export async function inferDecoded(
  repository: ModelRepository,
  target: InferTarget,
  request: InferRequest,
): Promise<{ model: LoadedModel; outputs: TensorOutputs }> {
  const model = repository.readyModel(target.name, target.version);
  target.onModel?.(model);
  checkRequestedOutputs(request.outputs, model.session.outputs);
  const timeoutMs = target.timeoutMs(model);
  const outputs = await model.inferTensors(request.feeds, {
    deadline: target.arrival + timeoutMs,
    timeoutMs,
    signal: target.signal,
  });
  return { model, outputs };
}

/** A model (version) as Triton's ModelConfig, proto3 JSON (HTTP `/config` and gRPC `ModelConfig`). */
export function modelConfig(repository: ModelRepository, name: string, version?: string): Record<string, unknown> {
  const m = repository.readyModel(name, version);
  return modelConfigJson(m, repository.versions(m.name));
}

/**
 * Triton's inference statistics of one model version, of every version a model serves (no version), or of every
 * served model (no name): HTTP `/stats` and gRPC `ModelStatistics`.
 */
export function modelStatistics(
  repository: ModelRepository,
  metrics: Metrics,
  name?: string,
  version?: string,
): ReturnType<typeof modelStatisticsJson> {
  const statsOf = (m: LoadedModel): StatisticsOf => ({
    name: m.name,
    version: m.version,
    stats: metrics.statistics.of(m.name, m.version),
  });
  if (name === undefined) {
    const serving = repository.list().flatMap((s) => (s.state === 'READY' ? [...s.versions.values()] : []));
    return modelStatisticsJson(serving.map(statsOf));
  }
  if (version !== undefined) return modelStatisticsJson([statsOf(repository.readyModel(name, version))]);
  repository.readyModel(name); // 404 unknown, 503 not serving
  return modelStatisticsJson(repository.versions(name).map((v) => statsOf(repository.readyModel(name, v))));
}
