import t from 'tap';
import { attr, DataType, makeGraph, makeModel, node, tensor, valueInfo } from '../../src/onnx/model.js';
import { simplifyForQuantization } from '../../src/quantize/passes/simplify.js';
import { runFloat } from '../helpers/models.js';

// hardswish and squeeze-excitation as MobileNetV3 exports write them: Div by a constant, HardSigmoid
const model = makeModel({
  opset: 13,
  graph: makeGraph({
    name: 'hardswish',
    nodes: [
      node('HardSigmoid', ['x'], ['gate'], { alpha: attr.float(0.2), beta: attr.float(0.5) }, { name: 'hs' }),
      node('Mul', ['x', 'gate'], ['gated'], {}, { name: 'mul' }),
      node('Div', ['gated', 'six'], ['y'], {}, { name: 'div' }),
    ],
    inputs: [valueInfo('x', DataType.FLOAT, ['n', 8])],
    outputs: [valueInfo('y', DataType.FLOAT, ['n', 8])],
    initializers: [tensor('six', [], new Float32Array([6]))],
  }),
});

t.test('Div by a constant becomes Mul, HardSigmoid becomes Mul/Add/Clip, outputs equal', async (t) => {
  const { model: out, stats } = simplifyForQuantization(model);
  t.same(stats, { divToMul: 1, hardSigmoid: 1 });
  t.same(
    out.graph!.node.map((n) => n.opType),
    ['Mul', 'Add', 'Clip', 'Mul', 'Mul'],
  );
  t.same(
    out.graph!.output.map((o) => o.name),
    ['y'],
    'graph outputs keep their names',
  );
  const x = Float32Array.from({ length: 4 * 8 }, (_, i) => (i - 16) / 3);
  const run = (m: typeof model) => runFloat(m, { name: 'x', data: x, dims: [4, 8] }, 'y');
  const [a, b] = [await run(model), await run(out)];
  for (let i = 0; i < a.length; i++) t.ok(Math.abs(a[i] - b[i]) < 1e-6, `y[${i}]`);
  t.equal(model.graph!.node.length, 3, 'the input model is untouched');
});

t.test('models below opset 13 are left alone', async (t) => {
  const old = { ...model, opsetImport: [{ ...model.opsetImport[0], version: 11n }] } as typeof model;
  t.same(simplifyForQuantization(old).stats, { divToMul: 0, hardSigmoid: 0 });
});
