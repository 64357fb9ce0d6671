/**
 * Scale / zero-point arithmetic of linear int8 quantization, following onnxruntime's Python quantizer
 * (`onnxruntime/python/tools/quantization/quant_utils.py`: `get_qmin_qmax_for_qType`, `compute_scale_zp`,
 * `quantize_nparray`, and `base_quantizer.quantize_bias_static_impl`) value for value, including where numpy computes
 * in float32 and where in float64, so that a model quantized here gets the same integers as one quantized there.
 *
 * @module
 */

/** The integer types this module quantizes to. */
export type QuantType = 'uint8' | 'int8';

/** A float range seen in calibration (or of a weight). */
export interface Range {
  readonly min: number;
  readonly max: number;
}

/** Scale and zero point of one tensor (or one channel). */
export interface QParams {
  /** A float32 value (already rounded to float32). */
  readonly scale: number;
  readonly zeroPoint: number;
}

/** Options of {@link qRange}. */
export interface QRangeOptions {
  /** Symmetric int8 uses [-127, 127] so that zero is the exact middle (ORT's default for int8 weights). */
  readonly symmetric?: boolean;
  /** 7-bit range ([0, 127] / [-64, 64]), for CPUs whose int8 dot products can overflow (pre-VNNI x86). */
  readonly reduceRange?: boolean;
}

/** The integer range a type quantizes to, as ORT's `get_qmin_qmax_for_qType`. */
export function qRange(type: QuantType, opts: QRangeOptions = {}): { qmin: number; qmax: number } {
  if (opts.reduceRange) return type === 'uint8' ? { qmin: 0, qmax: 127 } : { qmin: -64, qmax: 64 };
  if (type === 'int8') return opts.symmetric ? { qmin: -127, qmax: 127 } : { qmin: -128, qmax: 127 };
  return { qmin: 0, qmax: 255 }; // uint8 has no symmetric table in ORT: symmetric uint8 centres at 128 instead
}

/** Rounds to the nearest integer, ties to even (numpy's `round`, and what QuantizeLinear does). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties go up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const FLOAT32_TINY = 1.1754943508222875e-38; // numpy.finfo(float32).tiny

/** Options of {@link computeScaleZeroPoint}. */
export interface ScaleZeroPointOptions {
  /**
   * Compute `rmax - rmin` in float32 (then divide in float64), numpy's arithmetic when the range is a pair of float32
   * scalars, as in `quantize_dynamic`'s weights (`quantize_data`). The results differ from the default float64
   * subtraction when the difference is not a float32, e.g. asymmetric uint8 weights in [-0.00038, 1.42]. A
   * non-finite range is then not rejected either: it gives an infinite scale, as numpy does. Default false.
   */
  readonly float32Range?: boolean;
}

/**
 * ORT's `compute_scale_zp`: widens the range to include 0 (so that 0 is exactly representable, which padding and
 * ReLU rely on), makes it symmetric around 0 when asked, then `scale = (rmax - rmin) / (qmax - qmin)`. A range of
 * (almost) zero width gets scale 1 and zero point 0 (or the middle of the range when symmetric would say otherwise,
 * like ORT: the zero point is then the type's 0).
 *
 * Precision follows numpy on float32 inputs (onnxruntime 1.32): `rmax - rmin` and the division in float64, the zero
 * point from the float64 scale, and the scale rounded to float32 at the end. With
 * {@link ScaleZeroPointOptions.float32Range} the difference is rounded to float32 first, as the dynamic quantizer does.
 */
export function computeScaleZeroPoint(
  rmin: number,
  rmax: number,
  qmin: number,
  qmax: number,
  symmetric = false,
  opts: ScaleZeroPointOptions = {},
): QParams {
  if (qmin > 0 || qmax < 0) throw new RangeError(`qmin (${qmin}) must be <= 0 and qmax (${qmax}) >= 0`);
  if (!opts.float32Range && (!Number.isFinite(rmin) || !Number.isFinite(rmax))) {
    throw new RangeError(`range [${rmin}, ${rmax}] is not finite`);
  }
  let lo = Math.fround(Math.min(rmin, 0));
  let hi = Math.fround(Math.max(rmax, 0));
  if (symmetric) {
    const absmax = Math.max(Math.abs(lo), Math.abs(hi));
    lo = -absmax;
    hi = absmax;
  }
  const width = opts.float32Range ? Math.fround(hi - lo) : hi - lo; // else ORT promotes to float64 before subtracting
  const scale = width / (qmax - qmin);
  if (scale < FLOAT32_TINY) return { scale: 1, zeroPoint: 0 };
  const zeroPoint = symmetric ? roundHalfEven((qmin + qmax) / 2) : roundHalfEven(qmin - lo / scale);
  return { scale: Math.fround(scale), zeroPoint };
}

/**
 * Quantization parameters of an activation (a tensor computed at run time): asymmetric uint8 over the calibrated
 * range, ORT's default `activation_type=QUInt8`. ORT does not apply `reduce_range` to activations, nor do we.
 */
export function activationQParams(range: Range, type: QuantType = 'uint8', symmetric = false): QParams {
  const { qmin, qmax } = qRange(type, { symmetric });
  return computeScaleZeroPoint(range.min, range.max, qmin, qmax, symmetric);
}

/**
 * `round(x / scale) + zeroPoint`, clipped to [qmin, qmax], computed like ORT's `quantize_nparray`: the division in
 * float32, ties to even.
 */
export function quantizeValue(x: number, p: QParams, qmin: number, qmax: number): number {
  const q = roundHalfEven(Math.fround(Math.fround(x) / p.scale)) + p.zeroPoint;
  return q < qmin ? qmin : q > qmax ? qmax : q;
}

/** Options of {@link quantizeWeight}. */
export interface WeightQuantOptions {
  /** Default `int8`. */
  readonly type?: QuantType;
  /** Default: true for int8 (ORT's `WeightSymmetric` default), false for uint8. */
  readonly symmetric?: boolean;
  readonly reduceRange?: boolean;
  /** Quantize each slice along this axis with its own scale (per-channel); omit for one scale per tensor. */
  readonly axis?: number;
  /** See {@link ScaleZeroPointOptions.float32Range}: the dynamic quantizer's arithmetic. Default false. */
  readonly float32Range?: boolean;
}

/** A quantized weight: integers in the tensor's layout, and one scale / zero point per channel (or one). */
export interface QuantizedWeight {
  readonly type: QuantType;
  readonly data: Int8Array | Uint8Array;
  /** Length 1 for per-tensor, else the size of `axis`. */
  readonly scales: Float32Array;
  readonly zeroPoints: Int8Array | Uint8Array;
  readonly axis: number | undefined;
}

/**
 * Quantizes a constant tensor, per tensor or per channel along `axis` (ORT's `quantize_data` on each slice
 * `weights.take(i, axis)`): the range of each slice is its own min/max (widened to include 0).
 */
export function quantizeWeight(
  data: Float32Array,
  dims: readonly number[],
  opts: WeightQuantOptions = {},
): QuantizedWeight {
  const type = opts.type ?? 'int8';
  const symmetric = opts.symmetric ?? type === 'int8';
  const { qmin, qmax } = qRange(type, { symmetric, reduceRange: opts.reduceRange });
  // quantize_nparray clips to the type's full range; with the scales above the values stay inside [qmin, qmax] anyway
  const clip = type === 'int8' ? { lo: -128, hi: 127 } : { lo: 0, hi: 255 };
  let axis = opts.axis;
  if (axis !== undefined) {
    if (axis < 0) axis += dims.length;
    if (axis < 0 || axis >= dims.length)
      throw new RangeError(`axis ${opts.axis} is out of range for rank ${dims.length}`);
  }
  const channels = axis === undefined ? 1 : dims[axis];
  // Row-major layout: element i is in channel floor(i / inner) % channels.
  const inner = axis === undefined ? data.length : dims.slice(axis + 1).reduce((a, d) => a * d, 1);
  const channelOf = (i: number) => (axis === undefined ? 0 : Math.floor(i / inner) % channels);
  const mins = new Float64Array(channels).fill(Infinity);
  const maxs = new Float64Array(channels).fill(-Infinity);
  for (let i = 0; i < data.length; i++) {
    const c = channelOf(i);
    if (data[i] < mins[c]) mins[c] = data[i];
    if (data[i] > maxs[c]) maxs[c] = data[i];
  }
  const params: QParams[] = [];
  const rangeOpts = { float32Range: opts.float32Range };
  for (let c = 0; c < channels; c++) {
    // An empty (or all-NaN) slice: ORT leaves scale 1, zero point 0. With float32Range, whose ranges may be infinite,
    // computeScaleZeroPoint gives that itself ([+inf, -inf] widens to [0, 0]), and a slice of +inf gets its scale.
    const empty = !opts.float32Range && mins[c] === Infinity;
    params.push(
      empty ? { scale: 1, zeroPoint: 0 } : computeScaleZeroPoint(mins[c], maxs[c], qmin, qmax, symmetric, rangeOpts),
    );
  }
  const out = type === 'int8' ? new Int8Array(data.length) : new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = quantizeValue(data[i], params[channelOf(i)], clip.lo, clip.hi);
  return {
    type,
    data: out,
    scales: Float32Array.from(params, (p) => p.scale),
    zeroPoints:
      type === 'int8' ? Int8Array.from(params, (p) => p.zeroPoint) : Uint8Array.from(params, (p) => p.zeroPoint),
    axis,
  };
}

/**
 * Quantizes a bias to int32 with zero point 0 and `scale[c] = inputScale * weightScale[c]` (float32 product, as
 * numpy), which is the scale of the int32 accumulator of a quantized Conv / MatMul / Gemm, so that the fused kernel
 * can add it directly. One scale per output channel when the weight is per channel, else one.
 */
export function quantizeBias(
  bias: Float32Array,
  inputScale: number,
  weightScales: Float32Array,
): { data: Int32Array; scales: Float32Array } {
  if (weightScales.length !== 1 && weightScales.length !== bias.length) {
    throw new RangeError(`bias has ${bias.length} values but the weight has ${weightScales.length} scales`);
  }
  const scales = weightScales.map((w) => Math.fround(Math.fround(inputScale) * w));
  const data = new Int32Array(bias.length);
  for (let i = 0; i < bias.length; i++) {
    const s = scales[scales.length === 1 ? 0 : i];
    const q = s === 0 ? 0 : roundHalfEven(Math.fround(bias[i] / s));
    data[i] = Math.min(2147483647, Math.max(-2147483648, q));
  }
  return { data, scales };
}
