import { CholeskyDecomposition, Matrix } from 'ml-matrix';

/**
 * Least-squares reconstruction of a layer whose input channels were pruned (He et al. 2017, "Channel Pruning for
 * Accelerating Very Deep Neural Networks"; Luo et al. 2017, ThiNet): the layer's weights over the channels kept, and
 * its bias, are refit so that its outputs on calibration inputs match what the unpruned layer computed from all
 * channels. What the removed channels carried that the kept ones can predict is folded into the kept weights, and
 * their mean into the bias: pruning without fine-tuning then loses only what no kept channel explains.
 *
 * The layer is a 2-D convolution with group 1 (a Gemm or MatMul reading a pooled vector is the 1 x 1 case on a 1 x 1
 * map). For each output channel m it solves min ||F w_m - y_m||² + λ||w_m||², where a row of F holds the kept
 * channels' values under the kernel at one output position (and a 1 for the bias), and y_m is the unpruned layer's
 * output there. Every output channel shares F, so one Cholesky factorization of F'F + λI serves them all.
 */

/**
 * Every HOLD_OUT-th input (or sampled position, with fewer inputs) is held out of the fit and the errors are measured
 * there (at most ERROR_ROWS positions): a layer fit to fewer positions than it has weights matches them and nothing
 * else, which only held-out data shows.
 */
const HOLD_OUT = 5;
const ERROR_ROWS = 1024;

/** Weights per output fit at most (a 3 x 3 convolution of 170 channels): the solve grows with its cube. */
const MAX_UNKNOWNS = 1536;

/** A layer that cannot be refit, and why (the caller leaves it as pruning left it). */
export class RefitSkipped extends Error {
  override name = 'RefitSkipped';
}

/** A 2-D convolution's geometry, as its ONNX attributes give it. */
export interface ConvGeometry {
  readonly kernel: readonly [number, number];
  readonly strides: readonly [number, number];
  /** Top, left, bottom, right (ONNX order: begins, then ends). */
  readonly pads: readonly [number, number, number, number];
  readonly dilations: readonly [number, number];
}

/** A 1 x 1 convolution, no padding: a Gemm or MatMul on a [C, 1, 1] map. */
export const POINTWISE: ConvGeometry = { kernel: [1, 1], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1] };

/** One calibration sample of the layer's input in the unpruned model: [channels, height, width]. */
export interface FeatureMap {
  readonly data: Float32Array;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
}

export interface RefitOptions {
  /** Output positions sampled over all inputs (the rows of F): at least this many (default 8192) and 8 per weight. */
  readonly positions?: number;
  /** Ridge, relative to the mean diagonal of F'F. Default 1e-4. */
  readonly ridge?: number;
  /** Refit the bias too (default); false keeps it (a MatMul has none to change). */
  readonly fitBias?: boolean;
}

export interface RefitResult {
  /** [outputs, kept, kh, kw] */
  readonly weight: Float32Array;
  /** [outputs] */
  readonly bias: Float32Array;
  /**
   * Mean squared output error on held-out data (one input in five, at most 1,024 positions), relative to the outputs'
   * variance: `pruned` with the layer as it was (pruning alone: the kept channels' original weights), `refit` with
   * the refit weights.
   */
  readonly error: { readonly pruned: number; readonly refit: number };
}

/**
 * Refits a layer of weight [M, C, kh, kw] (and bias [M], zeros when absent) to the `kept` input channels (ascending
 * indices into C) from samples of its unpruned input: the targets are what the unpruned layer computes from them.
 */
export function refitConv(
  weight: Float32Array,
  bias: Float32Array | undefined,
  outputs: number,
  geometry: ConvGeometry,
  inputs: readonly FeatureMap[],
  kept: readonly number[],
  opts: RefitOptions = {},
): RefitResult {
  const [kh, kw] = geometry.kernel;
  const C = inputs[0]?.channels ?? 0;
  if (inputs.length === 0) throw new RangeError('refitConv needs at least one input sample');
  if (weight.length !== outputs * C * kh * kw)
    throw new RangeError(`weight has ${weight.length} values, not ${outputs} x ${C} x ${kh} x ${kw}`);
  if (kept.some((c, i) => !Number.isInteger(c) || c < 0 || c >= C || (i > 0 && c <= kept[i - 1])))
    throw new RangeError('kept must be ascending channel indices');
  const b = bias ?? new Float32Array(outputs);
  const targets = inputs.map((x) => convolve(x, weight, b, outputs, geometry));
  const taps = kh * kw;
  const start = new Float32Array(outputs * kept.length * taps);
  for (let m = 0; m < outputs; m++)
    kept.forEach((c, j) =>
      start.set(weight.subarray((m * C + c) * taps, (m * C + c + 1) * taps), (m * kept.length + j) * taps),
    );
  return fitConv(
    inputs.map((x) => channelsOf(x, kept)),
    targets,
    geometry,
    { weight: start, bias: b },
    opts,
  );
}

/**
 * Fits the weights [M, C, kh, kw] and the bias [M] of a convolution of `inputs` ([C, H, W] each) so that it computes
 * `targets` ([M, OH, OW] each, one per input) by least squares over sampled output positions. `start` is the layer
 * as it was, which the reported errors compare the fit with.
 */
export function fitConv(
  inputs: readonly FeatureMap[],
  targets: readonly FeatureMap[],
  geometry: ConvGeometry,
  start: { readonly weight: Float32Array; readonly bias: Float32Array },
  opts: RefitOptions = {},
): RefitResult {
  if (inputs.length === 0 || inputs.length !== targets.length)
    throw new RangeError('fitConv needs at least one input, and one target per input');
  const fit = new ConvFit(geometry, start, inputs[0].channels, inputs.length, opts);
  inputs.forEach((x, i) => fit.add(x, targets[i]));
  return fit.solve();
}

/**
 * The least-squares fit of {@link fitConv}, fed one input at a time: each input's sampled positions go into F'F and
 * F'Y (and the held-out rows) as it comes, so the inputs need not all be held at once (a detector's calibration
 * pages are hundreds of MB of activations per layer).
 */
export class ConvFit {
  readonly #D: number;
  readonly #M: number;
  readonly #W: number;
  readonly #fitBias: boolean;
  readonly #perInput: number;
  readonly #ata: Float64Array;
  readonly #aty: Float64Array;
  readonly #f: Float64Array;
  readonly #y: Float64Array;
  readonly #held: { f: Float64Array; y: Float64Array }[] = [];
  #inputs = 0;
  #rows = 0;
  #positions = 0;
  #seed = 1;

  /**
   * @param channels input channels (C)
   * @param count inputs that will be added (positions are spread evenly over them)
   */
  constructor(
    private readonly geometry: ConvGeometry,
    private readonly start: { readonly weight: Float32Array; readonly bias: Float32Array },
    private readonly channels: number,
    private readonly count: number,
    opts: RefitOptions = {},
  ) {
    const [kh, kw] = geometry.kernel;
    this.#M = start.bias.length;
    this.#W = channels * kh * kw;
    if (start.weight.length !== this.#M * this.#W) throw new RangeError('start is not [M, C, kh, kw]');
    this.#fitBias = opts.fitBias ?? true;
    this.#D = this.#W + (this.#fitBias ? 1 : 0); // the channels' taps, and the bias
    if (this.#D > MAX_UNKNOWNS)
      throw new RefitSkipped(`${this.#D} weights per output: more than ${MAX_UNKNOWNS} (the solve would take minutes)`);
    this.#perInput = Math.ceil(Math.max(opts.positions ?? 8192, 8 * this.#D) / count);
    this.#ata = new Float64Array(this.#D * this.#D);
    this.#aty = new Float64Array(this.#D * this.#M);
    this.#f = new Float64Array(this.#D);
    this.#y = new Float64Array(this.#M);
    this.ridge = opts.ridge ?? 1e-4;
  }

  private readonly ridge: number;

  /** Adds one input [C, H, W] and what the layer must compute from it, [M, OH, OW]. */
  add(input: FeatureMap, target: FeatureMap): void {
    const { geometry } = this;
    const M = this.#M;
    const D = this.#D;
    if (input.channels !== this.channels || input.data.length !== input.channels * input.height * input.width)
      throw new RangeError('every input sample needs the same channels and [C, H, W] values');
    const [oh, ow] = outputSize(input, geometry);
    if (target.channels !== M || target.height !== oh || target.width !== ow || target.data.length !== M * oh * ow)
      throw new RangeError(`target ${this.#inputs} is not [${M}, ${oh}, ${ow}]`);
    const sample = this.#inputs++;
    const plane = oh * ow;
    this.#positions += plane;
    const want = Math.min(plane, this.#perInput);
    for (let r = 0; r < want; r++) {
      // jittered: evenly spaced positions would land on the same pixels of every input when the spacing divides
      // their size (8 x 8 maps, one position in 8: column 0 of each), and the fit would learn only those
      const k = want === plane ? r : Math.floor(((r + this.#jitter()) * plane) / want);
      // whole inputs are held out when there are enough of them (positions of one image are alike: fitting some of
      // them and measuring others would not show a fit to these images only)
      const held = (this.count >= HOLD_OUT ? sample : this.#rows + r) % HOLD_OUT === HOLD_OUT - 1;
      if (held && this.#held.length >= ERROR_ROWS) continue;
      const f = this.#f;
      const y = this.#y;
      gather(input, geometry, Math.floor(k / ow), k % ow, f);
      if (this.#fitBias) f[D - 1] = 1;
      // without a bias term the target is what the weights must produce: the output less the bias kept
      for (let m = 0; m < M; m++) y[m] = target.data[m * plane + k] - (this.#fitBias ? 0 : this.start.bias[m]);
      if (held) {
        this.#held.push({ f: Float64Array.from(f), y: Float64Array.from(y) });
        continue;
      }
      for (let i = 0; i < D; i++) {
        const fi = f[i];
        if (fi === 0) continue;
        const row = i * D;
        for (let j = i; j < D; j++) this.#ata[row + j] += fi * f[j];
        const o = i * M;
        for (let m = 0; m < M; m++) this.#aty[o + m] += fi * y[m];
      }
    }
    this.#rows += want;
  }

  /** The fit over every input added. */
  solve(): RefitResult {
    const [D, M, W] = [this.#D, this.#M, this.#W];
    if (this.#rows < 2 * D)
      throw new RefitSkipped(`${this.#positions} output positions for ${D} weights per output: too few to fit`);
    let trace = 0;
    for (let i = 0; i < D; i++) trace += this.#ata[i * D + i];
    if (!Number.isFinite(trace)) throw new RefitSkipped('the calibration activations are not finite');
    const lambda = this.ridge * (trace / D || 1);
    const a = new Matrix(D, D);
    for (let i = 0; i < D; i++)
      for (let j = i; j < D; j++) {
        const v = this.#ata[i * D + j] + (i === j ? lambda : 0);
        a.set(i, j, v);
        a.set(j, i, v);
      }
    const b = new Matrix(D, M);
    for (let i = 0; i < D; i++) for (let m = 0; m < M; m++) b.set(i, m, this.#aty[i * M + m]);
    const cholesky = new CholeskyDecomposition(a);
    if (!cholesky.isPositiveDefinite()) throw new RefitSkipped('the normal equations are not positive definite');
    const solved = cholesky.solve(b);

    const weight = new Float32Array(M * W);
    const bias = Float32Array.from(this.start.bias);
    for (let m = 0; m < M; m++) {
      for (let i = 0; i < W; i++) weight[m * W + i] = solved.get(i, m);
      if (this.#fitBias) bias[m] = solved.get(D - 1, m);
    }
    const error = (w: (i: number, m: number) => number) => {
      let se = 0;
      let sum = 0;
      let sq = 0;
      for (const { f, y } of this.#held)
        for (let m = 0; m < M; m++) {
          let v = 0;
          for (let i = 0; i < D; i++) v += f[i] * w(i, m);
          se += (v - y[m]) ** 2;
          sum += y[m];
          sq += y[m] * y[m];
        }
      const n = this.#held.length * M;
      if (n === 0) return Number.NaN;
      const variance = sq / n - (sum / n) ** 2;
      return se / n / (variance || 1);
    };
    const { start } = this;
    const before = (i: number, m: number) => (i < W ? start.weight[m * W + i] : start.bias[m]);
    return { weight, bias, error: { pruned: error(before), refit: error((i, m) => solved.get(i, m)) } };
  }

  /** A deterministic LCG in [0, 1). */
  #jitter(): number {
    this.#seed = (Math.imul(this.#seed, 1664525) + 1013904223) >>> 0;
    return this.#seed / 2 ** 32;
  }
}

/** The channels `kept` of a [C, H, W] map. */
export function channelsOf(x: FeatureMap, kept: readonly number[]): FeatureMap {
  const plane = x.height * x.width;
  const data = new Float32Array(kept.length * plane);
  kept.forEach((c, j) => data.set(x.data.subarray(c * plane, (c + 1) * plane), j * plane));
  return { data, channels: kept.length, height: x.height, width: x.width };
}

/** A convolution of `x` by weight [M, C, kh, kw] and bias, computed directly: [M, OH, OW]. */
function convolve(x: FeatureMap, weight: Float32Array, bias: Float32Array, M: number, g: ConvGeometry): FeatureMap {
  const [oh, ow] = outputSize(x, g);
  const W = x.channels * g.kernel[0] * g.kernel[1];
  const taps = new Float64Array(W);
  const data = new Float32Array(M * oh * ow);
  for (let oy = 0; oy < oh; oy++)
    for (let ox = 0; ox < ow; ox++) {
      gather(x, g, oy, ox, taps);
      for (let m = 0; m < M; m++) {
        let v = bias[m];
        for (let i = 0; i < W; i++) v += weight[m * W + i] * taps[i];
        data[(m * oh + oy) * ow + ox] = v;
      }
    }
  return { data, channels: M, height: oh, width: ow };
}

/** The output height and width of a convolution over `x`. */
export function outputSize(x: FeatureMap, g: ConvGeometry): [number, number] {
  const span = (k: number, d: number) => (k - 1) * d + 1;
  const oh = Math.floor((x.height + g.pads[0] + g.pads[2] - span(g.kernel[0], g.dilations[0])) / g.strides[0]) + 1;
  const ow = Math.floor((x.width + g.pads[1] + g.pads[3] - span(g.kernel[1], g.dilations[1])) / g.strides[1]) + 1;
  return [Math.max(0, oh), Math.max(0, ow)];
}

/**
 * Every channel's kernel taps at output position (oy, ox), zeros where the kernel covers padding: [C, kh, kw], in
 * the first C x kh x kw values of `into`.
 */
function gather(x: FeatureMap, g: ConvGeometry, oy: number, ox: number, into: Float64Array): void {
  const [kh, kw] = g.kernel;
  const plane = x.height * x.width;
  for (let c = 0; c < x.channels; c++)
    for (let i = 0; i < kh; i++) {
      const iy = oy * g.strides[0] - g.pads[0] + i * g.dilations[0];
      for (let j = 0; j < kw; j++) {
        const ix = ox * g.strides[1] - g.pads[1] + j * g.dilations[1];
        const inside = iy >= 0 && iy < x.height && ix >= 0 && ix < x.width;
        into[(c * kh + i) * kw + j] = inside ? x.data[c * plane + iy * x.width + ix] : 0;
      }
    }
}
