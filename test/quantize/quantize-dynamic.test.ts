import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
  type NodeProto,
} from '../../src/onnx/model.js';
import { readFloats, readInts } from '../../src/quantize/graph.js';
import {
  quantizeDynamic,
  quantizeDynamicWithStats,
  quantizeWeight,
  roundHalfEven,
} from '../../src/quantize/passes/quantize-dynamic.js';
import { compare, mulberry32 as rng, runFloat, runModel, uniform as randn } from '../helpers/models.js';

const IN = 64;
const HIDDEN = 96;
const OUT = 10;

/** x [batch, 64] -> MatMul+Add -> Relu -> MatMul+Add -> y [batch, 10]; or the same with two Gemms. */
function buildMlp(variant: 'matmul' | 'gemm'): ModelProto {
  const rand = rng(42);
  const w1 = randn(IN * HIDDEN, 0.2, rand);
  const b1 = randn(HIDDEN, 0.1, rand);
  const w2 = randn(HIDDEN * OUT, 0.2, rand);
  const b2 = randn(OUT, 0.1, rand);
  let nodes: NodeProto[];
  let inits;
  if (variant === 'matmul') {
    nodes = [
      node('MatMul', ['x', 'w1'], ['h0'], {}, { name: 'fc1' }),
      node('Add', ['h0', 'b1'], ['h1'], {}, { name: 'fc1_bias' }),
      node('Relu', ['h1'], ['h2'], {}, { name: 'relu' }),
      node('MatMul', ['h2', 'w2'], ['h3'], {}, { name: 'fc2' }),
      node('Add', ['h3', 'b2'], ['y'], {}, { name: 'fc2_bias' }),
    ];
    inits = [tensor('w1', [IN, HIDDEN], w1), tensor('b1', [HIDDEN], b1), tensor('w2', [HIDDEN, OUT], w2)];
    inits.push(tensor('b2', [OUT], b2));
  } else {
    // fc1 stores W as [out, in] (transB=1, like a PyTorch Linear); fc2 has alpha and beta to fold.
    const w1t = new Float32Array(IN * HIDDEN);
    for (let i = 0; i < IN; i++) for (let j = 0; j < HIDDEN; j++) w1t[j * IN + i] = w1[i * HIDDEN + j];
    const half = w2.map((v) => v * 2);
    nodes = [
      node('Gemm', ['x', 'w1t', 'b1'], ['h1'], { transB: 1 }, { name: 'fc1' }),
      node('Relu', ['h1'], ['h2'], {}, { name: 'relu' }),
      node('Gemm', ['h2', 'w2x2', 'b2half'], ['y'], { alpha: 0.5, beta: attr.float(2) }, { name: 'fc2' }),
    ];
    inits = [tensor('w1t', [HIDDEN, IN], w1t), tensor('b1', [HIDDEN], b1), tensor('w2x2', [HIDDEN, OUT], half)];
    inits.push(
      tensor(
        'b2half',
        [OUT],
        b2.map((v) => v / 2),
      ),
    );
  }
  return makeModel({
    graph: makeGraph({
      name: `mlp_${variant}`,
      nodes,
      inputs: [valueInfo('x', DataType.FLOAT, ['batch', IN])],
      outputs: [valueInfo('y', DataType.FLOAT, ['batch', OUT])],
      initializers: inits,
    }),
  });
}

const BATCH = 8;
const input = randn(BATCH * IN, 1, rng(7));

/** Runs the model on `input`; with `optimizedModelPath`, at level `extended`, writing the optimized graph there. */
function run(model: ModelProto, optimizedModelPath?: string): Promise<Float32Array> {
  const optimizationLevel = optimizedModelPath ? 'extended' : 'all';
  return runFloat(model, { name: 'x', data: input, dims: [BATCH, IN] }, 'y', { optimizationLevel, optimizedModelPath });
}

const tmp = mkdtempSync(path.join(tmpdir(), 'muon-qdyn-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

async function optimizedOps(model: ModelProto, name: string): Promise<{ ops: string[]; y: Float32Array }> {
  const file = path.join(tmp, `${name}.onnx`);
  const y = await run(model, file);
  const opt = decodeModel(readFileSync(file));
  return { ops: opt.graph!.node.map((n) => n.opType), y };
}

t.test('round half to even', async (t) => {
  t.same([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(roundHalfEven), [0, 2, 2, -0, -2, -2, 2, -3]);
});

t.test('weight quantization matches onnxruntime quantize_dynamic arithmetic', async (t) => {
  // absmax 2.54 -> scale 2 * 2.54 / 254 = 0.02 (float32); 0.01 / 0.02 = 0.5 rounds to 0, 0.03 / 0.02 = 1.5 to 2.
  const w = new Float32Array([2.54, -1, 0.01, 0.03, -2.54, 0]);
  const q = quantizeWeight(w, 3, 2);
  t.equal(q.scale[0], Math.fround(Math.fround(5.08) / 254));
  t.same([...q.zeroPoint], [0]);
  t.same([...q.values], [127, -50, 0, 2, -127, 0]);
  const r = quantizeWeight(w, 3, 2, 'int8', true);
  t.same([...r.values], [64, -25, 0, 1, -64, 0], 'reduce range: [-64, 64]');
  const u = quantizeWeight(w, 3, 2, 'uint8');
  t.equal(u.zeroPoint[0], 128, 'uint8 is asymmetric: zero point round(0 + 2.54 / (5.08 / 255)) = 128');
  t.same([...u.values], [255, 78, 129, 130, 1, 128], '-127.5 + 128 in float32 lands on 1, as numpy does');
  const c = quantizeWeight(w, 3, 2, 'int8', false, true);
  t.same([...c.scale], [Math.fround(2.54 / 127), Math.fround(1 / 127)], 'per channel: one scale per column');
  t.same([...c.values], [127, -127, 0, 4, -127, 0]);
  const z = quantizeWeight(new Float32Array(4), 2, 2);
  t.same([z.scale[0], z.zeroPoint[0], ...z.values], [1, 0, 0, 0, 0, 0], 'all-zero weights: scale 1');
  // quantize_dynamic subtracts the float32 range in float32: 1.4248328 + 0.00038131868 is not a float32, and the
  // float64 difference (quant-math's default, for static quantization) would give 0.005589074920862913.
  const f32 = quantizeWeight(
    new Float32Array([-0.00038131867768242955, 1.424832820892334, 0.7, -0.0001]),
    2,
    2,
    'uint8',
  );
  t.equal(f32.scale[0], 0.0055890753865242004, 'uint8: range width rounded to float32 before dividing');
  t.same([f32.zeroPoint[0], ...f32.values], [0, 0, 255, 125, 0]);
});

t.test('one MatMul: exact nodes and initializers', async (t) => {
  const w = new Float32Array([1, -0.5, 0.25, 0, -1, 0.5]);
  const m = makeModel({
    graph: makeGraph({
      name: 'one',
      nodes: [node('MatMul', ['x', 'W'], ['y'], {}, { name: 'mm' })],
      inputs: [valueInfo('x', DataType.FLOAT, ['batch', 3])],
      outputs: [valueInfo('y', DataType.FLOAT, ['batch', 2])],
      initializers: [tensor('W', [3, 2], w)],
    }),
  });
  const before = encodeModel(m);
  const q = quantizeDynamic(m);
  t.same(encodeModel(m), before, 'the input model is not changed');
  const g = q.graph!;
  t.same(
    g.node.map((n) => [n.opType, n.input, n.output]),
    [
      ['DynamicQuantizeLinear', ['x'], ['x_quantized', 'x_scale', 'x_zero_point']],
      ['MatMulInteger', ['x_quantized', 'W_quantized', 'x_zero_point', 'W_zero_point'], ['y_output_quantized']],
      ['Cast', ['y_output_quantized'], ['y_output_quantized_cast_output']],
      ['Mul', ['x_scale', 'W_scale'], ['mm_scales_mul']],
      ['Mul', ['y_output_quantized_cast_output', 'mm_scales_mul'], ['y']],
    ],
  );
  t.equal(Number(g.node[2].attribute[0].i), DataType.FLOAT, 'Cast to float');
  t.same(
    g.initializer.map((i) => [i.name, DataType[i.dataType], i.dims.map(Number)]),
    [
      ['W_quantized', 'INT8', [3, 2]],
      ['W_scale', 'FLOAT', []],
      ['W_zero_point', 'INT8', []],
    ],
  );
  t.same(readInts(g.initializer[0]), [127, -64, 32, 0, -127, 64]);
  t.equal(readFloats(g.initializer[1])[0], Math.fround(2 / 254));
  t.same(readInts(g.initializer[2]), [0]);

  const x = new Float32Array([1, 2, 3, -1, 0, 0.5]);
  const y = (await runModel(q, { x: { type: 'float32', data: x, dims: [2, 3] } }, ['y'])).y.data as Float32Array;
  const expect = [1 * 1 + 2 * 0.25 + 3 * -1, 1 * -0.5 + 0 + 3 * 0.5, -1 + 0.5 * -1, 0.5 + 0.5 * 0.5];
  for (let i = 0; i < 4; i++) t.ok(Math.abs(y[i] - expect[i]) < 0.05, `y[${i}] = ${y[i]} ~ ${expect[i]}`);
});

for (const variant of ['matmul', 'gemm'] as const) {
  t.test(`${variant} MLP: fused by onnxruntime, close to float`, async (t) => {
    const m = buildMlp(variant);
    const ref = await run(m);
    const { model: q, stats } = quantizeDynamicWithStats(m);
    t.same(stats.quantized, ['fc1', 'fc2']);
    t.equal(stats.activationQuantizers, 2);
    t.notOk(
      q.graph!.initializer.some((i) => i.dataType === DataType.FLOAT && i.dims.length === 2),
      'no float weight matrix left',
    );
    const { ops, y } = await optimizedOps(q, variant);
    t.comment(`optimized ops: ${ops.join(', ')}`);
    t.ok(
      ops.filter((o) => o === 'DynamicQuantizeMatMul' || o === 'MatMulIntegerToFloat').length === 2,
      'both layers fused into DynamicQuantizeMatMul / MatMulIntegerToFloat',
    );
    t.notOk(
      ops.some((o) => ['MatMul', 'Gemm', 'FusedMatMul', 'FusedGemm'].includes(o)),
      'no float MatMul left',
    );
    const c = compare(ref, y);
    t.comment(`max abs error ${c.maxAbs.toExponential(3)} (output range ${c.range.toFixed(3)}), cosine ${c.cosine}`);
    t.ok(c.maxAbs < 0.02 * c.range, 'max abs error under 2% of the output range');
    t.ok(c.cosine > 0.999, 'cosine > 0.999');
    const y2 = await run(q);
    t.ok(compare(y, y2).maxAbs < 1e-5, 'same result at optimization level all');

    const pc = quantizeDynamic(m, { perChannel: true });
    t.same(
      pc.graph!.initializer.filter((i) => i.name.endsWith('_scale')).map((i) => i.dims.map(Number)),
      [[HIDDEN], [OUT]],
    );
    const cpc = compare(ref, await run(pc));
    t.comment(`per channel: max abs error ${cpc.maxAbs.toExponential(3)}, cosine ${cpc.cosine}`);
    t.ok(cpc.cosine > 0.999);
    const u8 = quantizeDynamic(m, { weightType: 'uint8', reduceRange: true });
    t.ok(u8.graph!.initializer.some((i) => i.dataType === DataType.UINT8));
    const cu8 = compare(ref, await run(u8));
    t.comment(`uint8 reduce range: max abs error ${cu8.maxAbs.toExponential(3)}, cosine ${cu8.cosine}`);
    t.ok(cu8.cosine > 0.995);
  });
}

t.test('excluded nodes stay float', async (t) => {
  const m = buildMlp('matmul');
  const { model: q, stats } = quantizeDynamicWithStats(m, { excludeNodes: ['fc2'] });
  t.same(stats.quantized, ['fc1']);
  t.same(stats.skipped, [{ node: 'fc2', reason: 'excluded' }]);
  const fc2 = q.graph!.node.find((n) => n.name === 'fc2');
  t.equal(fc2?.opType, 'MatMul');
  t.same(fc2?.input, ['h2', 'w2']);
  t.equal(q.graph!.initializer.find((i) => i.name === 'w2')?.dataType, DataType.FLOAT);
  const { ops, y } = await optimizedOps(q, 'excluded');
  t.equal(ops.filter((o) => o === 'DynamicQuantizeMatMul' || o === 'MatMulIntegerToFloat').length, 1);
  t.ok(compare(await run(m), y).cosine > 0.999);
});

t.test('left alone: Conv, activation x activation MatMul, old opsets', async (t) => {
  const m = makeModel({
    graph: makeGraph({
      name: 'mixed',
      nodes: [
        node('Conv', ['x', 'k'], ['c'], {}, { name: 'conv' }),
        node('MatMul', ['c', 'c'], ['y'], {}, { name: 'mm' }),
      ],
      inputs: [valueInfo('x', DataType.FLOAT, [1, 1, 2, 2])],
      outputs: [valueInfo('y', DataType.FLOAT, [1, 1, 2, 2])],
      initializers: [tensor('k', [1, 1, 1, 1], new Float32Array([2]))],
    }),
  });
  const { model: q, stats } = quantizeDynamicWithStats(m);
  t.same(
    q.graph!.node.map((n) => n.opType),
    ['Conv', 'MatMul'],
  );
  t.same(stats.skipped, [{ node: 'mm', reason: 'weight is not a float32 initializer' }]);
  const old = buildMlp('matmul');
  old.opsetImport[0].version = 10n;
  const r = quantizeDynamicWithStats(old);
  t.same(r.stats.quantized, []);
  t.match(r.stats.skipped[0].reason, /opset 10 < 11/);
});
