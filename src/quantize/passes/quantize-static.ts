import { DataType, type ModelProto, type NodeProto, type TensorProto } from '../../onnx/model.js';
import { cloneModel, dimsOf, GraphIndex, readFloats, topologicalOrder } from '../graph.js';
import { upgradeOpset } from '../opset.js';
import type { Range } from '../quant-math.js';
import { applyPlan, type Plan } from './qdq-writer.js';

// Static int8 quantization in QDQ format, modelled on onnxruntime's `quantize_static(quant_format=QDQ,
// activation_type=QUInt8, weight_type=QInt8, per_channel=True)` (qdq_quantizer.py and operators/*.py): the graph
// stays a float graph in which every quantized tensor goes through QuantizeLinear -> DequantizeLinear, and
// onnxruntime's QDQ transformers (level 'extended' and up) fuse DQ -> op -> Q into QLinearConv, QLinearMatMul,
// QGemm, QLinearAdd, ... at load time. Keeping the float ops makes the model portable to providers that do not fuse.
// This file decides what to quantize (a Plan); qdq-writer.ts writes the plan into the graph.

/** Ops quantized when `opTypes` is not given. */
export const DEFAULT_STATIC_OP_TYPES: readonly string[] = [
  'Conv',
  'MatMul',
  'Gemm',
  'Add',
  'Mul',
  'GlobalAveragePool',
  'AveragePool',
  'MaxPool',
  'Relu',
  'Clip',
];

/** Options of {@link quantizeStatic}. */
export interface StaticQuantOptions {
  /** One weight scale per output channel (default true); needs opset 13, to which the model is upgraded. */
  readonly perChannel?: boolean;
  /** 7-bit weights, for CPUs without VNNI whose int8 dot products can saturate (like ORT, weights only). */
  readonly reduceRange?: boolean;
  /** Node names to leave in float. */
  readonly excludeNodes?: readonly string[];
  /** Op types to quantize; default {@link DEFAULT_STATIC_OP_TYPES}. */
  readonly opTypes?: readonly string[];
}

/** The QDQ opset: per-channel DequantizeLinear (`axis`) arrived in 13. */
const QDQ_OPSET = 13;

/** Ops that move values without arithmetic: their output reuses the input's scale so ORT can run them on uint8. */
const DIRECT_8BIT = new Set(['MaxPool', 'Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'Flatten']);

/**
 * The activation tensors {@link quantizeStatic} may need ranges for, with the same options: pass them as
 * `tensors` to `calibrate` to calibrate only what is needed. Some of them may turn out not to be float (e.g. int64
 * shape arithmetic through Add); `calibrate` leaves those out and the nodes using them stay float.
 */
export function quantizableTensors(model: ModelProto, opts: StaticQuantOptions = {}): string[] {
  const index = new GraphIndex(prepare(model));
  const selected = selectNodes(index, opts);
  const names = new Set<string>();
  for (const n of selected) {
    for (const t of [...n.input, ...n.output]) if (t && !index.initializers.has(t)) names.add(t);
  }
  return [...names];
}

/**
 * Quantizes a float model to int8 in QDQ format, with activation ranges from calibration.
 *
 * - activations: one QuantizeLinear -> DequantizeLinear pair (uint8, asymmetric) per tensor, shared by its consumers,
 *   on the inputs and outputs of quantized nodes; graph inputs and outputs stay float32;
 * - weights of Conv (axis 0), MatMul (axis 1 of [K, N]) and Gemm (axis 0 with transB, else 1): int8 symmetric
 *   initializers (per channel unless `perChannel: false`) + DequantizeLinear;
 * - biases of Conv and Gemm: int32 with scale `x_scale * w_scale[c]` and zero point 0 + DequantizeLinear;
 * - Relu and Clip right after a quantized node are removed, their range becoming the producer's output range;
 * - MaxPool (and Reshape, Transpose, ... when listed in `opTypes`) reuse their input's qparams on the output.
 *
 * A model below opset 13 is upgraded first (see `upgradeOpset`).
 *
 * @param ranges float ranges by tensor name, from `calibrate`
 * @throws when a Conv / MatMul / Gemm to quantize has an activation without a range (calibrate that tensor)
 */
export function quantizeStatic(
  model: ModelProto,
  ranges: ReadonlyMap<string, Range>,
  opts: StaticQuantOptions = {},
): ModelProto {
  const out = prepare(model);
  const index = new GraphIndex(out);
  const plan = planQuantization(index, ranges, opts);
  applyPlan(index, plan, ranges, opts.reduceRange);
  return out;
}

function prepare(model: ModelProto): ModelProto {
  const index = new GraphIndex(model); // checks there is a graph
  return index.opset < QDQ_OPSET ? upgradeOpset(model, QDQ_OPSET) : cloneModel(model);
}

function selectNodes(index: GraphIndex, opts: StaticQuantOptions): NodeProto[] {
  const types = new Set(opts.opTypes ?? DEFAULT_STATIC_OP_TYPES);
  const excluded = new Set(opts.excludeNodes ?? []);
  // (a Div is quantized only as a rescale: see scalarFactor)
  const selected = (n: NodeProto) =>
    types.has(n.opType) || (n.opType === 'Div' && types.has('Mul') && scalarFactor(index, n) !== undefined);
  return topologicalOrder(index.graph).filter(
    (n) => (!n.domain || n.domain === 'ai.onnx') && selected(n) && !(n.name && excluded.has(n.name)),
  );
}

function isFloatInitializer(t: TensorProto | undefined): t is TensorProto {
  return t !== undefined && t.dataType === DataType.FLOAT;
}

function floatAttr(n: NodeProto, name: string, fallback: number): number {
  const a = n.attribute.find((x) => x.name === name);
  return a ? a.f : fallback;
}

function intAttr(n: NodeProto, name: string, fallback: number): number {
  const a = n.attribute.find((x) => x.name === name);
  return a ? Number(a.i) : fallback;
}

/** Walks the nodes in topological order, deciding what to quantize, like ORT's per-op QDQ quantizers. */
function planQuantization(index: GraphIndex, ranges: ReadonlyMap<string, Range>, opts: StaticQuantOptions): Plan {
  const plan: Plan = {
    activations: new Map(),
    weights: new Map(),
    biases: new Map(),
    rescaled: new Map(),
    removed: new Set(),
  };
  const perChannel = opts.perChannel ?? true;
  const graphIO = new Set([...index.graph.input, ...index.graph.output].map((v) => v.name));
  const graphOutputs = new Set(index.graph.output.map((v) => v.name));
  const act = (name: string) => {
    // a rescaled tensor is already the output of a DequantizeLinear
    if (!plan.activations.has(name) && !plan.rescaled.has(name)) plan.activations.set(name, { rangeOf: name });
  };
  const missing = (names: readonly string[]) => names.filter((x) => x && !ranges.has(x));
  const weight = (name: string, axis: number | undefined) => {
    if (!plan.weights.has(name)) plan.weights.set(name, { type: 'int8', symmetric: true, axis });
  };

  for (const n of selectNodes(index, opts)) {
    const [x, w, b] = n.input;
    const y = n.output[0];
    switch (n.opType) {
      case 'Conv':
      case 'Gemm':
      case 'MatMul': {
        if (n.opType === 'Gemm' && intAttr(n, 'transA', 0) !== 0) break; // rare; QGemm's selector wants A as is
        const wInit = index.initializers.get(w);
        const activations = [x, ...(wInit ? [] : [w]), y];
        const lacking = missing(activations);
        if (lacking.length > 0) {
          throw new Error(
            `${n.opType} '${n.name || y}' has no calibrated range for ${lacking.join(', ')}: calibrate these tensors`,
          );
        }
        if (wInit && !isFloatInitializer(wInit)) break;
        for (const a of activations) act(a);
        if (wInit) {
          let axis: number | undefined;
          if (perChannel) {
            if (n.opType === 'Conv') axis = 0;
            else if (n.opType === 'Gemm') axis = intAttr(n, 'transB', 0) ? 0 : 1;
            else if (wInit.dims.length === 2 && w === n.input[1]) axis = 1;
          }
          weight(w, axis);
          // A bias is quantized against this node's input and weight scales, so it must not be shared; Gemm's bias
          // must be a vector of N (not a broadcast matrix) with beta 1, the form QGemm fuses.
          const bInit = b ? index.initializers.get(b) : undefined;
          const outChannels = n.opType === 'Conv' || axis === 0 ? Number(wInit.dims[0]) : Number(wInit.dims[1]);
          const biasOk =
            n.opType !== 'MatMul' &&
            isFloatInitializer(bInit) &&
            (index.consumers.get(b)?.length ?? 0) === 1 &&
            bInit.dims.length === 1 &&
            Number(bInit.dims[0]) === outChannels &&
            (n.opType === 'Conv' || (floatAttr(n, 'beta', 1) === 1 && floatAttr(n, 'alpha', 1) === 1));
          if (biasOk) plan.biases.set(b, { input: x, weight: w });
        }
        break;
      }
      case 'Relu':
      case 'Clip': {
        if (!plan.activations.has(x) || !ranges.has(y)) break;
        if (n.opType === 'Clip' && !clipContainsZero(n, index)) {
          // The quantized range always contains 0, so only a clip to a range containing 0 can be dropped.
          act(y);
          break;
        }
        const producer = index.producers.get(x);
        const single = (index.consumers.get(x)?.length ?? 0) === 1;
        if (producer && single && !graphIO.has(x) && !plan.removed.has(producer)) {
          // ORT's try_replacing_upstream_output: the producer writes the activation's output directly.
          producer.output[producer.output.indexOf(x)] = y;
          index.producers.set(y, producer);
          plan.activations.delete(x);
          plan.removed.add(n);
        }
        act(y);
        break;
      }
      case 'Mul':
      case 'Div': {
        // x * c (or x / c) for a positive scalar constant c: the same uint8 values dequantized with scale * c, exactly,
        // where a QLinearMul would requantize them onto its output's grid, which is the same grid (the range of y is
        // c times that of x) at the cost of a pass over the tensor. PP-LCNetV3 scales the output of every
        // convolution and activation by a learned scalar, and hard-swish divides by 6.
        const factor = scalarFactor(index, n);
        if (
          factor !== undefined &&
          !graphOutputs.has(y) &&
          !plan.activations.has(y) &&
          ranges.has(n.input[factor.at])
        ) {
          // a rescaled tensor rescaled again reads the same uint8 values
          const before = plan.rescaled.get(n.input[factor.at]);
          const input = before?.input ?? n.input[factor.at];
          act(input);
          plan.rescaled.set(y, { input, factor: factor.value * (before?.factor ?? 1) });
          plan.removed.add(n);
          break;
        }
        if (n.opType === 'Mul') quantizeGeneric(n);
        break;
      }
      default:
        quantizeGeneric(n);
    }
  }
  return plan;

  /** Any other op (Add, Mul, GlobalAveragePool, ...): every float input and the output, as ORT's QDQOperatorBase. */
  function quantizeGeneric(n: NodeProto): void {
    const [x] = n.input;
    const y = n.output[0];
    if (DIRECT_8BIT.has(n.opType)) {
      if (n.output.length === 1 && plan.activations.has(x) && !graphOutputs.has(y)) {
        plan.activations.set(y, { rangeOf: x, sameAs: x });
      }
      return;
    }
    const inputs = n.input.filter((i) => i);
    const inits = inputs.filter((i) => index.initializers.has(i));
    const acts = [...inputs.filter((i) => !index.initializers.has(i)), ...n.output];
    if (missing(acts).length > 0 || !inits.every((i) => isFloatInitializer(index.initializers.get(i)))) return;
    for (const a of acts) act(a);
    // ORT quantizes a constant operand (hardswish's `x + 3`) like an activation: uint8, asymmetric.
    for (const i of inits) if (!plan.weights.has(i)) plan.weights.set(i, { type: 'uint8', symmetric: false });
  }
}

/**
 * For `x * c`, `c * x` or `x / c` with c a positive finite float scalar constant: which input is x, and what x is
 * multiplied by.
 */
function scalarFactor(index: GraphIndex, n: NodeProto): { at: number; value: number } | undefined {
  if (n.input.length !== 2) return undefined;
  const scalar = (name: string): number | undefined => {
    const t = index.initializers.get(name);
    if (!isFloatInitializer(t) || dimsOf(t).some((d) => d !== 1)) return undefined;
    const v = readFloats(t);
    return v.length === 1 && Number.isFinite(v[0]) && v[0] > 0 ? v[0] : undefined;
  };
  const [a, b] = n.input;
  const cb = scalar(b);
  if (cb !== undefined && !index.initializers.has(a)) return { at: 0, value: n.opType === 'Div' ? 1 / cb : cb };
  const ca = n.opType === 'Mul' ? scalar(a) : undefined;
  if (ca !== undefined && !index.initializers.has(b)) return { at: 1, value: ca };
  return undefined;
}

function clipContainsZero(n: NodeProto, index: GraphIndex): boolean {
  const bound = (name: string | undefined, fallback: number): number | undefined => {
    if (!name) return fallback;
    const t = index.initializers.get(name);
    return t && t.dataType === DataType.FLOAT && t.dims.length === 0 ? readFloats(t)[0] : undefined;
  };
  const lo = bound(n.input[1], -Infinity);
  const hi = bound(n.input[2], Infinity);
  return lo !== undefined && hi !== undefined && lo <= 0 && hi >= 0;
}
