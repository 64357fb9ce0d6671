import t from 'tap';
import { DataType, makeGraph, makeModel, node, tensor, valueInfo, type ModelProto } from '../../src/onnx/model.js';
import { pruneChannels } from '../../src/quantize/passes/prune-structured.js';
import { refitSinks } from '../../src/quantize/refit-sinks.js';
import { gaussian, mulberry32, runFloat } from '../helpers/models.js';

// Pruning with reconstruction on a real graph through onnxruntime: a chain of convolutions, half of each group's
// channels removed, then every layer that read them refit in graph order. On inputs the refit never saw, the
// pruned and refit model's output is closer to the original's than the pruned one's.

const r = mulberry32(11);
const conv = (name: string, input: string, out: number, inC: number, k: number) => {
  const pad = (k - 1) / 2;
  return {
    node: node(
      'Conv',
      [input, `${name}_w`, `${name}_b`],
      [name],
      { kernel_shape: [k, k], pads: [pad, pad, pad, pad] },
      { name },
    ),
    weights: [
      tensor(`${name}_w`, [out, inC, k, k], gaussian(out * inC * k * k, 0.35, r)),
      tensor(`${name}_b`, [out], gaussian(out, 0.1, r)),
    ],
  };
};
const c1 = conv('c1', 'x', 8, 3, 3);
const c2 = conv('c2', 'r1', 8, 8, 3);
const c3 = conv('c3', 'r2', 5, 8, 1);
const model = makeModel({
  graph: makeGraph({
    name: 'chain',
    nodes: [c1.node, node('Relu', ['c1'], ['r1']), c2.node, node('Relu', ['c2'], ['r2']), c3.node],
    inputs: [valueInfo('x', DataType.FLOAT, [1, 3, 10, 10])],
    outputs: [valueInfo('c3', DataType.FLOAT)],
    initializers: [...c1.weights, ...c2.weights, ...c3.weights],
  }),
});
const sample = () => ({
  name: 's',
  feeds: { x: { type: 'float32' as const, data: gaussian(300, 1, r), dims: [1, 3, 10, 10] } },
});

t.test('refit sinks: closer to the original on held-out inputs than pruning alone', async (t) => {
  const calibration = Array.from({ length: 40 }, sample);
  const heldOutInputs = Array.from({ length: 8 }, sample);
  const plain = pruneChannels(model, { ratio: 0.5 });
  const refit = pruneChannels(model, { ratio: 0.5 });
  t.same(
    refit.sinks.map((s) => [s.node.name, s.keptInputs.length, s.keptOutputs?.length]),
    [
      ['c2', 4, 4],
      ['c3', 4, undefined],
    ],
    'the layers that read pruned channels, with what they keep',
  );
  const report = await refitSinks(model, refit, calibration);
  t.equal(report.length, 2);
  for (const l of report) t.ok(l.refit! < l.pruned!, `${l.node}: ${l.pruned!.toFixed(3)} -> ${l.refit!.toFixed(3)}`);
  const e = await heldOut(model, plain.model, refit.model, heldOutInputs, 'c3');
  t.ok(
    e.refit < 0.7 * e.plain,
    `held-out relative squared error: ${(e.plain / e.energy).toFixed(3)} -> ${(e.refit / e.energy).toFixed(3)}`,
  );
});

for (const head of ['Gemm (transB)', 'Gemm', 'MatMul'] as const) {
  t.test(`a ${head} after a global pool is refit in its own layout`, async (t) => {
    const q = mulberry32(21);
    const first = conv('f', 'x', 8, 3, 3);
    const [K, N] = [8, 5];
    const transB = head === 'Gemm (transB)';
    const w = gaussian(K * N, 0.5, q);
    const headNodes =
      head === 'MatMul'
        ? [node('MatMul', ['flat', 'hw'], ['mm']), node('Add', ['mm', 'hb'], ['y'])]
        : [node('Gemm', ['flat', 'hw', 'hb'], ['y'], transB ? { transB: 1 } : {}, { name: 'head' })];
    const m = makeModel({
      graph: makeGraph({
        name: 'head',
        nodes: [
          first.node,
          node('Relu', ['f'], ['fr']),
          node('GlobalAveragePool', ['fr'], ['pool']),
          node('Flatten', ['pool'], ['flat']),
          ...headNodes,
        ],
        inputs: [valueInfo('x', DataType.FLOAT, [1, 3, 10, 10])],
        outputs: [valueInfo('y', DataType.FLOAT)],
        initializers: [
          ...first.weights,
          tensor('hw', transB ? [N, K] : [K, N], w),
          tensor('hb', [N], gaussian(N, 0.1, q)),
        ],
      }),
    });
    const draw = () => ({
      name: 's',
      feeds: { x: { type: 'float32' as const, data: gaussian(300, 1, q), dims: [1, 3, 10, 10] } },
    });
    const calibration = Array.from({ length: 60 }, draw);
    const plain = pruneChannels(m, { ratio: 0.5 });
    const refit = pruneChannels(m, { ratio: 0.5 });
    t.same(
      refit.sinks.map((s) => s.node.opType),
      [head === 'MatMul' ? 'MatMul' : 'Gemm'],
    );
    const [l] = await refitSinks(m, refit, calibration);
    t.notOk(l.skipped, `refit (${l.skipped ?? ''})`);
    const e = await heldOut(m, plain.model, refit.model, Array.from({ length: 10 }, draw), 'y');
    t.ok(e.refit < 0.5 * e.plain, `held-out squared error ${e.plain.toFixed(3)} -> ${e.refit.toFixed(3)}`);
  });
}

/** Squared errors of the pruned and the refit model's `output` against the original's, and its energy, summed. */
async function heldOut(
  original: ModelProto,
  plain: ModelProto,
  refit: ModelProto,
  samples: readonly { feeds: { x: { data: Float32Array; dims: readonly number[] } } }[],
  output: string,
): Promise<{ plain: number; refit: number; energy: number }> {
  const sums = { plain: 0, refit: 0, energy: 0 };
  for (const s of samples) {
    const input = { name: 'x', data: s.feeds.x.data, dims: [...s.feeds.x.dims] };
    const want = await runFloat(original, input, output);
    const a = await runFloat(plain, input, output);
    const b = await runFloat(refit, input, output);
    want.forEach((v, i) => {
      sums.plain += (a[i] - v) ** 2;
      sums.refit += (b[i] - v) ** 2;
      sums.energy += v * v;
    });
  }
  return sums;
}
