import { create } from '@bufbuild/protobuf';
import {
  attribute,
  DataType,
  describeValueInfo,
  node as makeNode,
  tensor,
  type ModelProto,
  type NodeProto,
} from '../onnx/model.js';
import { OperatorSetIdProtoSchema } from '../onnx/proto/onnx_pb.js';
import { cloneModel, GraphIndex, readInts } from './graph.js';

// Upgrading the default-domain opset of a model, for the ops our models use. onnx's C++ version converter does this
// in Python land; here each operator whose semantics changed between the model's opset and the target gets an
// explicit rewrite, every operator known not to have changed in a way that matters passes through, and anything else
// is refused by name, so that an upgrade never silently changes what a model computes.

/** The highest opset {@link upgradeOpset} converts to (ReduceMean & co. move `axes` to an input at 18). */
export const MAX_UPGRADE_OPSET = 17;

/** The lowest opset {@link upgradeOpset} converts from: below 7, most ops had `consumed_inputs` or `broadcast`. */
export const MIN_UPGRADE_OPSET = 7;

/**
 * Ops whose versions up to {@link MAX_UPGRADE_OPSET}, starting from opset 7, only added types or attributes whose
 * defaults keep the old behaviour (Reshape's allowzero=0, BatchNormalization's training_mode=0, MaxPool's
 * ceil_mode=0, ...).
 */
const UNCHANGED = new Set([
  'Abs',
  'Acos',
  'Add',
  'And',
  'ArgMax',
  'ArgMin',
  'Asin',
  'Atan',
  'AveragePool',
  'BatchNormalization',
  'Cast',
  'Ceil',
  'Concat',
  'Constant',
  'ConstantOfShape',
  'Conv',
  'ConvTranspose',
  'Cos',
  'DepthToSpace',
  'Div',
  'Elu',
  'Equal',
  'Erf',
  'Exp',
  'Expand',
  'Flatten',
  'Floor',
  'Gather',
  'Gemm',
  'GlobalAveragePool',
  'GlobalMaxPool',
  'Greater',
  'HardSigmoid',
  'Identity',
  'InstanceNormalization',
  'LRN',
  'LeakyRelu',
  'Less',
  'Log',
  'MatMul',
  'Max',
  'MaxPool',
  'Mean',
  'Min',
  'Mul',
  'Neg',
  'Not',
  'Or',
  'PRelu',
  'Pow',
  'Range',
  'Reciprocal',
  'ReduceL1',
  'ReduceL2',
  'ReduceLogSumExp',
  'ReduceMax',
  'ReduceMean',
  'ReduceMin',
  'ReduceProd',
  'ReduceSumSquare',
  'Relu',
  'Reshape',
  'Selu',
  'Shape',
  'Sigmoid',
  'Sign',
  'Sin',
  'Size',
  'Softplus',
  'Softsign',
  'SpaceToDepth',
  'Sqrt',
  'Sub',
  'Sum',
  'Tan',
  'Tanh',
  'Tile',
  'Transpose',
  'Where',
  'Xor',
]);

/**
 * Ops that changed meaning in early opsets but not since the version given, up to {@link MAX_UPGRADE_OPSET}: Resize-11
 * (coordinate transformation modes, roi) is what 13 runs, which only made roi and scales optional.
 */
const UNCHANGED_SINCE: Readonly<Record<string, number>> = { Resize: 11 };

/** A rewrite applied when the upgrade crosses `since` (old version < since <= target). */
interface Conversion {
  readonly since: number;
  readonly convert: (n: NodeProto, ctx: Context) => void;
}

interface Context {
  readonly index: GraphIndex;
  /** Nodes to insert before `n` (Softmax decomposition). */
  readonly before: NodeProto[];
}

const CONVERSIONS: Record<string, readonly Conversion[]> = {
  // Clip-11: min and max become optional inputs (absent = no bound, as the old defaults of +-FLT_MAX).
  Clip: [
    {
      since: 11,
      convert: (n, ctx) =>
        attrsToInputs(n, ctx, [
          ['min', 'float'],
          ['max', 'float'],
        ]),
    },
  ],
  // Slice-10: starts / ends / axes become inputs (steps is new and optional).
  Slice: [
    {
      since: 10,
      convert: (n, ctx) =>
        attrsToInputs(n, ctx, [
          ['starts', 'ints'],
          ['ends', 'ints'],
          ['axes', 'ints'],
        ]),
    },
  ],
  // Pad-11: pads and value become inputs (value assumed float: the only Pad our float models have).
  Pad: [
    {
      since: 11,
      convert: (n, ctx) =>
        attrsToInputs(n, ctx, [
          ['pads', 'ints'],
          ['value', 'float'],
        ]),
    },
  ],
  // Dropout-12: ratio becomes an input; inference ignores it anyway.
  Dropout: [{ since: 12, convert: (n, ctx) => attrsToInputs(n, ctx, [['ratio', 'float']]) }],
  // 13: axes / split become inputs.
  Squeeze: [{ since: 13, convert: (n, ctx) => attrsToInputs(n, ctx, [['axes', 'ints']]) }],
  Unsqueeze: [{ since: 13, convert: (n, ctx) => attrsToInputs(n, ctx, [['axes', 'ints']]) }],
  ReduceSum: [{ since: 13, convert: (n, ctx) => attrsToInputs(n, ctx, [['axes', 'ints']]) }],
  Split: [{ since: 13, convert: (n, ctx) => attrsToInputs(n, ctx, [['split', 'ints']]) }],
  // 13: the softmax family normalizes along one axis instead of over the input flattened to 2-D at `axis`.
  Softmax: [{ since: 13, convert: softmaxTo13 }],
  LogSoftmax: [{ since: 13, convert: softmaxTo13 }],
  Hardmax: [{ since: 13, convert: softmaxTo13 }],
};

/** IR version that first carries each opset (onnx/helper.py VERSION_TABLE). */
const IR_FOR_OPSET: Record<number, number> = {
  7: 3,
  8: 3,
  9: 4,
  10: 5,
  11: 6,
  12: 7,
  13: 7,
  14: 7,
  15: 8,
  16: 8,
  17: 8,
};

/**
 * Upgrades the default-domain opset of `model` to `target` (at most {@link MAX_UPGRADE_OPSET}), rewriting the nodes
 * whose operator changed meaning on the way: Clip min/max, Slice starts/ends/axes, Pad pads/value, Dropout ratio
 * (attributes to inputs at 10-12), Squeeze/Unsqueeze/ReduceSum axes and Split split (attributes to inputs at 13), and
 * Softmax/LogSoftmax/Hardmax (axis semantics at 13). Nodes in other domains are left alone.
 *
 * @returns a new model; the input is not modified. A model already at `target` or above is returned as a copy.
 * @throws naming the operator, for an operator whose conversion is unknown (Upsample, Resize before 11, TopK, control
 *   flow...),
 *   and for models older than opset {@link MIN_UPGRADE_OPSET}
 */
export function upgradeOpset(model: ModelProto, target: number): ModelProto {
  if (!Number.isInteger(target) || target > MAX_UPGRADE_OPSET) {
    throw new RangeError(`cannot upgrade to opset ${target}: supported targets are up to ${MAX_UPGRADE_OPSET}`);
  }
  const out = cloneModel(model);
  const index = new GraphIndex(out);
  const from = index.opset;
  if (from >= target) return out;
  if (from < MIN_UPGRADE_OPSET) {
    throw new Error(
      `cannot upgrade from opset ${from}: models older than opset ${MIN_UPGRADE_OPSET} are not supported`,
    );
  }
  const refused = new Set<string>();
  for (const n of index.graph.node) {
    if (!isDefaultDomain(n.domain)) continue;
    if (n.attribute.some((a) => a.g || a.graphs.length > 0)) refused.add(`${n.opType} (has subgraphs)`);
    else if (!UNCHANGED.has(n.opType) && !CONVERSIONS[n.opType] && !(from >= (UNCHANGED_SINCE[n.opType] ?? Infinity)))
      refused.add(n.opType);
    else if (n.opType === 'Resize' && target >= 13 && resizeMode(n) === 'tf_half_pixel_for_nn')
      refused.add('Resize (coordinate_transformation_mode tf_half_pixel_for_nn, which opset 13 removed)');
  }
  if (refused.size > 0) {
    throw new Error(
      `cannot upgrade opset ${from} -> ${target}: no known conversion for ${[...refused].sort().join(', ')}`,
    );
  }
  for (const n of [...index.graph.node]) {
    if (!isDefaultDomain(n.domain)) continue;
    for (const c of CONVERSIONS[n.opType] ?? []) {
      if (from < c.since && c.since <= target) {
        const before: NodeProto[] = [];
        c.convert(n, { index, before });
        if (before.length > 0) index.insertBefore(n, ...before);
      }
    }
  }
  const own = out.opsetImport.find((o) => isDefaultDomain(o.domain));
  if (own) own.version = BigInt(target);
  else out.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(target) }));
  out.irVersion = BigInt(Math.max(Number(out.irVersion), IR_FOR_OPSET[target] ?? 8));
  return out;
}

/** A Resize node's coordinate transformation mode (`half_pixel` when absent). */
function resizeMode(n: NodeProto): string {
  const a = n.attribute.find((x) => x.name === 'coordinate_transformation_mode');
  return a ? new TextDecoder().decode(a.s) : 'half_pixel';
}

function isDefaultDomain(domain: string | undefined): boolean {
  return !domain || domain === 'ai.onnx';
}

/**
 * Moves attributes to (optional) inputs, in operator input order after the existing inputs. An absent attribute
 * becomes an empty input name, and trailing empty inputs are dropped.
 */
function attrsToInputs(n: NodeProto, ctx: Context, spec: readonly (readonly [string, 'ints' | 'float'])[]): void {
  const added: string[] = [];
  for (const [name, kind] of spec) {
    const a = n.attribute.find((x) => x.name === name);
    if (!a) {
      added.push('');
      continue;
    }
    const tensorName = ctx.index.freshName(`${n.name || n.output[0]}_${name}`);
    ctx.index.setInitializer(
      kind === 'ints'
        ? tensor(tensorName, [a.ints.length], BigInt64Array.from(a.ints))
        : tensor(tensorName, [], new Float32Array([a.f])),
    );
    added.push(tensorName);
  }
  while (added.length > 0 && added[added.length - 1] === '') added.pop();
  const names = new Set(spec.map(([name]) => name));
  n.attribute = n.attribute.filter((a) => !names.has(a.name));
  n.input.push(...added);
}

/**
 * Softmax < 13 normalizes the input coerced to 2-D at `axis` (default 1), i.e. over all of axes [axis, rank); 13
 * normalizes over `axis` alone (default -1). When `axis` is the last axis (the usual classifier head, which we can
 * tell from the rank) the two agree and only the attribute is made explicit; otherwise the old semantics are
 * rebuilt exactly as Reshape(Softmax13(Flatten(x, axis), -1), Shape(x)).
 */
function softmaxTo13(n: NodeProto, ctx: Context): void {
  const a = n.attribute.find((x) => x.name === 'axis');
  const axis = a ? Number(a.i) : 1;
  const rank = rankOf(n.input[0], ctx.index);
  const last = rank !== undefined && (axis === rank - 1 || axis === -1);
  if (last) {
    setIntAttr(n, 'axis', -1);
    return;
  }
  const base = n.name || n.output[0];
  const shape = ctx.index.freshName(`${base}_shape`);
  const flat = ctx.index.freshName(`${base}_2d`);
  const y2 = ctx.index.freshName(`${base}_2d_out`);
  ctx.before.push(
    makeNode('Shape', [n.input[0]], [shape], {}, { name: ctx.index.freshName(`${base}_Shape`) }),
    makeNode('Flatten', [n.input[0]], [flat], { axis }, { name: ctx.index.freshName(`${base}_Flatten`) }),
  );
  // The original node computes on the 2-D view, then a Reshape (inserted after it) restores the shape.
  const y = n.output[0];
  n.input[0] = flat;
  n.output[0] = y2;
  setIntAttr(n, 'axis', -1);
  const reshape = makeNode('Reshape', [y2, shape], [y], {}, { name: ctx.index.freshName(`${base}_Reshape`) });
  const at = ctx.index.graph.node.indexOf(n);
  ctx.index.graph.node.splice(at + 1, 0, reshape);
  ctx.index.producers.set(y, reshape);
}

function setIntAttr(n: NodeProto, name: string, value: number): void {
  const a = n.attribute.find((x) => x.name === name);
  if (a) {
    a.i = BigInt(value);
    return;
  }
  n.attribute.push(attribute(name, value));
}

const SAME_RANK = new Set([
  'Relu',
  'Sigmoid',
  'Tanh',
  'Clip',
  'HardSigmoid',
  'LeakyRelu',
  'Exp',
  'Log',
  'Neg',
  'Abs',
  'Sqrt',
  'Dropout',
  'Identity',
  'Cast',
  'BatchNormalization',
  'Softmax',
  'LogSoftmax',
  'Conv',
  'MaxPool',
  'AveragePool',
  'GlobalAveragePool',
  'GlobalMaxPool',
]);

/** The rank of a tensor when the graph says it: declared shapes, or a few ops whose output rank is evident. */
export function rankOf(name: string, index: GraphIndex, depth = 0): number | undefined {
  const g = index.graph;
  for (const vi of [...g.input, ...g.output, ...g.valueInfo]) {
    if (vi.name === name) {
      const d = describeValueInfo(vi).dims;
      if (d) return d.length;
    }
  }
  const init = index.initializers.get(name);
  if (init) return init.dims.length;
  const p = index.producers.get(name);
  if (!p || depth > 64) return undefined;
  switch (p.opType) {
    case 'Gemm':
    case 'Flatten':
      return 2;
    case 'MatMul': {
      const a = rankOf(p.input[0], index, depth + 1);
      const b = rankOf(p.input[1], index, depth + 1);
      return a !== undefined && b !== undefined ? Math.max(a, b) : undefined;
    }
    case 'Reshape': {
      const s = index.initializers.get(p.input[1]);
      return s && s.dataType === DataType.INT64 ? readInts(s).length : undefined;
    }
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div': {
      const ranks = p.input.map((i) => rankOf(i, index, depth + 1));
      return ranks.every((r) => r !== undefined) ? Math.max(...(ranks as number[])) : undefined;
    }
    default:
      return SAME_RANK.has(p.opType) ? rankOf(p.input[0], index, depth + 1) : undefined;
  }
}
