import { ModelSession } from '../models/session.js';
import { ortOptimizedModel } from './ort-optimize.js';
import type { Sample } from './dataset.js';

/** How close a compressed model's outputs are to the original's, over a set of samples. */
export interface Fidelity {
  readonly samples: number;
  /** Fraction of rows whose argmax (last axis of the first output) agrees; classifiers only. */
  readonly top1Agreement: number;
  /** Cosine similarity of the flattened first output, mean and worst over samples. */
  readonly cosineMean: number;
  readonly cosineMin: number;
  /** Largest absolute difference over every output value. */
  readonly maxAbsError: number;
  /** Fraction of first-output values on the same side of `threshold` (a detector's decision), when one is given. */
  readonly decisionAgreement?: number;
}

/** Options shared by the measurements: the same threads for both models, so latencies compare. */
export interface MeasureOptions {
  readonly threads: number;
  /** Called after each sample, for progress bars. */
  readonly onSample?: () => void;
  /** Decision threshold on the first output (a probability), for {@link Fidelity.decisionAgreement}. */
  readonly threshold?: number;
}

/** Creates a CPU session for measurements. */
export function cpuSession(bytes: Uint8Array, threads: number): Promise<ModelSession> {
  return ModelSession.create(bytes, { provider: 'cpu', intraOpThreads: threads });
}

/** Runs both models on every sample and compares their first output. */
export async function compareModels(
  original: ModelSession,
  compressed: ModelSession,
  samples: readonly Sample[],
  opts: MeasureOptions,
): Promise<Fidelity> {
  const out = original.outputs[0].name;
  let rows = 0;
  let agree = 0;
  let cosSum = 0;
  let cosMin = Infinity;
  let maxAbs = 0;
  let values = 0;
  let sameSide = 0;
  const t = opts.threshold;
  for (const s of samples) {
    const a = (await original.run(s.feeds, [out]))[out];
    const b = (await compressed.run(s.feeds, [out]))[out];
    const x = toFloats(a.data);
    const y = toFloats(b.data);
    const width = a.dims.at(-1) ?? x.length;
    for (let r = 0; r + width <= x.length; r += width, rows++) {
      if (argmax(x, r, width) === argmax(y, r, width)) agree++;
    }
    const c = cosine(x, y);
    cosSum += c;
    cosMin = Math.min(cosMin, c);
    for (let i = 0; i < x.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(x[i] - y[i]));
      if (t !== undefined && x[i] >= t === y[i] >= t) sameSide++;
    }
    values += x.length;
    opts.onSample?.();
  }
  return {
    samples: samples.length,
    top1Agreement: rows ? agree / rows : 1,
    cosineMean: samples.length ? cosSum / samples.length : 1,
    cosineMin: samples.length ? cosMin : 1,
    maxAbsError: maxAbs,
    ...(t !== undefined ? { decisionAgreement: values ? sameSide / values : 1 } : {}),
  };
}

/** Median wall time of `runs` calls of `session.run` on one sample, after a few warm-up calls. */
export async function medianLatencyMs(session: ModelSession, sample: Sample, runs: number): Promise<number> {
  const outputs = session.outputs.map((o) => o.name);
  for (let i = 0; i < 3; i++) await session.run(sample.feeds, outputs);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(sample.feeds, outputs);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/**
 * Operator counts of the graph onnxruntime actually runs (its `extended` optimizations: the level where QDQ
 * groups become QLinearConv / QLinearMatMul and dynamic patterns become DynamicQuantizeMatMul), so a "quantized"
 * model that would silently run in float is caught.
 */
export async function runtimeKernels(bytes: Uint8Array): Promise<Record<string, number>> {
  const optimized = await ortOptimizedModel(bytes, 'extended', 'muon-kernels-');
  const counts: Record<string, number> = {};
  for (const n of optimized.graph?.node ?? []) {
    const op = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.${n.opType}` : n.opType;
    counts[op] = (counts[op] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}

function toFloats(d: ArrayLike<number | bigint>): Float64Array {
  return Float64Array.from(d as ArrayLike<number>, Number);
}

function argmax(x: Float64Array, from: number, width: number): number {
  let best = from;
  for (let i = from + 1; i < from + width; i++) if (x[i] > x[best]) best = i;
  return best - from;
}

/** Cosine similarity of two equally long vectors; two zero vectors count as identical. */
export function cosine(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let dot = 0;
  let nx = 0;
  let ny = 0;
  for (let i = 0; i < x.length; i++) {
    dot += x[i] * y[i];
    nx += x[i] * x[i];
    ny += y[i] * y[i];
  }
  if (nx === 0 && ny === 0) return 1;
  return dot / Math.sqrt(nx * ny || 1);
}
