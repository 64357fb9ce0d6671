import type { Manifest } from '../models/manifest.js';
import type { HostTensor, ModelSession, TensorInfo } from '../models/session.js';
import type { Sample } from './dataset.js';
import { cpuSession, medianLatencyMs } from './evaluate.js';

/** What the compressor optimizes: `latency` ships only a model at least as fast as its original; `size` any. */
export const objectives = ['latency', 'size'] as const;
export type Objective = (typeof objectives)[number];

/**
 * How much slower than its original a compressed model may measure and still count as "at least as fast" for the
 * latency objective: medians of a few dozen runs of the same graph differ by about that much from run to run here.
 */
export const LATENCY_TOLERANCE = 0.03;

/** Median latencies of the original and the compressed model at one batch size. */
export interface BatchLatency {
  readonly batch: number;
  readonly before: number;
  readonly after: number;
}

/**
 * The batch sizes the server will run a model at: one request alone, and the manifest's largest batch (when the
 * graph's batch axis is free). Without a manifest, one.
 */
export function servedBatchSizes(manifest: Manifest | undefined): number[] {
  const max = manifest?.batching.maxBatchSize ?? 1;
  return max > 1 ? [1, max] : [1];
}

/**
 * `sample` as a batch of `n`: each feed whose graph input has a free first axis and whose sample has 1 there is
 * repeated `n` times along it; other feeds (a scalar, a recurrent state) stay as they are. Undefined when no feed
 * batches (the graph has a fixed batch).
 */
export function batchOf(sample: Sample, n: number, inputs: readonly TensorInfo[]): Sample | undefined {
  if (n === 1) return sample;
  let batched = false;
  const feeds: Record<string, HostTensor> = {};
  for (const [name, t] of Object.entries(sample.feeds)) {
    const input = inputs.find((i) => i.name === name);
    const free = input !== undefined && input.shape.length > 0 && typeof input.shape[0] !== 'number';
    if (!free || t.dims[0] !== 1) {
      feeds[name] = t;
      continue;
    }
    const data = new (t.data.constructor as new (n: number) => HostTensor['data'])(t.data.length * n);
    for (let i = 0; i < n; i++) (data as Float32Array).set(t.data as Float32Array, i * t.data.length);
    feeds[name] = { type: t.type, data, dims: [n, ...t.dims.slice(1)] };
    batched = true;
  }
  return batched ? { name: `${sample.name} x${n}`, feeds } : undefined;
}

/** A batch size served but not measured, and why. */
export interface Unmeasured {
  readonly batch: number;
  readonly reason: string;
}

/**
 * Median latencies of the original and the compressed model at each batch size (in this process, the same
 * threads, taking turns per batch size). A batch size the original does not run at with this sample (a fixed batch
 * axis, a feed that does not batch along its first axis, such as a recurrent state) is reported as unmeasured; one
 * the compressed model fails at where the original runs is an error.
 */
export async function compareLatency(
  original: ModelSession,
  compressedBytes: Uint8Array,
  sample: Sample,
  batches: readonly number[],
  opts: { readonly runs: number; readonly threads: number },
  progress: { phase(name: string, total: number): void; tick(): void },
): Promise<{ measured: BatchLatency[]; unmeasured: Unmeasured[] }> {
  const compressed = await cpuSession(compressedBytes, opts.threads);
  try {
    progress.phase('latency', 2 * batches.length);
    const measured: BatchLatency[] = [];
    const unmeasured: Unmeasured[] = [];
    for (const n of batches) {
      const s = batchOf(sample, n, original.inputs);
      let before: number;
      try {
        if (!s) throw new Error('no input of the graph has a free first axis');
        before = await medianLatencyMs(original, s, opts.runs);
      } catch (err) {
        if (n === 1) throw err; // the sample itself does not run: not a batching question
        unmeasured.push({ batch: n, reason: `the original does not run this sample as a batch: ${message(err)}` });
        progress.tick();
        progress.tick();
        continue;
      }
      progress.tick();
      let after: number;
      try {
        after = await medianLatencyMs(compressed, s!, opts.runs);
      } catch (err) {
        throw new Error(`the compressed model fails at batch ${n}, where the original runs: ${message(err)}`);
      }
      progress.tick();
      measured.push({ batch: n, before, after });
    }
    return { measured, unmeasured };
  } finally {
    await compressed.release();
  }
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0].slice(0, 300);

/** The batch sizes at which the compressed model is slower than its original beyond {@link LATENCY_TOLERANCE}. */
export function slowerAt(latencies: readonly BatchLatency[]): BatchLatency[] {
  return latencies.filter((l) => l.after > l.before * (1 + LATENCY_TOLERANCE));
}
