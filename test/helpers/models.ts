/**
 * Shared helpers of the model tests (test/quantize/): seeded random numbers and weights, output comparison, and
 * "create a session, run, release" with onnxruntime on CPU. Everything is deterministic: the same seed gives the same
 * weights and inputs on every run, so tests can assert exact values.
 */
import { type HostTensor, ModelSession, type SessionOptions } from '../../src/models/session.js';
import { encodeModel, type ModelProto } from '../../src/onnx/model.js';

/**
 * mulberry32: a tiny seeded PRNG, so weights and inputs are the same on every run.
 *
 * @param seed - any integer (taken modulo 2^32)
 * @returns a generator of numbers in [0, 1)
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A 32-bit linear congruential generator (Numerical Recipes' constants): cruder than {@link mulberry32}, kept because
 * the pruning tests' expected values were computed with it.
 *
 * @param seed - any integer (taken modulo 2^32)
 * @returns a generator of numbers in [-0.5, 0.5)
 */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/**
 * `n` float32 values uniform in [offset - scale, offset + scale).
 *
 * @param rand - a generator of [0, 1) numbers, e.g. {@link mulberry32}; called once per value, in order
 */
export function uniform(n: number, scale: number, rand: () => number, offset = 0): Float32Array {
  return Float32Array.from({ length: n }, () => offset + (rand() * 2 - 1) * scale);
}

/**
 * `n` float32 values normally distributed around 0 with standard deviation `std` (Box-Muller, one value per pair of
 * draws, the first draw clamped away from 0).
 *
 * @param rand - a generator of [0, 1) numbers, e.g. {@link mulberry32}; called twice per value, in order
 */
export function gaussian(n: number, std: number, rand: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rand(), 1e-12);
    out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  }
  return out;
}

/** How close two outputs are, see {@link compare}. */
export interface Comparison {
  /** Largest absolute difference. */
  readonly maxAbs: number;
  /** Cosine similarity (NaN when either is all zeros). */
  readonly cosine: number;
  /** Largest absolute value of the reference `a`, to put `maxAbs` in proportion. */
  readonly range: number;
}

/**
 * Compares an output with a reference, element by element (same length).
 *
 * @param a - the reference, e.g. the float model's output
 * @param b - the output to judge, e.g. the compressed model's
 */
export function compare(a: ArrayLike<number>, b: ArrayLike<number>): Comparison {
  let maxAbs = 0;
  let dot = 0;
  let na = 0;
  let nb = 0;
  let range = 0;
  for (let i = 0; i < a.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
    range = Math.max(range, Math.abs(a[i]));
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return { maxAbs, cosine: dot / Math.sqrt(na * nb), range };
}

/** Session settings of {@link runModel} beyond its defaults (CPU, one intra-op thread, level `all`). */
export type RunOptions = Pick<SessionOptions, 'optimizationLevel' | 'optimizedModelPath'>;

/**
 * Creates a CPU session (one intra-op thread) for a model, runs it once and releases it, even when the run throws.
 *
 * @param model - a model, or its serialized bytes
 * @param feeds - the inputs by name
 * @param outputs - names of the outputs to fetch
 * @param opts - optimization level (default `all`) and where onnxruntime should write the optimized model
 * @returns the fetched outputs by name
 */
export async function runModel(
  model: ModelProto | Uint8Array,
  feeds: Record<string, HostTensor>,
  outputs: string[],
  opts: RunOptions = {},
): Promise<Record<string, HostTensor>> {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  const s = await ModelSession.create(bytes, { provider: 'cpu', intraOpThreads: 1, ...opts });
  try {
    return await s.run(feeds, outputs);
  } finally {
    await s.release();
  }
}

/**
 * {@link runModel} with one float32 input and one output: the output's data.
 *
 * @param input - the input's name, data and dims
 * @param output - the output's name
 */
export async function runFloat(
  model: ModelProto | Uint8Array,
  input: { name: string; data: Float32Array; dims: number[] },
  output: string,
  opts: RunOptions = {},
): Promise<Float32Array> {
  const feeds = { [input.name]: { type: 'float32' as const, data: input.data, dims: input.dims } };
  return (await runModel(model, feeds, [output], opts))[output].data as Float32Array;
}
