import type { ModelProto, NodeProto } from '../onnx/model.js';
import { exposedSession } from './calibrate.js';
import type { Sample } from './dataset.js';
import { dimsOf, GraphIndex } from './graph.js';
import { intAttr } from './passes/channel-groups.js';
import type { InputStats } from './passes/prune-structured.js';

/**
 * Positions of one input's feature map that go into a Gram matrix, at most (evenly spaced); the mean squares use
 * every position.
 */
const GRAM_POSITIONS = 64;

/** A layer channel pruning may slice along its input: a group=1 Conv, a Gemm or a MatMul with a constant weight. */
function isSink(n: NodeProto, g: GraphIndex): boolean {
  if (!g.initializers.has(n.input[1])) return false;
  return (n.opType === 'Conv' && intAttr(n, 'group', 1) === 1) || n.opType === 'Gemm' || n.opType === 'MatMul';
}

/** A sink whose output at a position reads its input at that position only (a 1 x 1 Conv, a Gemm, a MatMul). */
function isPointwise(n: NodeProto, g: GraphIndex): boolean {
  if (n.opType !== 'Conv') return true;
  const d = dimsOf(g.initializers.get(n.input[1])!);
  return d.length === 4 && d[2] === 1 && d[3] === 1;
}

/**
 * The data `--prune-importance activation | reconstruction` ranks channels by (passes/prune-structured.ts), for the
 * input of every group=1 Conv, Gemm and MatMul with a constant weight, by tensor name: each channel's mean square
 * (axis 1; over the batch, the spatial positions and every calibration sample), and for the inputs of pointwise
 * layers only (1 x 1 Convs, Gemms, MatMuls) with `gram`, the Gram matrix of the channels and a constant 1 (the
 * bias), over sampled positions. The model is run as it is given (the one that will be pruned), graph optimizations
 * off, one sample at a time.
 */
export async function inputStats(
  model: ModelProto,
  samples: readonly Sample[],
  { gram = false }: { gram?: boolean } = {},
): Promise<Map<string, InputStats>> {
  if (samples.length === 0) throw new RangeError('inputStats needs calibration samples');
  const g = new GraphIndex(model);
  const sinks = g.graph.node.filter((n) => isSink(n, g));
  const tensors = [...new Set(sinks.map((n) => n.input[0]))];
  // a Gram matrix only where every reader is pointwise: one reading through a 3 x 3 kernel sees more than a channel
  const grams = new Set(
    gram ? tensors.filter((t) => sinks.filter((n) => n.input[0] === t).every((n) => isPointwise(n, g))) : [],
  );
  const inputs = new Set(g.inputNames);
  const fetched = tensors.filter((t) => !inputs.has(t));
  const session = await exposedSession(model, fetched);
  const acc = new Map<string, { sum: Float64Array; count: number; gram?: Float64Array; rows: number }>();
  try {
    for (const sample of samples) {
      const out = await session.run(sample.feeds, fetched);
      for (const name of tensors) {
        const t = inputs.has(name) ? sample.feeds[name] : out[name];
        if (!t || !(t.data instanceof Float32Array) || t.dims.length < 2) continue;
        const [n, c] = t.dims;
        const inner = t.dims.slice(2).reduce((a, b) => a * b, 1);
        let s = acc.get(name);
        if (!s) {
          s = { sum: new Float64Array(c), count: 0, rows: 0 };
          if (grams.has(name)) s.gram = new Float64Array((c + 1) * (c + 1));
          acc.set(name, s);
        }
        if (s.sum.length !== c) continue;
        const d = t.data;
        for (let b = 0; b < n; b++)
          for (let ch = 0; ch < c; ch++) {
            let sq = 0;
            for (let i = (b * c + ch) * inner, end = i + inner; i < end; i++) sq += d[i] * d[i];
            s.sum[ch] += sq;
          }
        s.count += n * inner;
        if (s.gram) {
          const D = c + 1;
          const f = new Float64Array(D);
          const take = Math.min(inner, GRAM_POSITIONS);
          for (let b = 0; b < n; b++)
            for (let r = 0; r < take; r++) {
              const p = Math.floor((r * inner) / take);
              for (let ch = 0; ch < c; ch++) f[ch] = d[(b * c + ch) * inner + p];
              f[c] = 1;
              for (let i = 0; i < D; i++) {
                const fi = f[i];
                if (fi === 0) continue;
                for (let j = i; j < D; j++) s.gram[i * D + j] += fi * f[j];
              }
              s.rows++;
            }
        }
      }
    }
  } finally {
    await session.release();
  }
  return new Map(
    [...acc].map(([name, s]) => {
      const stats: InputStats = { meanSquare: s.sum.map((v) => v / s.count) };
      if (!s.gram) return [name, stats];
      const D = s.sum.length + 1;
      const gm = new Float64Array(D * D);
      for (let i = 0; i < D; i++)
        for (let j = i; j < D; j++) gm[i * D + j] = gm[j * D + i] = s.gram[i * D + j] / s.rows;
      return [name, { ...stats, gram: gm }];
    }),
  );
}
