import type { NodeProto } from '../../onnx/model.js';
import {
  dimsOf,
  elementCount,
  type GraphIndex,
  implicitInputs,
  readFloats,
  readInts,
  topologicalOrder,
} from '../graph.js';

// The channel groups of structured pruning (see prune-structured.ts): the tensors that share one channel indexing,
// found by following the channel axis through the graph, and what each group may and may not pass through.

export const UNARY = new Set([
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
export const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Max', 'Min', 'Pow', 'PRelu']);
export const POOLS = new Set([
  'GlobalAveragePool',
  'GlobalMaxPool',
  'GlobalLpPool',
  'MaxPool',
  'AveragePool',
  'LpPool',
]);
export const GLOBAL_POOLS = new Set(['GlobalAveragePool', 'GlobalMaxPool', 'GlobalLpPool']);

/** An initializer sliced along one axis, to the kept channels of a group. */
export interface Slice {
  tensor: string;
  axis: number;
  group: Group;
}

export interface Group {
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

export function intAttr(n: NodeProto, name: string, dflt: number): number {
  const a = n.attribute.find((x) => x.name === name);
  return a ? Number(a.i) : dflt;
}

/** Why a Conv that is in no group (it is neither a group=1 Conv nor a depthwise Conv reached by one) is left alone. */
export function ownReason(conv: NodeProto, g: GraphIndex): string {
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
export function findGroups(g: GraphIndex, names: Map<NodeProto, string>): Group[] {
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
      if (op === 'Resize' || op === 'Upsample') {
        // each channel's map resampled on its own: channels pass through while the batch and channel scales are 1
        if (!viaOutput && t !== n.input[0]) return fail(`${name(n)} reads '${t}' as its roi, scales or sizes`);
        if (op === 'Resize' && n.input[3]) return fail(`${name(n)} is given output sizes, which spell the channels`);
        const c = g.initializers.get(n.input[op === 'Resize' ? 2 : 1] ?? '');
        const scales = c ? readFloats(c) : undefined;
        if (!scales || scales.length !== rank || scales[0] !== 1 || scales[1] !== 1)
          return fail(`${name(n)} does not keep its batch and channel scales at 1 (constant scales)`);
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
