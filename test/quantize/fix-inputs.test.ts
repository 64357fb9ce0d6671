import t from 'tap';
import { DataType, encodeModel, makeGraph, makeModel, node, tensor, valueInfo } from '../../src/onnx/model.js';
import { GraphIndex, topologicalOrder } from '../../src/quantize/graph.js';
import { optimizeForQuantization } from '../../src/quantize/optimize.js';
import { fixInputs } from '../../src/quantize/passes/fix-inputs.js';
import { runModel } from '../helpers/models.js';

// Silero VAD's shape: the sample rate picks a branch; the branch reads an outer weight without listing it
const branch = (name: string, weight: string) =>
  makeGraph({
    name,
    nodes: [node('Mul', ['x', weight], [`${name}_y`])],
    inputs: [],
    outputs: [valueInfo(`${name}_y`, DataType.FLOAT, ['n', 4])],
  });
const model = makeModel({
  opset: 13,
  graph: makeGraph({
    name: 'by-rate',
    nodes: [
      node('Equal', ['sr', 'sixteen_k'], ['is16k']),
      node('If', ['is16k'], ['y'], { then_branch: branch('then', 'w16'), else_branch: branch('else', 'w8') }),
    ],
    inputs: [valueInfo('x', DataType.FLOAT, ['n', 4]), valueInfo('sr', DataType.INT64, [])],
    outputs: [valueInfo('y', DataType.FLOAT, ['n', 4])],
    initializers: [
      tensor('sixteen_k', [], new BigInt64Array([16000n])),
      tensor('w16', [4], new Float32Array([1, 2, 3, 4])),
      tensor('w8', [4], new Float32Array([-1, -1, -1, -1])),
    ],
  }),
});

t.test('a pinned input becomes a constant, and the optimizer folds the branch it selects', async (t) => {
  const fixed = fixInputs(model, { sr: 16000 });
  t.same(fixed.graph!.node[0].input, ['sr_fixed', 'sixteen_k']);
  t.ok(
    fixed.graph!.input.some((i) => i.name === 'sr'),
    'the input stays declared, so callers feed it as before',
  );
  const folded = await optimizeForQuantization(encodeModel(fixed));
  t.notOk(
    folded.graph!.node.some((n) => n.opType === 'If'),
    'no If left',
  );
  const x = new Float32Array([1, 1, 1, 1, 2, 2, 2, 2]);
  const feeds = {
    x: { type: 'float32' as const, data: x, dims: [2, 4] },
    sr: { type: 'int64' as const, data: new BigInt64Array([16000n]), dims: [] },
  };
  t.same([...(await runModel(folded, feeds, ['y'])).y.data], [1, 2, 3, 4, 2, 4, 6, 8]);
  t.equal(model.graph!.node[0].input[0], 'sr', 'the input model is untouched');
  t.throws(() => fixInputs(model, { rate: 1 }), /no input 'rate'/);
  t.throws(() => fixInputs(model, { x: 1 }), /not a float32\/int32\/int64 scalar/);
});

t.test('outer tensors read inside subgraphs count as uses and as dependencies', async (t) => {
  const g = new GraphIndex(structuredClone(model));
  g.pruneUnusedInitializers();
  t.same(
    g.graph.initializer.map((i) => i.name).sort(),
    ['sixteen_k', 'w16', 'w8'],
    'weights only the branches read are kept',
  );
  t.same(
    g.consumers.get('w16')?.map((n) => n.opType),
    ['If'],
  );
  // a producer placed after the If that reads its output implicitly is moved before it
  const graph = structuredClone(model.graph!);
  graph.initializer = graph.initializer.filter((i) => i.name !== 'w16');
  graph.node.push(node('Identity', ['w8'], ['w16']));
  t.same(
    topologicalOrder(graph).map((n) => n.opType),
    ['Equal', 'Identity', 'If'],
  );
});
