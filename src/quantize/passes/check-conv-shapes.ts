import type { ModelProto } from '../../onnx/model.js';
import { cloneModel, dimsOf, GraphIndex, liftConstants, nodeNames, readInts, topologicalOrder } from '../graph.js';
import { BINARY, GLOBAL_POOLS, intAttr, POOLS, UNARY } from './channel-groups.js';

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
