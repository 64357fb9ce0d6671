import { create } from '@bufbuild/protobuf';
import {
  attribute,
  DataType,
  node,
  tensor,
  type AttributeProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from '../../onnx/model.js';
import { AttributeProto_AttributeType, AttributeProtoSchema } from '../../onnx/proto/onnx_pb.js';
import { inferElemTypes } from '../elem-types.js';
import { cloneModel, floatToHalf, GraphIndex, readFloats, topologicalOrder } from '../graph.js';

/**
 * Ops kept in float32 by default: onnxconverter-common's `DEFAULT_OP_BLOCK_LIST` (ONNX-ML ops, ops whose float
 * inputs are coordinates or counts where half precision breaks results: Resize / Upsample scales, Range,
 * NonMaxSuppression, TopK, RoiAlign, CumSum, Min, Max), plus the random generators.
 */
export const DEFAULT_FP16_BLOCK_OPS: readonly string[] = [
  'ArrayFeatureExtractor',
  'Binarizer',
  'CastMap',
  'CategoryMapper',
  'DictVectorizer',
  'FeatureVectorizer',
  'Imputer',
  'LabelEncoder',
  'LinearClassifier',
  'LinearRegressor',
  'Normalizer',
  'OneHotEncoder',
  'SVMClassifier',
  'SVMRegressor',
  'Scaler',
  'TreeEnsembleClassifier',
  'TreeEnsembleRegressor',
  'ZipMap',
  'NonMaxSuppression',
  'TopK',
  'RoiAlign',
  'Resize',
  'Range',
  'CumSum',
  'Min',
  'Max',
  'Upsample',
  'RandomUniform',
  'RandomUniformLike',
  'RandomNormal',
  'RandomNormalLike',
  'Multinomial',
];

/** Options of {@link convertFp16}. */
export interface Fp16Options {
  /** Keep float32 graph inputs and outputs, with Casts at the boundary. Default true. */
  keepIoTypes?: boolean;
  /** Op types kept in float32 (with Casts around them). Default {@link DEFAULT_FP16_BLOCK_OPS}. */
  blockOps?: readonly string[];
  /** Node names kept in float32. */
  excludeNodes?: readonly string[];
}

/** What {@link convertFp16WithStats} did. */
export interface Fp16Stats {
  /** Float tensors (initializers and Constant values) stored as float16. */
  convertedTensors: number;
  /** Values above the float16 range, clamped to +-65504. */
  overflowed: number;
  /** Non-zero values below the smallest float16 subnormal, raised to +-2^-24 (so a divisor never becomes 0). */
  underflowed: number;
  /** Names of tensors that had overflow or underflow. */
  clampedTensors: string[];
  /** Nodes kept in float32 (blocked op type or excluded), by name or `op#index`. */
  keptFloat: string[];
  /** Cast nodes inserted. */
  casts: number;
}

const FLOAT = DataType.FLOAT;
const FLOAT16 = DataType.FLOAT16;
const HALF_MAX = 65504;
const HALF_MIN_SUBNORMAL = 2 ** -24;

/** Op inputs that are float32 whatever T is (they never become float16). */
const FIXED_FLOAT_INPUTS: Record<string, number[]> = { Resize: [2], Upsample: [1] };
/** Op inputs that accept any type: no Cast is needed in front of them. */
const ANY_TYPE_INPUTS: Record<string, number[]> = {
  Cast: [0],
  Shape: [0],
  Size: [0],
  EyeLike: [0],
  RandomNormalLike: [0],
  RandomUniformLike: [0],
};
/** Ops whose `dtype` attribute picks a float output type (default float32 when absent). */
const DTYPE_OPS = new Set(['RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'EyeLike']);

/**
 * Converts a float32 model to float16: float initializers and Constant tensors are stored as float16 (values outside
 * the float16 range are clamped and counted), every node computes in float16 except blocked op types and excluded
 * nodes, which keep float32 with Casts around them. Graph inputs and outputs stay float32 by default (Casts at the
 * boundary), so callers feed and read the same types as before.
 *
 * Element types are found by a forward pass over the graph (from value_info where present, otherwise per-op rules),
 * so integer and boolean tensors (shapes, indices, masks) are never touched. Type attributes follow: Cast `to`,
 * ConstantOfShape `value`, Random* / EyeLike `dtype`. value_info of float tensors is updated to the new types.
 *
 * Aimed at the CUDA provider. The result also loads on onnxruntime's CPU provider (1.29): where it has no float16
 * kernel, its InsertCastTransformer computes that node in float32 by itself, so CPU runs are a fidelity check, not a
 * speed-up. Models with control flow (If / Loop / Scan subgraphs) are refused.
 *
 * @param model - a float32 model
 * @param opts - see {@link Fp16Options}
 * @returns a new model; the input is not changed
 */
export function convertFp16(model: ModelProto, opts: Fp16Options = {}): ModelProto {
  return convertFp16WithStats(model, opts).model;
}

/** {@link convertFp16}, also returning what was converted and clamped, for the CLI's report. */
export function convertFp16WithStats(
  model: ModelProto,
  opts: Fp16Options = {},
): { model: ModelProto; stats: Fp16Stats } {
  const out = cloneModel(model);
  const g = new GraphIndex(out);
  const graph = g.graph;
  const keepIo = opts.keepIoTypes ?? true;
  const blockOps = new Set(opts.blockOps ?? DEFAULT_FP16_BLOCK_OPS);
  const exclude = new Set(opts.excludeNodes ?? []);
  const stats: Fp16Stats = {
    convertedTensors: 0,
    overflowed: 0,
    underflowed: 0,
    clampedTensors: [],
    keptFloat: [],
    casts: 0,
  };

  for (const n of graph.node) {
    if (n.attribute.some((a) => a.g || a.graphs.length > 0)) {
      throw new Error(`node '${n.name || n.opType}' has a subgraph: fp16 conversion of control flow is not supported`);
    }
  }
  const nodes = topologicalOrder(graph);
  const types = inferElemTypes(g, nodes);
  const isFloat = (name: string) => name !== '' && types.get(name) === FLOAT;

  // Which nodes compute in float16.
  const converted = new Set<NodeProto>();
  nodes.forEach((n, i) => {
    if (blockOps.has(n.opType) || exclude.has(n.name)) stats.keptFloat.push(n.name || `${n.opType}#${i}`);
    else converted.add(n);
  });
  /** The type a node wants on input `i` (undefined: any type, no Cast needed). */
  const wanted = (n: NodeProto, i: number): DataType | undefined => {
    if (ANY_TYPE_INPUTS[n.opType]?.includes(i)) return undefined;
    if (FIXED_FLOAT_INPUTS[n.opType]?.includes(i)) return FLOAT;
    return converted.has(n) ? FLOAT16 : FLOAT;
  };
  const wantsHalf = (name: string) =>
    (g.consumers.get(name) ?? []).some((c) => c.input.some((x, i) => x === name && wanted(c, i) === FLOAT16));

  // The type each float tensor is stored as ("home"), under which name.
  const home = new Map<string, { name: string; type: DataType }>();
  const graphInputs = new Set(g.inputNames);
  for (const name of graphInputs) if (isFloat(name)) home.set(name, { name, type: keepIo ? FLOAT : FLOAT16 });
  for (const t of graph.initializer) {
    if (t.dataType !== FLOAT || graphInputs.has(t.name) || !wantsHalf(t.name)) continue;
    const data = toHalf(readFloats(t), t.name, stats);
    graph.initializer[graph.initializer.indexOf(t)] = tensor(t.name, t.dims, data, FLOAT16);
    home.set(t.name, { name: t.name, type: FLOAT16 });
  }
  for (const n of nodes) {
    if (n.opType === 'Constant' && converted.has(n) && isFloat(n.output[0]) && !wantsHalf(n.output[0])) {
      converted.delete(n); // a float constant only float32 consumers read: leave it float32
    }
    for (const o of n.output) if (isFloat(o)) home.set(o, { name: o, type: converted.has(n) ? FLOAT16 : FLOAT });
    if (converted.has(n)) convertAttributes(n, stats);
  }

  // Graph outputs: a float16 result gets a Cast to float32 under the output's name (or the reverse).
  const tail: NodeProto[] = [];
  for (const o of graph.output) {
    const h = home.get(o.name);
    const outType = keepIo ? FLOAT : FLOAT16;
    if (!h || h.type === outType || graphInputs.has(o.name) || g.initializers.has(o.name)) {
      if (h && !keepIo) setElemType(o, h.type);
      continue;
    }
    const producer = g.producers.get(o.name);
    if (!producer) continue;
    const inner = g.freshName(`${o.name}_${h.type === FLOAT16 ? 'fp16' : 'fp32'}`);
    producer.output[producer.output.indexOf(o.name)] = inner;
    // Other readers of the value are rewired to `inner` (or a Cast of it) below, through `home`.
    home.set(o.name, { name: inner, type: h.type });
    tail.push(node('Cast', [inner], [o.name], { to: outType }, { name: g.freshName(`${o.name}_cast`) }));
    stats.casts++;
    if (!keepIo) setElemType(o, outType);
  }
  if (!keepIo) for (const i of graph.input) if (graphInputs.has(i.name) && isFloat(i.name)) setElemType(i, FLOAT16);

  // Rewire inputs, inserting one Cast per (tensor, type) right before its first reader.
  const casts = new Map<string, string>();
  const ordered: NodeProto[] = [];
  for (const n of nodes) {
    n.input = n.input.map((x, i) => {
      const h = home.get(x);
      if (!h) return x;
      const want = wanted(n, i);
      if (want === undefined || want === h.type) return h.name;
      const key = `${x}\u0000${want}`;
      let cast = casts.get(key);
      if (!cast) {
        cast = g.freshName(`${x}_${want === FLOAT16 ? 'fp16' : 'fp32'}`);
        ordered.push(node('Cast', [h.name], [cast], { to: want }, { name: g.freshName(`${cast}_cast`) }));
        casts.set(key, cast);
        stats.casts++;
      }
      return cast;
    });
    ordered.push(n);
  }
  graph.node = [...ordered, ...tail];

  for (const vi of graph.valueInfo) {
    const h = home.get(vi.name);
    if (h) setElemType(vi, h.type);
  }
  return { model: out, stats };
}

function setElemType(vi: { type?: { value: { case: string | undefined; value?: unknown } } }, type: DataType): void {
  if (vi.type?.value.case === 'tensorType') (vi.type.value.value as { elemType: DataType }).elemType = type;
}

/** float32 values to float16 bits, clamping to the float16 range and counting what had to be clamped. */
function toHalf(values: Float32Array, name: string, stats: Fp16Stats): Uint16Array {
  const out = new Uint16Array(values.length);
  let clamped = false;
  for (let i = 0; i < values.length; i++) {
    let v = values[i];
    const a = Math.abs(v);
    if (a > HALF_MAX && a !== Infinity) {
      v = Math.sign(v) * HALF_MAX;
      stats.overflowed++;
      clamped = true;
    } else if (a !== 0 && a < HALF_MIN_SUBNORMAL / 2) {
      // Would round to 0: keep it non-zero, like onnxconverter-common's min_positive_val.
      v = Math.sign(v) * HALF_MIN_SUBNORMAL;
      stats.underflowed++;
      clamped = true;
    }
    out[i] = floatToHalf(v);
  }
  stats.convertedTensors++;
  if (clamped) stats.clampedTensors.push(name);
  return out;
}

function halfTensor(t: TensorProto, stats: Fp16Stats): TensorProto {
  return tensor(t.name, t.dims, toHalf(readFloats(t), t.name || '(attribute)', stats), FLOAT16);
}

/** Type-carrying attributes of a node that now computes in float16. */
function convertAttributes(n: NodeProto, stats: Fp16Stats): void {
  const AT = AttributeProto_AttributeType;
  const find = (name: string) => n.attribute.find((a) => a.name === name);
  const replace = (old: AttributeProto | undefined, a: AttributeProto) => {
    if (old) n.attribute[n.attribute.indexOf(old)] = a;
    else n.attribute.push(a);
  };
  switch (n.opType) {
    case 'Cast': {
      const to = find('to');
      if (to && Number(to.i) === FLOAT) to.i = BigInt(FLOAT16);
      break;
    }
    case 'Constant': {
      const v = find('value');
      if (v?.t && v.t.dataType === FLOAT) v.t = halfTensor(v.t, stats);
      const f = find('value_float') ?? find('value_floats');
      if (f) {
        const data = f.type === AT.FLOAT ? [f.f] : f.floats;
        const dims = f.type === AT.FLOAT ? [] : [data.length];
        replace(f, attribute('value', halfTensor(tensor('', dims, Float32Array.from(data)), stats)));
      }
      break;
    }
    case 'ConstantOfShape': {
      const v = find('value');
      if (!v) replace(undefined, attribute('value', tensor('', [1], new Uint16Array([0]), FLOAT16)));
      else if (v.t && v.t.dataType === FLOAT) v.t = halfTensor(v.t, stats);
      break;
    }
    default:
      if (DTYPE_OPS.has(n.opType)) {
        const d = find('dtype');
        if (d && Number(d.i) === FLOAT) d.i = BigInt(FLOAT16);
        else if (!d && !n.opType.endsWith('Like')) {
          replace(undefined, create(AttributeProtoSchema, { name: 'dtype', type: AT.INT, i: BigInt(FLOAT16) }));
        }
      }
  }
}
