import type { Duration, VersionStatistics } from '../inference-stats.js';

// Triton's statistics extension: `inference.ModelStatisticsResponse` in proto3 JSON (field names as in the .proto,
// 64-bit integers as numbers), from the counters kept beside the per-model metrics (inference-stats.ts).
// Protocol-neutral: the HTTP route and a gRPC service answer the same object.

/** One model version and its counters. */
export interface StatisticsOf {
  readonly name: string;
  readonly version: string;
  readonly stats: VersionStatistics;
}

const copy = (d: Duration): Duration => ({ count: d.count, ns: d.ns });

/** Triton's compute durations of one batch size (InferBatchStatistics). */
export interface BatchStatisticsJson {
  batch_size: number;
  compute_input: Duration;
  compute_infer: Duration;
  compute_output: Duration;
}

/** Triton's ModelStatistics, the fields served. */
export interface ModelStatisticsJson {
  name: string;
  version: string;
  last_inference: number;
  inference_count: number;
  execution_count: number;
  inference_stats: Record<
    'success' | 'fail' | 'queue' | 'compute_input' | 'compute_infer' | 'compute_output',
    Duration
  >;
  batch_stats: BatchStatisticsJson[];
}

/**
 * The statistics of the given model versions. `success` and `fail` are requests answered (all of them, not only
 * those that reached the runtime); `queue` is every row cut into a batch; `compute_infer` charges each row its
 * batch's whole time (stacking, the run and splitting: compute_input and compute_output are inside it, so they
 * carry the same count and 0 ns); `batch_stats` has one entry per batch size that ran, in size order.
 */
export function modelStatisticsJson(models: readonly StatisticsOf[]): { model_stats: ModelStatisticsJson[] } {
  return {
    model_stats: models.map(({ name, version, stats: s }) => ({
      name,
      version,
      last_inference: s.lastInference,
      inference_count: s.inferenceCount,
      execution_count: s.executionCount,
      inference_stats: {
        success: copy(s.success),
        fail: copy(s.fail),
        queue: copy(s.queue),
        compute_input: { count: s.computeInfer.count, ns: 0 },
        compute_infer: copy(s.computeInfer),
        compute_output: { count: s.computeInfer.count, ns: 0 },
      },
      batch_stats: [...s.batches.entries()]
        .sort(([a], [b]) => a - b)
        .map(([size, d]) => ({
          batch_size: size,
          compute_input: { count: d.count, ns: 0 },
          compute_infer: copy(d),
          compute_output: { count: d.count, ns: 0 },
        })),
    })),
  };
}
