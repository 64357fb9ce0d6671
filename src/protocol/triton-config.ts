import type { LoadedModel } from '../models/loaded-model.js';
import type { TensorInfo } from '../models/session.js';
import { batchesOnAxis0 } from '../models/tensors.js';

// Triton's model configuration extension: a served model described as Triton's `inference.ModelConfig`
// (model_config.proto) in its proto3 JSON form, field names as in the .proto (snake_case, which proto3 JSON parsers
// accept: protobuf-es `fromJson` reads it into the message for gRPC), enums by name, 64-bit integers as numbers.
// Protocol-neutral: the HTTP route and a gRPC service answer the same object.

/** Triton's `DataType` names of onnxruntime's element types. */
const dataTypes: Record<string, string> = {
  bool: 'TYPE_BOOL',
  uint8: 'TYPE_UINT8',
  uint16: 'TYPE_UINT16',
  uint32: 'TYPE_UINT32',
  uint64: 'TYPE_UINT64',
  int8: 'TYPE_INT8',
  int16: 'TYPE_INT16',
  int32: 'TYPE_INT32',
  int64: 'TYPE_INT64',
  float16: 'TYPE_FP16',
  float32: 'TYPE_FP32',
  float64: 'TYPE_FP64',
  string: 'TYPE_STRING',
  bfloat16: 'TYPE_BF16',
};

/** The Triton `DataType` of a graph tensor type; TYPE_INVALID for one Triton has no name for. */
export function tritonDataType(type: string): string {
  return dataTypes[type] ?? 'TYPE_INVALID';
}

/** The parts of a served model its configuration is read from. */
export type ConfigSource = Pick<LoadedModel, 'name' | 'task' | 'session' | 'timeoutMs' | 'manifest'> & {
  readonly batcher: { readonly options: LoadedModel['batcher']['options'] };
};

/** Whether Triton would see the model batched on its first axis (max_batch_size > 0): every tensor has it free. */
export function batchedOnAxis0(model: Pick<ConfigSource, 'session' | 'batcher'>): boolean {
  const { inputs, outputs } = model.session;
  return model.batcher.options.maxBatchSize >= 1 && [...inputs, ...outputs].every(batchesOnAxis0);
}

/**
 * The model's configuration as Triton's `ModelConfig` in proto3 JSON: what actually serves, not the manifest's
 * wishes (the batching limits in effect, the provider the sessions got).
 * - `max_batch_size` is the batcher's when every input and output has a free axis 0 (raw requests stack along it,
 *   and `dims` then leave it out, as Triton's do); 0 for graphs with a fixed or no batch axis, whose `dims` are whole.
 * - `version_policy`: the versions served (`specific`) when they are numbered folders, else `latest` 1 (a single
 *   manifest's version, such as "2.0", is not one of Triton's integer versions).
 * - `dynamic_batching`: preferred sizes, the delay and the queue (its size, the default deadline, and that clients
 *   may ask for theirs, shorter or up to `maxTimeoutMs`; a request past its deadline is refused: REJECT).
 * - `instance_group`: one group of the sessions that compute batches at once, on the GPU or the CPU.
 */
export function modelConfigJson(model: ConfigSource, versions: readonly string[]): Record<string, unknown> {
  const { inputs, outputs, provider } = model.session;
  const options = model.batcher.options;
  const batched = batchedOnAxis0(model);
  const tensor = (t: TensorInfo) => ({
    name: t.name,
    data_type: tritonDataType(t.type),
    dims: (batched ? t.shape.slice(1) : t.shape).map((d) => (typeof d === 'number' ? d : -1)),
  });
  const numbered = versions.length > 0 && versions.every((v) => /^\d{1,15}$/.test(v));
  const sessions = model.manifest.runtime.thread === 'worker' ? options.maxInFlightBatches : 1;
  return {
    name: model.name,
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime',
    version_policy: numbered ? { specific: { versions: versions.map(Number) } } : { latest: { num_versions: 1 } },
    max_batch_size: batched ? options.maxBatchSize : 0,
    input: inputs.map(tensor),
    output: outputs.map(tensor),
    dynamic_batching: {
      preferred_batch_size: [...options.preferredBatchSizes],
      max_queue_delay_microseconds: Math.round(options.maxQueueDelayMs * 1000),
      default_queue_policy: {
        timeout_action: 'REJECT',
        default_timeout_microseconds: Math.round(model.timeoutMs * 1000),
        allow_timeout_override: true,
        max_queue_size: options.maxQueueSize,
      },
    },
    instance_group: [
      {
        name: model.name,
        kind: provider === 'cuda' ? 'KIND_GPU' : 'KIND_CPU',
        count: sessions,
        ...(provider === 'cuda' ? { gpus: [0] } : {}),
      },
    ],
    parameters: { task: { string_value: model.task } },
  };
}
