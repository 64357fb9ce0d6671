import { create } from '@bufbuild/protobuf';
import type { GraphProto, ModelProto, NodeProto, TensorProto } from '../../onnx/model.js';
import { DataType } from '../../onnx/model.js';
import { TensorProtoSchema } from '../../onnx/proto/onnx_pb.js';
import {
  cloneModel,
  dimsOf,
  elementCount,
  GraphIndex,
  implicitInputs,
  readFloats,
  readInts,
  topologicalOrder,
} from '../graph.js';

/**
 * Structured (channel) pruning of convolutions: output channels of a Conv are removed together with everything that
 * is indexed by them downstream, so the pruned model is genuinely smaller and faster on dense kernels.
 *
 * The unit of pruning is a *channel group*: the set of tensors that must share one channel indexing, found by
 * following the channel axis (axis 1) through the graph in both directions, the way Torch-Pruning's dependency graph
 * does. A group holds
 *
 * - sources: group=1 Convs whose output channels define the group (several when a residual `Add` or a
 *   squeeze-excitation `Mul` joins branches: they are pruned with one common channel set);
 * - pass-through nodes: BatchNormalization, depthwise Conv (group = channels, one filter per channel), element-wise
 *   activations, element-wise binary ops whose other operand is a scalar, a per-channel constant or another member
 *   of the group, and pooling;
 * - sinks: group=1 Convs reading the group (their weight loses input channels, dim 1), and Gemm/MatMul after
 *   GlobalPool -> Flatten/Reshape (their weight loses the matching rows/columns).
 *
 * A group that reaches anything else (Concat, Reshape of a spatial tensor, a graph output or input, an unknown op,
 * a weight shared by several nodes, a grouped Conv that is not depthwise) is left alone, and each of its Convs is
 * reported in `skipped` with the reason. Subgraphs (If/Loop bodies) are not rewritten; a group whose tensors they
 * read is left alone.
 */
export interface PruneChannelsOptions {
  /** Fraction of each group's output channels to remove, in [0, 1). Default 0 (analysis only). */
  ratio?: number;
  /**
   * Per-Conv ratio by node name, overriding `ratio`. Convs pruned together (one group) share one channel set: the
   * smallest ratio given for any Conv of the group is used, so an override never prunes more than asked.
   */
  perLayer?: Record<string, number>;
  /**
   * How channels are ranked: `l1` (default), the L1 norm of each output filter of the group's source Convs; or
   * `bn-gamma`, |gamma| of the group's BatchNormalization (network slimming). With several sources (or BNs) each
   * score vector is divided by its mean before they are summed, so one layer's weight scale does not dominate.
   * A group without BatchNormalization (e.g. after onnxruntime folded BN into Conv) falls back to `l1`.
   */
  importance?: 'l1' | 'bn-gamma';
  /**
   * Conv node names whose output channels must not change; their whole group is left alone. (Their input channels
   * still follow a pruned producer.) Names of other nodes are ignored.
   */
  excludeNodes?: string[];
  /** Channels kept per group, at least. Default 1. */
  minChannels?: number;
}

/** One Conv whose output channels were pruned (`before === after` when the group was prunable but kept whole). */
export interface PrunedLayer {
  /** Conv node name (or `Conv#index` when unnamed). */
  node: string;
  /** Output channels before. */
  before: number;
  /** Output channels after. */
  after: number;
  /** The importance actually used, e.g. `l1`, `bn-gamma` or `l1 (no BatchNormalization)`. */
  importance: string;
  /** The group: name of its first source Conv. Convs of one group keep the same channels. */
  group: string;
}

/** A Conv left unpruned, and why. */
export interface SkippedLayer {
  node: string;
  reason: string;
}

/** What {@link pruneChannels} did. */
export interface PruneChannelsResult {
  /** The pruned model (a new ModelProto; the input is not modified). */
  model: ModelProto;
  /** Convs whose output channels were (or could be) pruned, sources and depthwise alike. */
  layers: PrunedLayer[];
  /** Convs left alone, with the reason. */
  skipped: SkippedLayer[];
}

const UNARY = new Set([
  'Relu',
  'LeakyRelu',
  'Elu',
  'Selu',
  'Celu',
  'Sigmoid',
  'HardSigmoid',
  'HardSwish',
  'Tanh',
  'Softplus',
  'Softsign',
  'Clip',
  'Gelu',
  'Mish',
  'ThresholdedRelu',
  'Identity',
  'Dropout',
  'Neg',
  'Abs',
  'Exp',
  'Sqrt',
  'Reciprocal',
]);
// Element-wise with numpy broadcasting: channel-preserving when every operand is either a member of the group, a
// scalar, or a constant broadcast along (or indexed by) the channel axis.
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Max', 'Min', 'Pow', 'PRelu']);
const POOLS = new Set(['GlobalAveragePool', 'GlobalMaxPool', 'GlobalLpPool', 'MaxPool', 'AveragePool', 'LpPool']);
const GLOBAL_POOLS = new Set(['GlobalAveragePool', 'GlobalMaxPool', 'GlobalLpPool']);

/** An initializer sliced along one axis, to the kept channels of a group. */
interface Slice {
  tensor: string;
  axis: number;
  group: Group;
}

interface Group {
  /** Channel count, from the first source. */
  channels: number;
  /** Member tensors and their rank. */
  tensors: Map<string, number>;
  nodes: Set<NodeProto>;
  sources: NodeProto[];
  depthwise: NodeProto[];
  bns: NodeProto[];
  slices: Slice[];
  /** Per-channel constants of binary ops: copied then sliced, since constants are often shared. */
  constants: { node: NodeProto; input: number; axis: number }[];
  /** Reshape nodes whose shape constant spells the channel count. */
  reshapes: NodeProto[];
  failures: string[];
  keep?: number[];
  importance?: string;
}

/**
 * Removes the least important output channels of Convs, rewriting every consumer consistently. See
 * {@link PruneChannelsOptions} for the rules; the result lists what was pruned and which Convs were left alone.
 * `Constant` nodes holding tensors are turned into initializers first (what onnxruntime does on load), so raw
 * exports such as paddle2onnx's work too.
 *
 * @throws if an option is out of range or names a node that does not exist
 */
export function pruneChannels(model: ModelProto, opts: PruneChannelsOptions = {}): PruneChannelsResult {
  const ratio = opts.ratio ?? 0;
  checkRatio('ratio', ratio);
  for (const [k, v] of Object.entries(opts.perLayer ?? {})) checkRatio(`perLayer['${k}']`, v);
  const minChannels = opts.minChannels ?? 1;
  if (!Number.isInteger(minChannels) || minChannels < 1) {
    throw new RangeError(`minChannels must be an integer >= 1, got ${minChannels}`);
  }
  const importance = opts.importance ?? 'l1';
  if (importance !== 'l1' && importance !== 'bn-gamma') {
    throw new RangeError(`importance must be 'l1' or 'bn-gamma', got '${String(importance)}'`);
  }

  const out = cloneModel(model);
  liftConstants(out);
  const g = new GraphIndex(out);
  const names = nodeNames(g.graph);
  // A per-layer ratio for a node that is not a Conv is a typo worth an error; excludeNodes is shared with the other
  // passes (it may name MatMuls, or nodes of another model), so unknown names there are ignored.
  const convNames = new Set(g.graph.node.filter((n) => n.opType === 'Conv').map((n) => names.get(n)!));
  for (const n of Object.keys(opts.perLayer ?? {})) {
    if (!convNames.has(n)) throw new RangeError(`pruneChannels: perLayer names '${n}', which is not a Conv node`);
  }
  const excluded = new Set(opts.excludeNodes ?? []);
  const problemsBefore = new Set(checkConvShapes(out));

  const groups = findGroups(g, names);
  const convs = g.graph.node.filter((n) => n.opType === 'Conv');
  const groupOf = new Map<NodeProto, Group>();
  for (const grp of groups) for (const n of [...grp.sources, ...grp.depthwise]) groupOf.set(n, grp);

  const layers: PrunedLayer[] = [];
  const skipped: SkippedLayer[] = [];
  for (const grp of groups) {
    const members = [...grp.sources, ...grp.depthwise];
    const ex = members.find((n) => excluded.has(names.get(n)!));
    if (ex && grp.failures.length === 0) grp.failures.push(`excluded ('${names.get(ex)}' is in excludeNodes)`);
    if (grp.failures.length > 0) continue;
    const overrides = members.map((n) => opts.perLayer?.[names.get(n)!]).filter((v) => v !== undefined);
    const r = overrides.length > 0 ? Math.min(...overrides) : ratio;
    chooseChannels(grp, g, r, minChannels, importance);
    const leader = names.get(grp.sources[0])!;
    for (const n of members) {
      layers.push({
        node: names.get(n)!,
        before: grp.channels,
        after: grp.keep!.length,
        importance: grp.importance!,
        group: leader,
      });
    }
  }
  for (const conv of convs) {
    const grp = groupOf.get(conv);
    if (grp && grp.failures.length === 0) continue;
    const reason = grp ? grp.failures[0] : ownReason(conv, g);
    skipped.push({ node: names.get(conv)!, reason });
  }

  for (const grp of groups) if (grp.failures.length === 0 && grp.keep!.length < grp.channels) applyGroup(grp, g);
  g.pruneUnusedInitializers();

  const fresh = checkConvShapes(out).filter((p) => !problemsBefore.has(p));
  if (fresh.length > 0) throw new Error(`pruneChannels produced an inconsistent graph (this is a bug): ${fresh[0]}`);
  return { model: out, layers, skipped };
}

function checkRatio(what: string, v: number): void {
  if (!(typeof v === 'number' && v >= 0 && v < 1)) throw new RangeError(`${what} must be in [0, 1), got ${v}`);
}

/** Node display names: the name, or `OpType#index` for unnamed nodes (indices in graph order). */
function nodeNames(graph: GraphProto): Map<NodeProto, string> {
  return new Map(graph.node.map((n, i) => [n, n.name || `${n.opType}#${i}`]));
}

/**
 * Turns `Constant` nodes holding a tensor (`value` attribute) into initializers of the same name, in place, as
 * onnxruntime does on load: exporters such as paddle2onnx store every weight that way, and the pruning passes read
 * and rewrite weights as initializers. Subgraphs are left as they are.
 *
 * @param model - edited in place (pass a clone)
 */
export function liftConstants(model: ModelProto): void {
  const graph = model.graph!;
  const kept: NodeProto[] = [];
  for (const n of graph.node) {
    const value = n.attribute.find((a) => a.name === 'value')?.t;
    if (n.opType === 'Constant' && (n.domain ?? '') === '' && n.attribute.length === 1 && value) {
      graph.initializer.push(create(TensorProtoSchema, { ...value, name: n.output[0] }));
    } else {
      kept.push(n);
    }
  }
  graph.node = kept;
}

function intAttr(n: NodeProto, name: string, dflt: number): number {
  const a = n.attribute.find((x) => x.name === name);
  return a ? Number(a.i) : dflt;
}

/** Why a Conv that is in no group (it is neither a group=1 Conv nor a depthwise Conv reached by one) is left alone. */
function ownReason(conv: NodeProto, g: GraphIndex): string {
  const w = g.initializers.get(conv.input[1]);
  if (!w) return `weight '${conv.input[1]}' is not a constant`;
  const group = intAttr(conv, 'group', 1);
  if (group === 1) return 'this is a bug: a group=1 Conv with a constant weight belongs to a group';
  const [o, ipg] = dimsOf(w);
  if (group === o && ipg === 1)
    return `depthwise Conv whose input '${conv.input[0]}' does not come from a prunable Conv`;
  return `grouped Conv (group=${group}) is neither group=1 nor depthwise`;
}

/**
 * Finds the channel group of every group=1 Conv with a constant weight, by a breadth-first walk over tensors that
 * share its channel axis. The walk does not stop at the first problem, so each group is complete and every problem
 * is known (the first one is reported).
 */
function findGroups(g: GraphIndex, names: Map<NodeProto, string>): Group[] {
  const graph = g.graph;
  const outputs = new Set(graph.output.map((o) => o.name));
  const inputs = new Set(g.inputNames);
  const hidden = new Set(graph.node.flatMap((n) => [...implicitInputs(n)]));
  const initUses = new Map<string, number>();
  for (const n of graph.node) for (const i of n.input) initUses.set(i, (initUses.get(i) ?? 0) + 1);
  const owner = new Map<string, Group>();
  const groups: Group[] = [];

  for (const start of topologicalOrder(graph)) {
    if (start.opType !== 'Conv' || intAttr(start, 'group', 1) !== 1 || owner.has(start.output[0])) continue;
    const w = g.initializers.get(start.input[1]);
    if (!w) continue;
    const grp: Group = {
      channels: dimsOf(w)[0],
      tensors: new Map(),
      nodes: new Set(),
      sources: [],
      depthwise: [],
      bns: [],
      slices: [],
      constants: [],
      reshapes: [],
      failures: [],
    };
    groups.push(grp);
    const queue: string[] = [];
    const name = (n: NodeProto) => `${n.opType} '${names.get(n)}'`;
    const fail = (why: string): false => {
      if (!grp.failures.includes(why)) grp.failures.push(why);
      return false;
    };
    const add = (t: string, rank: number) => {
      const had = grp.tensors.get(t);
      if (had !== undefined) {
        if (had !== rank) fail(`'${t}' is reached with rank ${had} and ${rank}`);
        return;
      }
      const other = owner.get(t);
      if (other && other !== grp) fail(`'${t}' also belongs to another channel group`);
      grp.tensors.set(t, rank);
      owner.set(t, grp);
      queue.push(t);
    };
    /** A weight this group slices: must be a constant used by this node only. */
    const slice = (n: NodeProto, input: number, axis: number, expect: number): boolean => {
      const t = n.input[input];
      if (!t) return true;
      const init = g.initializers.get(t);
      if (!init) return fail(`${name(n)} input '${t}' is not a constant`);
      if ((initUses.get(t) ?? 0) > 1 || hidden.has(t)) return fail(`weight '${t}' is shared by several nodes`);
      const dims = dimsOf(init);
      if (dims[axis] !== expect) {
        return fail(`${name(n)} input '${t}' has ${dims[axis]} entries on axis ${axis}, expected ${expect}`);
      }
      if (!grp.slices.some((s) => s.tensor === t && s.axis === axis)) grp.slices.push({ tensor: t, axis, group: grp });
      return true;
    };
    const C = grp.channels;

    const visit = (n: NodeProto, t: string, rank: number) => {
      const viaOutput = n.output.includes(t);
      // Once per group: visiting a node handles all of its channel-carrying inputs and outputs at once.
      if (grp.nodes.has(n)) return;
      grp.nodes.add(n);
      const op = (n.domain ?? '') === '' ? n.opType : `${n.domain}.${n.opType}`;
      if (op === 'Conv') {
        const w = g.initializers.get(n.input[1]);
        if (!w) return fail(`${name(n)} has a non-constant weight`);
        const dims = dimsOf(w);
        const group = intAttr(n, 'group', 1);
        if (dims.length !== rank) fail(`${name(n)} has a rank-${dims.length} weight for a rank-${rank} tensor`);
        if (group === 1 && viaOutput) {
          grp.sources.push(n);
          if (slice(n, 1, 0, C)) slice(n, 2, 0, C);
        } else if (group === 1 && t === n.input[0]) {
          slice(n, 1, 1, C); // a sink: fewer input channels
        } else if (group === dims[0] && dims[1] === 1 && group === C) {
          grp.depthwise.push(n);
          if (slice(n, 1, 0, C)) slice(n, 2, 0, C);
          add(n.input[0], rank);
          add(n.output[0], rank);
        } else {
          fail(`${name(n)} is a grouped Conv (group=${group}, weight [${dims.join(',')}]) that is not depthwise`);
        }
        return;
      }
      if (op === 'BatchNormalization') {
        if (n.output.slice(1).some((o) => o !== '')) return fail(`${name(n)} is in training mode (extra outputs)`);
        grp.bns.push(n);
        for (let i = 1; i <= 4; i++) slice(n, i, 0, C);
        add(n.input[0], rank);
        add(n.output[0], rank);
        return;
      }
      if (UNARY.has(op)) {
        if (n.output.slice(1).some((o) => o !== '' && (g.consumers.get(o)?.length || outputs.has(o)))) {
          return fail(`${name(n)} has a second output in use`);
        }
        // Clip's min/max (opset >= 11) must be scalars: they do not carry channels.
        for (const extra of n.input.slice(1)) {
          const c = extra && g.initializers.get(extra);
          if (extra && (!c || elementCount(c) !== 1)) return fail(`${name(n)} has a non-scalar input '${extra}'`);
        }
        add(n.input[0], rank);
        add(n.output[0], rank);
        return;
      }
      if (BINARY.has(op)) {
        n.input.forEach((x, i) => {
          const c = g.initializers.get(x);
          if (!c) return add(x, rank);
          if (elementCount(c) === 1) return;
          const dims = dimsOf(c);
          const axis = 1 - (rank - dims.length);
          if (dims.length > rank) return fail(`${name(n)} constant '${x}' has a higher rank than the tensor`);
          if (axis < 0 || dims[axis] === 1) return; // broadcast along channels
          if (dims[axis] !== C) return fail(`${name(n)} constant '${x}' has ${dims[axis]} channels, expected ${C}`);
          grp.constants.push({ node: n, input: i, axis });
        });
        add(n.output[0], rank);
        return;
      }
      if (POOLS.has(op)) {
        if (n.output.slice(1).some((o) => o !== '')) return fail(`${name(n)} has an indices output`);
        add(n.input[0], rank);
        add(n.output[0], rank);
        return;
      }
      if ((op === 'Flatten' || op === 'Reshape') && !viaOutput && t === n.input[0]) {
        // Only [N, C, 1, 1] -> [N, C] keeps the channel axis intact: a spatial extent would interleave channels.
        if (!spatiallyOne(g, t)) return fail(`${name(n)} flattens '${t}', which is not the output of a global pool`);
        if (op === 'Flatten' && intAttr(n, 'axis', 1) !== 1) return fail(`${name(n)} has axis != 1`);
        if (op === 'Reshape') {
          const s = g.initializers.get(n.input[1]);
          const shape = s ? readInts(s) : undefined;
          if (!shape || shape.length !== 2) return fail(`${name(n)} does not reshape to a constant rank-2 shape`);
          const [a, b] = shape;
          if (b === C && (a === 0 || a === -1)) grp.reshapes.push(n);
          else if (!(b === -1 && a >= 0)) return fail(`${name(n)} reshapes to [${shape.join(',')}]`);
        }
        add(n.output[0], 2);
        return;
      }
      if ((op === 'Gemm' || op === 'MatMul') && !viaOutput && t === n.input[0] && n.input[1] !== t) {
        if (rank !== 2) return fail(`${name(n)} reads the rank-${rank} tensor '${t}'`);
        if (op === 'Gemm' && intAttr(n, 'transA', 0) !== 0) return fail(`${name(n)} has transA=1`);
        const b = g.initializers.get(n.input[1]);
        if (!b || dimsOf(b).length !== 2) return fail(`${name(n)} has no constant 2-D weight`);
        slice(n, 1, op === 'Gemm' && intAttr(n, 'transB', 0) === 1 ? 1 : 0, C);
        return;
      }
      fail(`channels reach ${name(n)}${viaOutput ? ' (as its output)' : ''}, which pruning does not rewrite`);
    };

    add(start.output[0], dimsOf(w).length);
    while (queue.length > 0) {
      const t = queue.shift()!;
      const rank = grp.tensors.get(t)!;
      if (outputs.has(t)) fail(`'${t}' is a graph output`);
      if (inputs.has(t)) fail(`'${t}' is a graph input`);
      if (hidden.has(t)) fail(`'${t}' is read inside a subgraph`);
      const p = g.producers.get(t);
      if (p) visit(p, t, rank);
      else if (!inputs.has(t)) fail(`'${t}' has no producer`);
      for (const c of g.consumers.get(t) ?? []) visit(c, t, rank);
    }
  }
  return groups;
}

/** True when `t` comes from a global pool, possibly through element-wise ops with constants (spatial size 1x1). */
function spatiallyOne(g: GraphIndex, t: string): boolean {
  for (let p = g.producers.get(t); p;) {
    if (GLOBAL_POOLS.has(p.opType)) return true;
    const live = p.input.filter((x) => x && !g.initializers.has(x));
    if (!(UNARY.has(p.opType) || BINARY.has(p.opType)) || live.length !== 1) return false;
    p = g.producers.get(live[0]);
  }
  return false;
}

/** Ranks the group's channels and keeps the top ones; `keep` is sorted in channel order. */
function chooseChannels(grp: Group, g: GraphIndex, ratio: number, minChannels: number, importance: string): void {
  const C = grp.channels;
  const vectors: Float64Array[] = [];
  if (importance === 'bn-gamma' && grp.bns.length > 0) {
    grp.importance = 'bn-gamma';
    for (const bn of grp.bns) vectors.push(Float64Array.from(readFloats(g.initializers.get(bn.input[1])!), Math.abs));
  } else {
    grp.importance = importance === 'bn-gamma' ? 'l1 (no BatchNormalization)' : 'l1';
    for (const conv of grp.sources) {
      const w = readFloats(g.initializers.get(conv.input[1])!);
      const per = w.length / C;
      const v = new Float64Array(C);
      for (let o = 0; o < C; o++) for (let k = o * per; k < (o + 1) * per; k++) v[o] += Math.abs(w[k]);
      vectors.push(v);
    }
  }
  const score = new Float64Array(C);
  for (const v of vectors) {
    const mean = v.reduce((a, b) => a + b, 0) / C;
    for (let c = 0; c < C; c++) score[c] += vectors.length > 1 && mean > 0 ? v[c] / mean : v[c];
  }
  const removed = Math.floor(ratio * C + 1e-9);
  const keepCount = Math.max(C - removed, Math.min(minChannels, C));
  // Ties go to the lower channel index, so the choice is deterministic.
  const order = [...score.keys()].sort((a, b) => score[a] - score[b] || a - b);
  grp.keep = order.slice(C - keepCount).sort((a, b) => a - b);
}

/** Rewrites every initializer, attribute and annotation of one group to its kept channels. */
function applyGroup(grp: Group, g: GraphIndex): void {
  const keep = grp.keep!;
  for (const s of grp.slices) g.setInitializer(sliceAxis(g.initializers.get(s.tensor)!, s.axis, keep));
  for (const { node: n, input, axis } of grp.constants) {
    const c = g.initializers.get(n.input[input])!;
    const copy = sliceAxis(c, axis, keep);
    copy.name = g.freshName(`${c.name}_pruned`);
    g.setInitializer(copy);
    n.input[input] = copy.name;
  }
  for (const n of grp.depthwise) n.attribute.find((a) => a.name === 'group')!.i = BigInt(keep.length);
  for (const n of grp.reshapes) {
    const s = g.initializers.get(n.input[1])!;
    const name = g.freshName(`${s.name}_pruned`);
    g.setInitializer(create(TensorProtoSchema, { ...shapeTensor(readInts(s)[0], keep.length), name }));
    n.input[1] = name;
  }
  // Shapes recorded for the group's tensors are stale: fix the channel dim when it is a fixed size, else drop them.
  const graph = g.graph;
  graph.valueInfo = graph.valueInfo.filter((vi) => {
    if (!grp.tensors.has(vi.name)) return true;
    const dim = vi.type?.value.case === 'tensorType' ? vi.type.value.value.shape?.dim[1] : undefined;
    if (dim?.value.case !== 'dimValue' || Number(dim.value.value) !== grp.channels) return false;
    dim.value.value = BigInt(keep.length);
    return true;
  });
}

function shapeTensor(batch: number, channels: number): TensorProto {
  const raw = new Uint8Array(new BigInt64Array([BigInt(batch), BigInt(channels)]).buffer);
  return create(TensorProtoSchema, { dims: [2n], dataType: DataType.INT64, rawData: raw });
}

const WIDTH: Partial<Record<DataType, number>> = {
  [DataType.FLOAT]: 4,
  [DataType.DOUBLE]: 8,
  [DataType.FLOAT16]: 2,
  [DataType.BFLOAT16]: 2,
  [DataType.INT64]: 8,
  [DataType.INT32]: 4,
  [DataType.INT8]: 1,
  [DataType.UINT8]: 1,
};

/**
 * The little-endian element bytes of a dense initializer, whichever field stores them (`raw_data` or a typed field),
 * and the element width. The bytes may be a view of the tensor's own storage: copy before writing.
 *
 * @throws for external data and for element types other than float, double, float16, bfloat16, int8/32/64, uint8
 */
export function elementBytes(t: TensorProto): { bytes: Uint8Array; width: number } {
  const width = WIDTH[t.dataType as DataType];
  if (!width) throw new Error(`initializer '${t.name}' has type ${DataType[t.dataType]}, which pruning cannot slice`);
  if (t.rawData.length > 0) return { bytes: t.rawData, width };
  if (t.externalData.length > 0) throw new Error(`initializer '${t.name}' is stored as external data`);
  const n = elementCount(t);
  switch (t.dataType) {
    case DataType.FLOAT:
      return { bytes: new Uint8Array(Float32Array.from(t.floatData).buffer), width };
    case DataType.DOUBLE:
      return { bytes: new Uint8Array(Float64Array.from(t.doubleData).buffer), width };
    case DataType.INT64:
      return { bytes: new Uint8Array(BigInt64Array.from(t.int64Data).buffer), width };
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
      return { bytes: new Uint8Array(Uint16Array.from(t.int32Data).buffer), width };
    default: {
      const a = t.dataType === DataType.INT32 ? Int32Array.from(t.int32Data) : Int8Array.from(t.int32Data);
      return { bytes: new Uint8Array(a.buffer, 0, n * width), width };
    }
  }
}

/**
 * A copy of `t` keeping only the given indices along `axis` (same name, same element type, stored as raw data).
 *
 * @param t - a dense initializer
 * @param axis - the axis to slice
 * @param keep - indices to keep, in the order they should appear
 */
export function sliceAxis(t: TensorProto, axis: number, keep: readonly number[]): TensorProto {
  const dims = dimsOf(t);
  const { bytes, width } = elementBytes(t);
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1) * width;
  const out = new Uint8Array(outer * keep.length * inner);
  let at = 0;
  for (let o = 0; o < outer; o++) {
    for (const k of keep) {
      const from = (o * dims[axis] + k) * inner;
      out.set(bytes.subarray(from, from + inner), at);
      at += inner;
    }
  }
  dims[axis] = keep.length;
  return create(TensorProtoSchema, { name: t.name, dims: dims.map(BigInt), dataType: t.dataType, rawData: out });
}

/**
 * Checks that channel counts agree along the graph, as far as they can be inferred statically: every Conv's weight
 * [O, I/group, ...] and bias [O] against its input channels, BatchNormalization parameters, per-channel constants of
 * element-wise ops, and the weight of a Gemm/MatMul fed by GlobalPool -> Flatten/Reshape. Channel counts start at
 * the graph inputs' fixed dim 1 and at Conv outputs. Sizes that cannot be inferred are not checked.
 *
 * @param model - the model to check (not modified)
 * @returns one line per inconsistency; empty when none is found
 */
export function checkConvShapes(model: ModelProto): string[] {
  const m = cloneModel(model);
  liftConstants(m);
  const g = new GraphIndex(m);
  const names = nodeNames(g.graph);
  const problems: string[] = [];
  // Per tensor: channel count (axis 1), rank, and whether its spatial extent is 1x1 (after a global pool).
  const info = new Map<string, { c?: number; rank?: number; one?: boolean }>();
  for (const vi of g.graph.input) {
    const t = vi.type?.value.case === 'tensorType' ? vi.type.value.value : undefined;
    const d = t?.shape?.dim[1];
    info.set(vi.name, {
      c: d?.value.case === 'dimValue' ? Number(d.value.value) : undefined,
      rank: t?.shape?.dim.length,
    });
  }
  const dimsOfInit = (x: string) => {
    const t = g.initializers.get(x);
    return t ? dimsOf(t) : undefined;
  };
  for (const n of topologicalOrder(g.graph)) {
    const where = `${n.opType} '${names.get(n)}'`;
    const x = info.get(n.input[0]) ?? {};
    const expect = (what: string, got: number | undefined, want: number | undefined) => {
      if (got !== undefined && want !== undefined && got !== want) {
        problems.push(`${where}: ${what} is ${got}, expected ${want}`);
      }
    };
    let y: { c?: number; rank?: number; one?: boolean } = {};
    const op = n.opType;
    if (op === 'Conv') {
      const w = dimsOfInit(n.input[1]);
      const group = intAttr(n, 'group', 1);
      if (w) {
        expect('weight dim 1 x group', w[1] * group, x.c);
        if (w[0] % group !== 0) problems.push(`${where}: ${w[0]} output channels not divisible by group ${group}`);
        if (n.input[2]) expect('bias length', dimsOfInit(n.input[2])?.[0], w[0]);
        y = { c: w[0], rank: w.length };
      }
    } else if (op === 'BatchNormalization') {
      for (let i = 1; i <= 4; i++) expect(`input ${i} length`, dimsOfInit(n.input[i])?.[0], x.c);
      y = { ...x };
    } else if (UNARY.has(op) || POOLS.has(op)) {
      y = { ...x, one: GLOBAL_POOLS.has(op) || (x.one && !POOLS.has(op)) };
    } else if (BINARY.has(op)) {
      const live = n.input.filter((i) => !g.initializers.has(i)).map((i) => info.get(i) ?? {});
      const rank = live.find((l) => l.rank !== undefined)?.rank;
      let c = live.map((l) => l.c).find((v) => v !== undefined && v !== 1);
      for (const l of live) if (l.c !== undefined && l.c !== 1 && c !== undefined) expect('channel count', l.c, c);
      for (const i of n.input) {
        const d = g.initializers.has(i) ? dimsOfInit(i)! : undefined;
        if (!d || rank === undefined || d.length > rank) continue;
        const axis = 1 - (rank - d.length);
        if (axis >= 0 && d[axis] !== 1) {
          if (c === undefined) c = d[axis];
          else expect(`constant '${i}' channels`, d[axis], c);
        }
      }
      y = { c, rank, one: live.every((l) => l.one) };
    } else if ((op === 'Flatten' && intAttr(n, 'axis', 1) === 1) || op === 'Reshape') {
      const s = op === 'Reshape' ? g.initializers.get(n.input[1]) : undefined;
      const shape = s ? readInts(s) : undefined;
      if (op === 'Flatten') y = { c: x.one ? x.c : undefined, rank: 2 };
      else if (shape?.length === 2 && shape[1] > 0) y = { c: shape[1], rank: 2 };
      else if (shape?.length === 2 && shape[1] === -1 && shape[0] >= 0 && x.one) y = { c: x.c, rank: 2 };
    } else if (op === 'Gemm' || op === 'MatMul') {
      const b = dimsOfInit(n.input[1]);
      if (b?.length === 2 && x.rank === 2 && !(op === 'Gemm' && intAttr(n, 'transA', 0) === 1)) {
        expect('weight input dim', b[op === 'Gemm' && intAttr(n, 'transB', 0) === 1 ? 1 : 0], x.c);
      }
    }
    info.set(n.output[0], y);
  }
  return problems;
}
