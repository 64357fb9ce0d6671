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

/** Sampled positions the reported errors are measured on (the first ones; F'F uses them all). */
const ERROR_ROWS = 1024;

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
  /** Output positions sampled over all inputs (the rows of F). Default 8192. */
  readonly positions?: number;
  /** Ridge, relative to the mean diagonal of F'F. Default 1e-4. */
  readonly ridge?: number;
}

export interface RefitResult {
  /** [outputs, kept, kh, kw] */
  readonly weight: Float32Array;
  /** [outputs] */
  readonly bias: Float32Array;
  /**
   * Mean squared output error on (up to 1,024 of) the sampled positions, relative to the outputs' variance: `pruned` with the original
   * weights of the kept channels (pruning alone), `refit` with the refit weights.
   */
  readonly error: { readonly pruned: number; readonly refit: number };
}

/**
 * Refits a layer of weight [M, C, kh, kw] (and bias [M], zeros when absent) to the `kept` input channels (ascending
 * indices into C) from samples of its unpruned input.
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
  const M = outputs;
  if (inputs.length === 0) throw new RangeError('refitConv needs at least one input sample');
  if (weight.length !== M * C * kh * kw)
    throw new RangeError(`weight has ${weight.length} values, not ${M} x ${C} x ${kh} x ${kw}`);
  if (inputs.some((x) => x.channels !== C || x.data.length !== C * x.height * x.width))
    throw new RangeError('every input sample needs the same channels and [C, H, W] values');
  if (kept.some((c, i) => !Number.isInteger(c) || c < 0 || c >= C || (i > 0 && c <= kept[i - 1])))
    throw new RangeError('kept must be ascending channel indices');
  const taps = kh * kw;
  const D = kept.length * taps + 1; // the kept channels' taps, and the bias
  const b0 = bias ?? new Float32Array(M);

  // output positions: every one, or evenly spaced over all inputs' positions when there are more
  const sites = inputs.map((x) => outputSize(x, geometry));
  const total = sites.reduce((n, [oh, ow]) => n + oh * ow, 0);
  const want = Math.min(total, opts.positions ?? 8192);
  const rows: { sample: number; oy: number; ox: number }[] = [];
  for (let r = 0; r < want; r++) {
    let k = Math.floor((r * total) / want);
    let s = 0;
    while (k >= sites[s][0] * sites[s][1]) {
      k -= sites[s][0] * sites[s][1];
      s++;
    }
    rows.push({ sample: s, oy: Math.floor(k / sites[s][1]), ox: k % sites[s][1] });
  }

  // F'F and F'Y, accumulated a row at a time (F itself is never held)
  const ata = new Float64Array(D * D);
  const aty = new Float64Array(D * M);
  const all = new Float64Array(C * taps); // every channel's taps at a position: for the unpruned output
  const f = new Float64Array(D);
  const y = new Float64Array(M);
  const targets: Float64Array[] = [];
  const features: Float64Array[] = [];
  for (const { sample, oy, ox } of rows) {
    gather(inputs[sample], geometry, oy, ox, all);
    for (let m = 0; m < M; m++) {
      let v = b0[m];
      const w = m * C * taps;
      for (let i = 0; i < C * taps; i++) v += weight[w + i] * all[i];
      y[m] = v;
    }
    kept.forEach((c, j) => f.set(all.subarray(c * taps, (c + 1) * taps), j * taps));
    f[D - 1] = 1;
    for (let i = 0; i < D; i++) {
      const fi = f[i];
      if (fi === 0) continue;
      const row = i * D;
      for (let j = i; j < D; j++) ata[row + j] += fi * f[j];
      const out = i * M;
      for (let m = 0; m < M; m++) aty[out + m] += fi * y[m];
    }
    if (features.length < ERROR_ROWS) {
      targets.push(Float64Array.from(y));
      features.push(Float64Array.from(f));
    }
  }
  let trace = 0;
  for (let i = 0; i < D; i++) trace += ata[i * D + i];
  const lambda = (opts.ridge ?? 1e-4) * (trace / D || 1);
  const a = new Matrix(D, D);
  for (let i = 0; i < D; i++)
    for (let j = i; j < D; j++) {
      const v = ata[i * D + j] + (i === j ? lambda : 0);
      a.set(i, j, v);
      a.set(j, i, v);
    }
  const b = new Matrix(D, M);
  for (let i = 0; i < D; i++) for (let m = 0; m < M; m++) b.set(i, m, aty[i * M + m]);
  const cholesky = new CholeskyDecomposition(a);
  if (!cholesky.isPositiveDefinite()) throw new Error('refit: the normal equations are not positive definite');
  const solved = cholesky.solve(b);

  // [M, kept, kh, kw] and the bias, from the solution's columns
  const refit = new Float32Array(M * kept.length * taps);
  const newBias = new Float32Array(M);
  for (let m = 0; m < M; m++) {
    for (let i = 0; i < D - 1; i++) refit[m * (D - 1) + i] = solved.get(i, m);
    newBias[m] = solved.get(D - 1, m);
  }
  // the pruned layer without refit: the kept channels' original weights, the original bias
  const plain = new Float64Array(D * M);
  for (let m = 0; m < M; m++) {
    kept.forEach((c, j) => {
      for (let t = 0; t < taps; t++) plain[(j * taps + t) * M + m] = weight[(m * C + c) * taps + t];
    });
    plain[(D - 1) * M + m] = b0[m];
  }
  const error = (w: (i: number, m: number) => number) => {
    let se = 0;
    let sum = 0;
    let sq = 0;
    features.forEach((fr, r) => {
      for (let m = 0; m < M; m++) {
        let v = 0;
        for (let i = 0; i < D; i++) v += fr[i] * w(i, m);
        const t = targets[r][m];
        se += (v - t) ** 2;
        sum += t;
        sq += t * t;
      }
    });
    const n = features.length * M;
    const variance = sq / n - (sum / n) ** 2;
    return se / n / (variance || 1);
  };
  return {
    weight: refit,
    bias: newBias,
    error: { pruned: error((i, m) => plain[i * M + m]), refit: error((i, m) => solved.get(i, m)) },
  };
}

/** The output height and width of a convolution over `x`. */
function outputSize(x: FeatureMap, g: ConvGeometry): [number, number] {
  const span = (k: number, d: number) => (k - 1) * d + 1;
  const oh = Math.floor((x.height + g.pads[0] + g.pads[2] - span(g.kernel[0], g.dilations[0])) / g.strides[0]) + 1;
  const ow = Math.floor((x.width + g.pads[1] + g.pads[3] - span(g.kernel[1], g.dilations[1])) / g.strides[1]) + 1;
  return [Math.max(0, oh), Math.max(0, ow)];
}

/** Every channel's kernel taps at output position (oy, ox), zeros where the kernel covers padding: [C, kh, kw]. */
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
