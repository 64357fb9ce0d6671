import { createHash, timingSafeEqual } from 'node:crypto';
import type { Config } from '../config.js';
import { Errors } from '../errors.js';
import { LoadError, type LoadedModel, type ModelRepository } from '../models/repository.js';
import type { TensorOutputs } from '../models/tensors.js';
import { checkRequestedOutputs, datatypeOfGraphType, type InferRequest } from '../protocol/v2-codec.js';

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
  checkRequestedOutputs(request.outputs, model.session.outputs);
  const timeoutMs = target.timeoutMs(model);
  const outputs = await model.inferTensors(request.feeds, {
    deadline: target.arrival + timeoutMs,
    timeoutMs,
    signal: target.signal,
  });
  return { model, outputs };
}
