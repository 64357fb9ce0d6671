import t, { type Test } from 'tap';
import {
  attr,
  DataType,
  makeGraph,
  makeModel,
  node,
  tensor,
  valueInfo,
  type ModelProto,
} from '../../src/onnx/model.js';
import { foldAffine } from '../../src/quantize/passes/fold-affine.js';
import { gaussian, mulberry32, runFloat, uniform } from '../helpers/models.js';

const rand = mulberry32(7);
const C = 4;
const x = uniform(2 * C * 6 * 6, 2, rand, -1);
const run = (m: ModelProto) => runFloat(m, { name: 'x', data: x, dims: [2, C, 6, 6] }, 'y');
const ops = (m: ModelProto) => m.graph!.node.map((n) => n.opType);

/** What an exporter of PP-LCNetV3 writes: Conv, a learnable scale and shift, hard-swish, scale and shift, Convs. */
function lcnetBlock(opts: { padSecond: boolean; opset?: number }): ModelProto {
  // the depthwise Conv: 3 x 3 padded, or 1 x 1 without padding
  const k = opts.padSecond ? 3 : 1;
  const clip =
    (opts.opset ?? 13) >= 11
      ? node('Clip', ['x3', 'zero', 'six'], ['clipped'])
      : node('Clip', ['x3'], ['clipped'], { min: attr.float(0), max: attr.float(6) });
  return makeModel({
    opset: opts.opset ?? 13,
    graph: makeGraph({
      name: 'lcnet-block',
      nodes: [
        node('Conv', ['x', 'w1', 'b1'], ['c1'], { pads: attr.ints([1, 1, 1, 1]) }),
        node('Mul', ['c1', 's1'], ['m1']),
        node('Add', ['m1', 'h1'], ['a1']),
        node('Add', ['a1', 'three'], ['x3']),
        clip,
        node('Mul', ['a1', 'clipped'], ['prod']),
        node('Div', ['prod', 'six'], ['hs']),
        node('Mul', ['s2', 'hs'], ['m2']),
        node('Add', ['m2', 'h2'], ['a2']),
        // a depthwise Conv with padding and a pointwise one without, both reading a2
        node('Conv', ['a2', 'w2'], ['c2'], {
          group: attr.int(C),
          pads: attr.ints(opts.padSecond ? [1, 1, 1, 1] : [0, 0, 0, 0]),
        }),
        node('Conv', ['a2', 'w3', 'b3'], ['c3']),
        node('Add', ['c2', 'c3'], ['y']),
      ],
      inputs: [valueInfo('x', DataType.FLOAT, ['n', C, 6, 6])],
      outputs: [valueInfo('y', DataType.FLOAT)],
      initializers: [
        tensor('w1', [C, C, 3, 3], gaussian(C * C * 9, 0.3, rand)),
        tensor('b1', [C], gaussian(C, 0.1, rand)),
        tensor('s1', [1, C, 1, 1], uniform(C, 1, rand, 0.5)),
        tensor('h1', [1], new Float32Array([0.25])),
        tensor('three', [], new Float32Array([3])),
        tensor('zero', [], new Float32Array([0])),
        tensor('six', [], new Float32Array([6])),
        tensor('s2', [1], new Float32Array([1.7])),
        tensor('h2', [1, C, 1, 1], gaussian(C, 0.2, rand)),
        tensor('w2', [C, 1, k, k], gaussian(C * k * k, 0.3, rand)),
        tensor('w3', [C, C, 1, 1], gaussian(C * C, 0.3, rand)),
        tensor('b3', [C], gaussian(C, 0.1, rand)),
      ],
    }),
  });
}

function close(t: Test, a: Float32Array, b: Float32Array) {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1 + Math.abs(a[i])));
  t.ok(worst < 1e-5, `outputs equal up to float rounding (worst relative difference ${worst.toExponential(2)})`);
}

t.test(
  'scale and shift after a Conv and before unpadded Convs are folded, hard-swish fused, outputs equal',
  async (t) => {
    const model = lcnetBlock({ padSecond: false });
    const { model: out, stats } = foldAffine(model);
    t.same(stats, { intoProducer: 2, intoConsumer: 2, hardSwish: 1 });
    t.same(ops(out), ['Conv', 'HardSigmoid', 'Mul', 'Conv', 'Conv', 'Add']);
    close(t, await run(model), await run(out));
    t.equal(model.graph!.node.length, 12, 'the input model is untouched');
  },
);

t.test('a shift before a padded Conv stays (the border would read it); the scale still folds', async (t) => {
  const model = lcnetBlock({ padSecond: true });
  const { model: out, stats } = foldAffine(model);
  t.same(stats, { intoProducer: 2, intoConsumer: 0, hardSwish: 1 }, 'Add h2 stays, so Mul s2 has a non-Conv reader');
  t.same(ops(out), ['Conv', 'HardSigmoid', 'Mul', 'Mul', 'Add', 'Conv', 'Conv', 'Add']);
  close(t, await run(model), await run(out));
});

t.test('opset 9 hard-swish (Clip bounds as attributes) is fused too', async (t) => {
  const model = lcnetBlock({ padSecond: false, opset: 9 });
  const { model: out, stats } = foldAffine(model);
  t.equal(stats.hardSwish, 1);
  close(t, await run(model), await run(out));
});

t.test('what is not affine per channel, or is a graph output, is left alone', async (t) => {
  const model = makeModel({
    opset: 13,
    graph: makeGraph({
      name: 'not-foldable',
      nodes: [
        node('Conv', ['x', 'w'], ['c']),
        // varies along the width: not a per-channel constant
        node('Mul', ['c', 'perColumn'], ['m']),
        node('Conv', ['x', 'w'], ['c2']),
        // the Conv's output is also a graph output
        node('Add', ['c2', 'shift'], ['y2']),
        node('Sub', ['shift', 'm'], ['y']),
      ],
      inputs: [valueInfo('x', DataType.FLOAT, ['n', C, 6, 6])],
      outputs: [valueInfo('y', DataType.FLOAT), valueInfo('c2', DataType.FLOAT)],
      initializers: [
        tensor('w', [C, C, 1, 1], gaussian(C * C, 0.3, rand)),
        tensor('perColumn', [6], uniform(6, 1, rand, 0.5)),
        tensor('shift', [1], new Float32Array([0.5])),
      ],
    }),
  });
  const { model: out, stats } = foldAffine(model);
  t.same(stats, { intoProducer: 0, intoConsumer: 0, hardSwish: 0 });
  t.same(ops(out), ops(model));
});

t.test(
  'one scale between two Convs folds once, into the first (it is gone before the second could take it)',
  async (t) => {
    const model = makeModel({
      opset: 13,
      graph: makeGraph({
        name: 'conv-mul-conv',
        nodes: [
          node('Conv', ['x', 'w1'], ['c1'], { pads: attr.ints([1, 1, 1, 1]) }),
          node('Mul', ['c1', 's'], ['m']),
          node('Conv', ['m', 'w2', 'b2'], ['y']),
        ],
        inputs: [valueInfo('x', DataType.FLOAT, ['n', C, 6, 6])],
        outputs: [valueInfo('y', DataType.FLOAT)],
        initializers: [
          tensor('w1', [C, C, 3, 3], gaussian(C * C * 9, 0.3, rand)),
          tensor('s', [1, C, 1, 1], uniform(C, 1, rand, 0.5)),
          tensor('w2', [C, C, 1, 1], gaussian(C * C, 0.3, rand)),
          tensor('b2', [C], gaussian(C, 0.1, rand)),
        ],
      }),
    });
    const { model: out, stats } = foldAffine(model);
    t.same(stats, { intoProducer: 1, intoConsumer: 0, hardSwish: 0 });
    t.same(ops(out), ['Conv', 'Conv']);
    close(t, await run(model), await run(out));
  },
);

t.test('a per-channel constant that widens its input (1 channel divided by 3) is not folded', async (t) => {
  const model = makeModel({
    opset: 13,
    graph: makeGraph({
      name: 'gray-normalize',
      nodes: [node('Div', ['x', 'std'], ['n3']), node('Conv', ['n3', 'w'], ['y'])],
      inputs: [valueInfo('x', DataType.FLOAT, ['n', 1, 6, 6])],
      outputs: [valueInfo('y', DataType.FLOAT)],
      initializers: [
        tensor('std', [1, 3, 1, 1], new Float32Array([0.2, 0.25, 0.3])),
        tensor('w', [2, 3, 1, 1], gaussian(6, 0.3, rand)),
      ],
    }),
  });
  t.same(foldAffine(model).stats, { intoProducer: 0, intoConsumer: 0, hardSwish: 0 });
});
