import { DataType, node, tensor, type ModelProto, type NodeProto, type TensorProto } from '../../onnx/model.js';
import { cloneModel, dimsOf, GraphIndex, readFloats } from '../graph.js';
import { quantizeWeight as quantizeWeightTensor, type QuantType } from '../quant-math.js';

export { roundHalfEven } from '../quant-math.js';

/**
 * Dynamic int8 quantization of MatMul / Gemm weights, the way onnxruntime's Python `quantize_dynamic` does it.
 *
 * For each MatMul (and Gemm, rewritten to MatMul + Add) whose second input is a 2-D float32 initializer:
 *
 *     DynamicQuantizeLinear(x) -> x_q (uint8), x_scale, x_zero_point
 *     MatMulInteger(x_q, W_q, x_zero_point, W_zero_point) -> int32
 *     Cast(to=FLOAT) -> Mul(., Mul(x_scale, W_scale)) [-> Add(bias) for a Gemm with C]
 *
 * onnxruntime's CPU graph optimizer (level `extended` and up) fuses that pattern into
 * `com.microsoft.DynamicQuantizeMatMul` (or `MatMulIntegerToFloat`), which is what makes it fast.
 *
 * Conv is deliberately left in float: onnxruntime's CPU `ConvInteger` kernel only accepts uint8 x uint8, so the
 * int8-weight ConvInteger that `quantize_dynamic` emits by default fails to load on CPU. Use static (QDQ)
 * quantization for convolutional models. Subgraphs (If / Loop bodies) are not visited.
 */
export interface QuantizeDynamicOptions {
  /** Node names to leave in float. */
  excludeNodes?: string[];
  /** Quantize weights to 7 bits (int8: [-64, 64], uint8: [0, 127]) for CPUs without VNNI, as ORT's `reduce_range`. */
  reduceRange?: boolean;
  /** Weight element type. Default `int8` (symmetric, zero point 0); `uint8` is asymmetric, as in ORT. */
  weightType?: 'int8' | 'uint8';
  /** One scale / zero point per output column (the N axis of a [K, N] weight) instead of per tensor. */
  perChannel?: boolean;
}

/** What {@link quantizeDynamicWithStats} did. */
export interface QuantizeDynamicStats {
  /** Names (or `op#index` when unnamed) of the nodes that were quantized. */
  quantized: string[];
  /** Candidate nodes left in float, with why. */
  skipped: { node: string; reason: string }[];
  /** Number of DynamicQuantizeLinear nodes inserted (one per distinct activation tensor). */
  activationQuantizers: number;
}

/** Quantized weight: integer values, scale and zero point (per tensor, or one per column). */
export interface QuantizedWeight {
  values: Int8Array | Uint8Array;
  scale: Float32Array;
  zeroPoint: Int8Array | Uint8Array;
}

/**
 * Dynamic (weight-only offline, activations at run time) int8 quantization of MatMul and Gemm. Conv stays float32
 * (onnxruntime's CPU ConvInteger is uint8 x uint8 only), see {@link QuantizeDynamicOptions}.
 *
 * @param model - a float32 model, opset >= 11 for the quantized nodes (DynamicQuantizeLinear)
 * @param opts - see {@link QuantizeDynamicOptions}
 * @returns a new model; the input is not changed
 */
export function quantizeDynamic(model: ModelProto, opts: QuantizeDynamicOptions = {}): ModelProto {
  return quantizeDynamicWithStats(model, opts).model;
}

/** {@link quantizeDynamic}, also returning what was quantized and what was skipped, for the CLI's report. */
export function quantizeDynamicWithStats(
  model: ModelProto,
  opts: QuantizeDynamicOptions = {},
): { model: ModelProto; stats: QuantizeDynamicStats } {
  const out = cloneModel(model);
  const g = new GraphIndex(out);
  const exclude = new Set(opts.excludeNodes ?? []);
  const weightType = opts.weightType ?? 'int8';
  const stats: QuantizeDynamicStats = { quantized: [], skipped: [], activationQuantizers: 0 };
  // One DynamicQuantizeLinear per activation tensor, shared by every MatMul reading it (as ORT does).
  const activations = new Map<string, { q: string; scale: string; zp: string }>();
  // A weight read by several nodes is quantized once.
  const weights = new Map<string, { q: string; scale: string; zp: string }>();
  const newNodes: NodeProto[] = [];

  const original = [...g.graph.node];
  original.forEach((n, index) => {
    const label = n.name || `${n.opType}#${index}`;
    const isCandidate = (n.domain ?? '') === '' && (n.opType === 'MatMul' || n.opType === 'Gemm');
    if (!isCandidate) {
      newNodes.push(n);
      return;
    }
    const skip = (reason: string) => {
      stats.skipped.push({ node: label, reason });
      newNodes.push(n);
    };
    if (exclude.has(n.name)) return skip('excluded');
    const plan = n.opType === 'Gemm' ? planGemm(g, n) : planMatMul(g, n);
    if (typeof plan === 'string') return skip(plan);
    if (g.opset < 11) return skip(`opset ${g.opset} < 11 has no DynamicQuantizeLinear; upgrade the opset first`);

    let w = weights.get(plan.weightKey);
    if (!w) {
      const q = quantizeWeight(plan.weight, plan.k, plan.n, weightType, opts.reduceRange ?? false, opts.perChannel);
      const base = plan.weightKey;
      const scaleDims = q.scale.length > 1 ? [q.scale.length] : [];
      w = {
        q: g.freshName(`${base}_quantized`),
        scale: g.freshName(`${base}_scale`),
        zp: g.freshName(`${base}_zero_point`),
      };
      g.setInitializer(tensor(w.q, [plan.k, plan.n], q.values, weightType === 'int8' ? DataType.INT8 : DataType.UINT8));
      g.setInitializer(tensor(w.scale, scaleDims, q.scale));
      g.setInitializer(tensor(w.zp, scaleDims, q.zeroPoint));
      weights.set(plan.weightKey, w);
    }

    const x = n.input[0];
    let a = activations.get(x);
    if (!a) {
      a = { q: g.freshName(`${x}_quantized`), scale: g.freshName(`${x}_scale`), zp: g.freshName(`${x}_zero_point`) };
      newNodes.push(
        node('DynamicQuantizeLinear', [x], [a.q, a.scale, a.zp], {}, { name: g.freshName(`${x}_QuantizeLinear`) }),
      );
      activations.set(x, a);
      stats.activationQuantizers++;
    }

    const base = n.name || g.freshName(`${n.opType}_${index}`);
    const y = n.output[0];
    const matmulOut = plan.bias ? g.freshName(`${y}_matmul`) : y;
    const intOut = g.freshName(`${matmulOut}_output_quantized`);
    const castOut = g.freshName(`${intOut}_cast_output`);
    const scalesOut = g.freshName(`${base}_scales_mul`);
    newNodes.push(
      node('MatMulInteger', [a.q, w.q, a.zp, w.zp], [intOut], {}, { name: g.freshName(`${base}_quant`) }),
      node('Cast', [intOut], [castOut], { to: DataType.FLOAT }, { name: g.freshName(`${intOut}_cast`) }),
      node('Mul', [a.scale, w.scale], [scalesOut], {}, { name: g.freshName(`${base}_scales_mul_node`) }),
      node('Mul', [castOut, scalesOut], [matmulOut], {}, { name: g.freshName(`${base}_output_scale_mul`) }),
    );
    if (plan.bias)
      newNodes.push(node('Add', [matmulOut, plan.bias], [y], {}, { name: g.freshName(`${base}_bias_add`) }));
    stats.quantized.push(label);
  });

  g.graph.node = newNodes;
  g.pruneUnusedInitializers();
  return { model: out, stats };
}

interface Plan {
  /** Cache key of the (possibly transformed) weight. */
  weightKey: string;
  /** Weight as [K, N] row-major float32. */
  weight: Float32Array;
  k: number;
  n: number;
  /** Bias tensor name to Add after the MatMul (Gemm C). */
  bias?: string;
}

function floatInitializer(g: GraphIndex, name: string): TensorProto | undefined {
  const t = g.initializers.get(name);
  // An initializer that is also a graph input can be overridden at run time: not a constant.
  if (!t || t.dataType !== DataType.FLOAT || g.graph.input.some((i) => i.name === name)) return undefined;
  return t;
}

function planMatMul(g: GraphIndex, n: NodeProto): Plan | string {
  const t = floatInitializer(g, n.input[1]);
  if (!t) return 'weight is not a float32 initializer';
  const dims = dimsOf(t);
  if (dims.length !== 2) return `weight has rank ${dims.length}, not 2`;
  return { weightKey: t.name, weight: readFloats(t), k: dims[0], n: dims[1] };
}

/** Gemm(A, B, C) = alpha * A' * B' + beta * C, folded into MatMul(A, W) + Add(C') with W = alpha * B'. */
function planGemm(g: GraphIndex, n: NodeProto): Plan | string {
  const get = (name: string, dflt: number) => {
    const a = n.attribute.find((x) => x.name === name);
    if (!a) return dflt;
    return name === 'alpha' || name === 'beta' ? a.f : Number(a.i);
  };
  const alpha = get('alpha', 1);
  const beta = get('beta', 1);
  if (get('transA', 0) !== 0) return 'Gemm with transA=1';
  const t = floatInitializer(g, n.input[1]);
  if (!t) return 'weight is not a float32 initializer';
  const dims = dimsOf(t);
  if (dims.length !== 2) return `weight has rank ${dims.length}, not 2`;
  const transB = get('transB', 0) !== 0;
  const [k, cols] = transB ? [dims[1], dims[0]] : dims;
  const src = readFloats(t);
  let weight = src;
  if (transB || alpha !== 1) {
    weight = new Float32Array(k * cols);
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < cols; j++) weight[i * cols + j] = alpha * (transB ? src[j * k + i] : src[i * cols + j]);
    }
  }
  const key = transB || alpha !== 1 ? `${t.name}${transB ? '_T' : ''}${alpha !== 1 ? `_x${alpha}` : ''}` : t.name;
  const c = n.input[2];
  if (!c) return { weightKey: key, weight, k, n: cols };
  if (beta === 1) return { weightKey: key, weight, k, n: cols, bias: c };
  const ct = floatInitializer(g, c);
  if (!ct) return 'Gemm with beta != 1 and a non-constant C';
  // A scaled copy: the original C may be read elsewhere.
  const bias = g.addFloats(
    `${c}_scaled`,
    dimsOf(ct),
    readFloats(ct).map((v) => v * beta),
  );
  return { weightKey: key, weight, k, n: cols, bias };
}

/**
 * Quantizes a [K, N] float weight to int8 or uint8: per tensor, or per column with `perChannel`. int8 is symmetric
 * (zero point 0), uint8 asymmetric, matching onnxruntime's defaults for `quantize_dynamic`. The arithmetic is
 * {@link quantizeWeightTensor} (quant-math's) with `float32Range`: `quantize_dynamic` subtracts the range in float32.
 */
export function quantizeWeight(
  w: Float32Array,
  k: number,
  n: number,
  type: QuantType = 'int8',
  reduceRange = false,
  perChannel = false,
): QuantizedWeight {
  const q = quantizeWeightTensor(w.subarray(0, k * n), [k, n], {
    type,
    reduceRange,
    axis: perChannel ? 1 : undefined,
    float32Range: true,
  });
  return { values: q.data, scale: q.scales, zeroPoint: q.zeroPoints };
}
