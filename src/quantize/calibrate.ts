import { create } from '@bufbuild/protobuf';
import { encodeModel, type ModelProto } from '../onnx/model.js';
import { ValueInfoProtoSchema } from '../onnx/proto/onnx_pb.js';
import { ModelSession, type HostTensor } from '../models/session.js';
import { cloneModel, GraphIndex } from './graph.js';
import type { Range } from './quant-math.js';

// Calibration: run the float model on sample inputs and record the range of each tensor that will be quantized.
// Like onnxruntime's calibrators (calibrate.py) the model is run with the intermediate tensors exposed as extra graph
// outputs and graph optimizations off, so the values are those of the original nodes. Feeds are streamed and only
// per-tensor statistics are kept (min/max, or a fixed-size histogram), so memory does not grow with the sample count.

/** How a tensor's range is derived from the values seen. */
export type CalibrationMethod = 'minmax' | 'percentile' | 'entropy';

/** One set of model inputs, by graph input name. */
export type Feed = Record<string, HostTensor>;

/** Options of {@link calibrate}. */
export interface CalibrateOptions {
  /** Default `minmax`. */
  readonly method?: CalibrationMethod;
  /** For `percentile`: the share of |x| kept inside the range, in percent. Default 99.999 (ORT's default). */
  readonly percentile?: number;
  /** Tensors to calibrate (e.g. from `quantizableTensors`); default every node output and graph input. */
  readonly tensors?: readonly string[];
  /** Histogram bins for `percentile` and `entropy`; default 2048 (ORT's default for percentile). */
  readonly bins?: number;
  /** onnxruntime intra-op threads; default 1. */
  readonly intraOpThreads?: number;
}

/**
 * A histogram of |x| over [0, top) with a fixed number of equal bins. When a larger value arrives, pairs of bins are
 * merged (doubling the width) until it fits, so memory is bounded whatever the data; onnxruntime instead appends
 * bins of the original width, which grows without bound on outliers.
 */
export class AbsHistogram {
  readonly counts: Float64Array;
  /** Bin width; 0 until a non-zero value has been seen. */
  width = 0;
  /** Zeros seen before the width was known (they belong to bin 0). */
  #pendingZeros = 0;
  min = Infinity;
  max = -Infinity;

  constructor(readonly bins = 2048) {
    if (!Number.isInteger(bins) || bins < 2 || bins % 2 !== 0)
      throw new RangeError('bins must be an even integer >= 2');
    this.counts = new Float64Array(bins);
  }

  /** Upper end of the last bin. */
  get top(): number {
    return this.width * this.bins;
  }

  /** Adds a batch of values. */
  add(data: Float32Array): void {
    let absmax = 0;
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (v < this.min) this.min = v;
      if (v > this.max) this.max = v;
      const a = v < 0 ? -v : v;
      if (a > absmax) absmax = a;
    }
    if (absmax === 0) {
      if (this.width === 0) this.#pendingZeros += data.length;
      else this.counts[0] += data.length;
      return;
    }
    if (this.width === 0) {
      this.width = absmax / this.bins;
      this.counts[0] += this.#pendingZeros;
      this.#pendingZeros = 0;
    }
    while (absmax > this.top) this.#coarsen();
    const last = this.bins - 1;
    for (let i = 0; i < data.length; i++) {
      const a = Math.abs(data[i]);
      const b = Math.floor(a / this.width);
      this.counts[b > last ? last : b]++;
    }
  }

  #coarsen(): void {
    const half = this.bins / 2;
    for (let j = 0; j < half; j++) this.counts[j] = this.counts[2 * j] + this.counts[2 * j + 1];
    this.counts.fill(0, half);
    this.width *= 2;
  }

  /** Total count. */
  get total(): number {
    return this.counts.reduce((a, c) => a + c, 0) + this.#pendingZeros;
  }

  /**
   * The smallest T, on a bin edge, with at least `percentile`% of the |x| at or below it: the upper edge of the bin
   * where the cumulative share reaches the percentile. (ORT's HistogramCalibrater takes that bin's lower edge,
   * i.e. one bin less; with 2048 bins the difference is under 0.05% of the range.)
   */
  percentileThreshold(percentile: number): number {
    const total = this.total;
    if (total === 0 || this.width === 0) return 0;
    const target = (percentile / 100) * total;
    let cum = 0;
    for (let b = 0; b < this.bins; b++) {
      cum += this.counts[b];
      if (cum >= target) return (b + 1) * this.width;
    }
    return this.top;
  }

  /**
   * The threshold T minimizing the KL divergence between the |x| distribution clipped at T and its quantization to
   * `levels` levels (TensorRT's entropy calibration, which ORT's EntropyCalibrater also follows). Candidates are
   * every `stride`-th bin edge from `levels` bins up.
   */
  entropyThreshold(levels = 128, stride = 8): number {
    if (this.width === 0) return 0;
    const h = this.counts;
    let best = this.top;
    let bestKl = Infinity;
    for (let i = levels; i <= this.bins; i += stride) {
      const kl = klDivergence(h, i, levels);
      if (kl < bestKl) {
        bestKl = kl;
        best = i * this.width;
      }
    }
    return best;
  }

  /** The range for a method, clamped to the values actually seen. */
  range(method: CalibrationMethod, percentile = 99.999): Range {
    if (this.min === Infinity) return { min: 0, max: 0 };
    if (method === 'minmax') return { min: this.min, max: this.max };
    const t = method === 'percentile' ? this.percentileThreshold(percentile) : this.entropyThreshold();
    return { min: Math.max(-t, this.min), max: Math.min(t, this.max) };
  }
}

/** KL(P || Q) for the first `i` bins (outliers folded into the last), Q being P merged to `levels` levels. */
function klDivergence(h: Float64Array, i: number, levels: number): number {
  const p = Float64Array.from(h.subarray(0, i));
  for (let j = i; j < h.length; j++) p[i - 1] += h[j];
  const q = new Float64Array(i);
  for (let l = 0; l < levels; l++) {
    const start = Math.floor((l * i) / levels);
    const end = Math.floor(((l + 1) * i) / levels);
    let sum = 0;
    let nonzero = 0;
    for (let j = start; j < end; j++) {
      sum += h[j];
      if (h[j] > 0) nonzero++;
    }
    if (nonzero > 0) for (let j = start; j < end; j++) if (h[j] > 0) q[j] = sum / nonzero;
  }
  let ps = 0;
  let qs = 0;
  for (let j = 0; j < i; j++) {
    ps += p[j];
    qs += q[j];
  }
  if (ps === 0 || qs === 0) return Infinity;
  let kl = 0;
  const eps = 1e-4 / i; // smoothing for bins P has and Q lost (the clipped outliers)
  for (let j = 0; j < i; j++) {
    if (p[j] === 0) continue;
    const pj = p[j] / ps;
    const qj = Math.max(q[j] / qs, eps);
    kl += pj * Math.log(pj / qj);
  }
  return kl;
}

/** Statistics of one tensor: min/max only, or a histogram. */
interface Stats {
  min: number;
  max: number;
  hist?: AbsHistogram;
}

/**
 * A session for reading a model's intermediate tensors: `tensors` exposed as outputs, graph optimizations off (so
 * every named tensor still exists), on the CPU. Calibration, pruning's channel statistics and the refit read through it.
 */
export function exposedSession(
  model: ModelProto,
  tensors: readonly string[],
  intraOpThreads = 1,
): Promise<ModelSession> {
  return ModelSession.create(encodeModel(exposeTensors(model, tensors)), {
    provider: 'cpu',
    intraOpThreads,
    optimizationLevel: 'disabled',
  });
}

/**
 * A copy of `model` whose graph outputs also include `tensors` (left untyped: onnxruntime infers the type, and
 * non-float tensors are then skipped by the caller). Graph inputs and initializers are not added.
 *
 * @throws naming a tensor the graph neither produces nor takes as input
 */
export function exposeTensors(model: ModelProto, tensors: readonly string[]): ModelProto {
  const out = cloneModel(model);
  const index = new GraphIndex(out);
  const outputs = new Set(index.graph.output.map((o) => o.name));
  const inputs = new Set(index.inputNames);
  for (const t of tensors) {
    if (outputs.has(t) || inputs.has(t) || index.initializers.has(t)) continue;
    if (!index.producers.has(t)) throw new Error(`cannot calibrate '${t}': no node produces it`);
    index.graph.output.push(create(ValueInfoProtoSchema, { name: t }));
    outputs.add(t);
  }
  return out;
}

/**
 * Runs the float model on each feed and returns the range of each float tensor in `tensors` (by default every node
 * output and graph input). Non-float tensors are left out of the result.
 *
 * - `minmax`: the min and max over all feeds (ORT's MinMaxCalibrater without moving average);
 * - `percentile`: symmetric, from a histogram of |x|: T = the `percentile`-th percentile of |x|, range
 *   [max(-T, min), min(T, max)] (ORT's HistogramCalibrater 'percentile' with `CalibTensorRangeSymmetric`);
 * - `entropy`: the same with T minimizing the KL divergence to 128 levels.
 */
export async function calibrate(
  model: ModelProto,
  feeds: Iterable<Feed> | AsyncIterable<Feed>,
  opts: CalibrateOptions = {},
): Promise<Map<string, Range>> {
  const method = opts.method ?? 'minmax';
  const percentile = opts.percentile ?? 99.999;
  if (!(percentile > 0 && percentile <= 100)) throw new RangeError(`percentile must be in (0, 100], not ${percentile}`);
  const index = new GraphIndex(model);
  const inputs = new Set(index.inputNames);
  const wanted = opts.tensors ?? [
    ...index.inputNames,
    ...index.graph.node.flatMap((n) => n.output.filter((o) => o !== '')),
  ];
  const names = [...new Set(wanted)].filter((t) => !index.initializers.has(t));
  const session = await exposedSession(model, names, opts.intraOpThreads ?? 1);
  const stats = new Map<string, Stats>();
  const record = (name: string, t: HostTensor) => {
    if (t.type !== 'float32') return;
    let s = stats.get(name);
    if (!s) {
      s = { min: Infinity, max: -Infinity, hist: method === 'minmax' ? undefined : new AbsHistogram(opts.bins) };
      stats.set(name, s);
    }
    const data = t.data as Float32Array;
    if (s.hist) {
      s.hist.add(data);
      return;
    }
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (v < s.min) s.min = v;
      if (v > s.max) s.max = v;
    }
  };
  try {
    const floatOutputs = new Set(session.outputs.filter((o) => o.type === 'float32').map((o) => o.name));
    const fetch = names.filter((n) => !inputs.has(n) && floatOutputs.has(n));
    let count = 0;
    for await (const feed of feeds) {
      count++;
      for (const name of names) if (inputs.has(name) && feed[name]) record(name, feed[name]);
      if (fetch.length === 0) continue; // only graph inputs asked for
      const result = await session.run(feed, fetch);
      for (const name of fetch) record(name, result[name]);
    }
    if (count === 0) throw new Error('calibration needs at least one feed');
  } finally {
    await session.release();
  }
  const ranges = new Map<string, Range>();
  for (const [name, s] of stats) {
    if (s.hist) ranges.set(name, s.hist.range(method, percentile));
    else if (s.min !== Infinity) ranges.set(name, { min: s.min, max: s.max });
  }
  return ranges;
}
