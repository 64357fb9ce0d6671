import { create } from '@bufbuild/protobuf';
import type { ModelProto, NodeProto, TensorProto } from '../../onnx/model.js';
import { DataType } from '../../onnx/model.js';
import { TensorProtoSchema } from '../../onnx/proto/onnx_pb.js';
import { cloneModel, dimsOf, GraphIndex, liftConstants, nodeNames, readFloats, readInts } from '../graph.js';
import { findGroups, intAttr, ownReason, type Group } from './channel-groups.js';
import { checkConvShapes } from './check-conv-shapes.js';
import { selectByReconstruction, type Reader } from './prune-select.js';
import { sliceAxis } from './slice-tensor.js';

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
   * `activation`: what each channel feeds the layers that read it, measured on data: for every sink (a group=1 Conv,
   * Gemm or MatMul whose weight loses the channel), the channel's mean square in the sink's input ({@link
   * PruneChannelsOptions.inputStats}) times the squared norm of the sink's weights on it (the output energy the
   * channel alone contributes); summed over sinks, each divided by its mean. `reconstruction`: the channels whose
   * removal the sinks, refit on the others, feel least (greedy, with the Gram matrices of the sinks' inputs; see
   * prune-select.ts); only where every sink is pointwise (a 1 x 1 Conv, a Gemm, a MatMul), else `activation`. A
   * group with a sink whose input has no statistics falls back to `l1`.
   */
  importance?: 'l1' | 'bn-gamma' | 'activation' | 'reconstruction';
  /**
   * For `activation` and `reconstruction`: statistics of the input tensors of the model's group=1 Convs, Gemms and
   * MatMuls on calibration data, by tensor name (see quantize/prune-energy.ts).
   */
  inputStats?: ReadonlyMap<string, InputStats>;
  /**
   * Conv node names whose output channels must not change; their whole group is left alone. (Their input channels
   * still follow a pruned producer.) Names of other nodes are ignored.
   */
  excludeNodes?: string[];
  /** Channels kept per group, at least. Default 1. */
  minChannels?: number;
}

/** A tensor's statistics on calibration data, for data-driven channel ranking. */
export interface InputStats {
  /** Mean square of each channel (axis 1). */
  readonly meanSquare: Float64Array;
  /** Gram matrix [C + 1, C + 1] of the channels and a constant 1, row-major (pointwise readers' inputs only). */
  readonly gram?: Float64Array;
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

/**
 * A layer that reads a pruned group: its weight lost input channels. What it computed from the removed channels can
 * be partly recovered by refitting its weights on calibration data (see refit.ts and quantize/refit-sinks.ts).
 */
export interface PrunedSink {
  /** The layer (in the pruned model; same name as in the original). */
  readonly node: NodeProto;
  /** Input channels kept, as indices of the original's. */
  readonly keptInputs: readonly number[];
  /** Output channels kept, when the layer is also a pruned group's source; undefined: all. */
  readonly keptOutputs?: readonly number[];
}

/** What {@link pruneChannels} did. */
export interface PruneChannelsResult {
  /** The pruned model (a new ModelProto; the input is not modified). */
  model: ModelProto;
  /** Convs whose output channels were (or could be) pruned, sources and depthwise alike. */
  layers: PrunedLayer[];
  /** Convs left alone, with the reason. */
  skipped: SkippedLayer[];
  /** Group=1 Convs, Gemms and MatMuls whose weight lost input channels. */
  sinks: PrunedSink[];
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
  if (!['l1', 'bn-gamma', 'activation', 'reconstruction'].includes(importance)) {
    throw new RangeError(
      `importance must be 'l1', 'bn-gamma', 'activation' or 'reconstruction', got '${String(importance)}'`,
    );
  }
  if ((importance === 'activation' || importance === 'reconstruction') && !opts.inputStats)
    throw new RangeError(`importance '${importance}' needs inputStats`);

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
    chooseChannels(grp, g, r, minChannels, importance, opts.inputStats);
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

  const pruned = groups.filter((grp) => grp.failures.length === 0 && grp.keep!.length < grp.channels);
  const sinks = sinksOf(pruned, g);
  for (const grp of pruned) applyGroup(grp, g);
  g.pruneUnusedInitializers();

  const fresh = checkConvShapes(out).filter((p) => !problemsBefore.has(p));
  if (fresh.length > 0) throw new Error(`pruneChannels produced an inconsistent graph (this is a bug): ${fresh[0]}`);
  return { model: out, layers, skipped, sinks };
}

/** The layers whose weight a pruned group slices along its input axis: group=1 Convs (dim 1), Gemms and MatMuls. */
function sinksOf(pruned: readonly Group[], g: GraphIndex): PrunedSink[] {
  const outputsKept = new Map<NodeProto, number[]>();
  for (const grp of pruned) for (const n of grp.sources) outputsKept.set(n, grp.keep!);
  const sinks: PrunedSink[] = [];
  for (const grp of pruned)
    for (const slice of grp.slices)
      for (const n of g.consumers.get(slice.tensor) ?? []) {
        if (n.input[1] !== slice.tensor) continue;
        const conv = n.opType === 'Conv' && intAttr(n, 'group', 1) === 1 && slice.axis === 1;
        if (conv || n.opType === 'Gemm' || n.opType === 'MatMul')
          sinks.push({ node: n, keptInputs: grp.keep!, keptOutputs: outputsKept.get(n) });
      }
  return sinks;
}

function checkRatio(what: string, v: number): void {
  if (!(typeof v === 'number' && v >= 0 && v < 1)) throw new RangeError(`${what} must be in [0, 1), got ${v}`);
}

/** Ranks the group's channels and keeps the top ones; `keep` is sorted in channel order. */
function chooseChannels(
  grp: Group,
  g: GraphIndex,
  ratio: number,
  minChannels: number,
  importance: string,
  stats: ReadonlyMap<string, InputStats> | undefined,
): void {
  const C = grp.channels;
  const removed = Math.floor(ratio * C + 1e-9);
  const keepCount = Math.max(C - removed, Math.min(minChannels, C));
  let vectors: Float64Array[] = [];
  if (importance === 'reconstruction') {
    const readers = stats && readersOf(grp, g, stats);
    if (readers) {
      grp.importance = 'reconstruction';
      grp.keep = selectByReconstruction(readers, C, C - keepCount);
      return;
    }
  }
  if (importance === 'activation' || importance === 'reconstruction') {
    const v = stats && outputEnergy(grp, g, stats);
    if (v) {
      grp.importance = 'activation';
      vectors = v;
    } else {
      grp.importance = 'l1 (no activation data for a layer reading it)';
    }
  }
  if (vectors.length > 0) {
    // scored above
  } else if (importance === 'bn-gamma' && grp.bns.length > 0) {
    grp.importance = 'bn-gamma';
    for (const bn of grp.bns) vectors.push(Float64Array.from(readFloats(g.initializers.get(bn.input[1])!), Math.abs));
  } else {
    if (importance === 'l1' || importance === 'bn-gamma')
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
  // Ties go to the lower channel index, so the choice is deterministic.
  const order = [...score.keys()].sort((a, b) => score[a] - score[b] || a - b);
  grp.keep = order.slice(C - keepCount).sort((a, b) => a - b);
}

/**
 * Per sink of the group (a layer whose weight loses the group's channels along `slice.axis`), the output energy each
 * channel contributes: its mean square in the sink's input times the sum of squares of the sink's weights on it.
 * Undefined when the group has no sink, or a sink's input has no energy recorded.
 */
function outputEnergy(grp: Group, g: GraphIndex, stats: ReadonlyMap<string, InputStats>): Float64Array[] | undefined {
  const C = grp.channels;
  const out: Float64Array[] = [];
  for (const { node, slice } of groupSinks(grp, g)) {
    const e = stats.get(node.input[0])?.meanSquare;
    if (!e || e.length !== C) return undefined;
    const w = g.initializers.get(slice.tensor)!;
    const dims = dimsOf(w);
    const values = readFloats(w);
    const inner = dims.slice(slice.axis + 1).reduce((a, b) => a * b, 1);
    const v = new Float64Array(C);
    for (let i = 0; i < values.length; i++) v[Math.floor(i / inner) % C] += values[i] * values[i];
    for (let c = 0; c < C; c++) v[c] *= e[c];
    out.push(v);
  }
  return out.length > 0 ? out : undefined;
}

/** The layers whose weight loses the group's channels along an input axis, with that weight's slice. */
function groupSinks(grp: Group, g: GraphIndex): { node: NodeProto; slice: Group['slices'][number] }[] {
  const out: { node: NodeProto; slice: Group['slices'][number] }[] = [];
  for (const slice of grp.slices)
    for (const n of g.consumers.get(slice.tensor) ?? []) {
      if (n.input[1] !== slice.tensor) continue;
      const conv = n.opType === 'Conv' && intAttr(n, 'group', 1) === 1 && slice.axis === 1;
      if (conv || n.opType === 'Gemm' || n.opType === 'MatMul') out.push({ node: n, slice });
    }
  return out;
}

/**
 * The group's sinks as {@link Reader}s of its channels (weight [C + 1, M], a zero bias row), when every one is
 * pointwise and its input has a Gram matrix; else undefined.
 */
function readersOf(grp: Group, g: GraphIndex, stats: ReadonlyMap<string, InputStats>): Reader[] | undefined {
  const C = grp.channels;
  const readers: Reader[] = [];
  for (const { node: n, slice } of groupSinks(grp, g)) {
    const gram = stats.get(n.input[0])?.gram;
    if (!gram || gram.length !== (C + 1) * (C + 1)) return undefined;
    const w = g.initializers.get(slice.tensor)!;
    const dims = dimsOf(w);
    const values = readFloats(w);
    // [M, C, 1, 1] (Conv) or [N, K] (Gemm transB): channel on axis 1; [K, N] (MatMul, Gemm): channel on axis 0
    const pointwise = n.opType !== 'Conv' || (dims.length === 4 && dims[2] === 1 && dims[3] === 1);
    if (!pointwise || dims[slice.axis] !== C) return undefined;
    const M = values.length / C;
    const weight = new Float64Array((C + 1) * M);
    for (let i = 0; i < values.length; i++) {
      const [m, c] = slice.axis === 1 ? [Math.floor(i / C), i % C] : [i % M, Math.floor(i / M)];
      weight[c * M + m] = values[i];
    }
    readers.push({ weight, outputs: M, gram });
  }
  return readers.length > 0 ? readers : undefined;
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
