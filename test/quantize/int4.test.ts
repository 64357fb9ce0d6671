import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
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
import { quantizeInt4, quantizeInt4Weight, quantizeInt4WithStats } from '../../src/quantize/passes/int4.js';
import { compare, mulberry32 as rng, runFloat, uniform as rand } from '../helpers/models.js';

// K = 200 is not a multiple of the block size: the last block is padded.
const IN = 200;
const HIDDEN = 64;
const OUT = 10;
const BATCH = 4;

function buildMlp(): ModelProto {
  const r = rng(11);
  return makeModel({
    graph: makeGraph({
      name: 'mlp',
      nodes: [
        node('MatMul', ['x', 'w1'], ['h0'], {}, { name: 'fc1' }),
        node('Add', ['h0', 'b1'], ['h1'], {}, { name: 'fc1_bias' }),
        node('Relu', ['h1'], ['h2'], {}, { name: 'relu' }),
        node('MatMul', ['h2', 'w2'], ['y'], {}, { name: 'fc2' }),
      ],
      inputs: [valueInfo('x', DataType.FLOAT, ['batch', IN])],
      outputs: [valueInfo('y', DataType.FLOAT, ['batch', OUT])],
      initializers: [
        tensor('w1', [IN, HIDDEN], rand(IN * HIDDEN, 0.1, r)),
        tensor('b1', [HIDDEN], rand(HIDDEN, 0.1, r)),
        tensor('w2', [HIDDEN, OUT], rand(HIDDEN * OUT, 0.3, r)),
      ],
    }),
  });
}

const input = rand(BATCH * IN, 1, rng(5));
const tmp = mkdtempSync(path.join(tmpdir(), 'muon-int4-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs the model on `input`; with `optimizedModelPath`, at level `extended`, writing the optimized graph there. */
function run(model: ModelProto, optimizedModelPath?: string): Promise<Float32Array> {
  const optimizationLevel = optimizedModelPath ? 'extended' : 'all';
  return runFloat(model, { name: 'x', data: input, dims: [BATCH, IN] }, 'y', { optimizationLevel, optimizedModelPath });
}

/** Dequantizes MatMulNBits weights as its contrib-op schema defines them, back to [K, N]. */
function dequantize(
  packed: Uint8Array,
  scales: Float32Array,
  zp: Uint8Array | undefined,
  k: number,
  n: number,
  blockSize: number,
): Float32Array {
  const kBlocks = Math.ceil(k / blockSize);
  const zpBytes = Math.ceil(kBlocks / 2);
  const out = new Float32Array(k * n);
  for (let col = 0; col < n; col++) {
    for (let r = 0; r < k; r++) {
      const b = Math.floor(r / blockSize);
      const byte = packed[(col * kBlocks + b) * (blockSize / 2) + Math.floor((r % blockSize) / 2)];
      const q = r % 2 === 0 ? byte & 0xf : byte >> 4;
      const z = zp ? (zp[col * zpBytes + (b >> 1)] >> ((b & 1) * 4)) & 0xf : 8;
      out[r * n + col] = (q - z) * scales[col * kBlocks + b];
    }
  }
  return out;
}

t.test('weight layout: dequantizing per the MatMulNBits schema gives back the weights', async (t) => {
  const k = 40;
  const n = 3;
  const w = rand(k * n, 1, rng(1));
  for (const symmetric of [false, true]) {
    const q = quantizeInt4Weight(w, k, n, 16, symmetric);
    t.equal(q.kBlocks, 3);
    t.equal(q.packed.length, n * 3 * 8, 'packed [N, kBlocks, blockSize / 2]');
    t.equal(q.scales.length, n * 3);
    t.equal(q.zeroPoints?.length, symmetric ? undefined : n * 2, 'zero points: ceil(kBlocks / 2) bytes a column');
    const d = dequantize(q.packed, q.scales, q.zeroPoints, k, n, 16);
    let worst = 0;
    for (let r = 0; r < k; r++) {
      for (let c = 0; c < n; c++) {
        const s = Math.abs(q.scales[c * 3 + Math.floor(r / 16)]);
        worst = Math.max(worst, Math.abs(d[r * n + c] - w[r * n + c]) / s);
      }
    }
    // Symmetric blocks map the largest magnitude to -8, so the opposite extreme can clip at +7: up to one scale off
    // (MLAS does the same).
    const bound = symmetric ? 1 : 0.5;
    t.ok(
      worst <= bound + 1e-5,
      `${symmetric ? 'symmetric' : 'asymmetric'}: error <= ${bound} scale (${worst.toFixed(4)})`,
    );
  }
  // Symmetric: the value of largest magnitude maps to -8 exactly.
  const s = quantizeInt4Weight(new Float32Array([...Array(15).fill(0.5), -4]), 16, 1, 16, true);
  t.equal(s.scales[0], 0.5);
  t.equal(s.packed[7] >> 4, 0, '-4 / 0.5 + 8 = 0');
  t.equal(s.packed[0] & 0xf, 9, '0.5 / 0.5 + 8 = 9');
  // Asymmetric: [0, 15] spans the range, zero point round(0) = 0 when min is 0.
  const a = quantizeInt4Weight(
    Float32Array.from({ length: 16 }, (_, i) => i),
    16,
    1,
    16,
    false,
  );
  t.equal(a.scales[0], 1);
  t.same([...a.packed], [0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe]);
  t.same([...a.zeroPoints!], [0x80], 'unused high nibble is 8, as ORT writes it');
});

t.test('MLP: MatMulNBits nodes, run by onnxruntime, close to float', async (t) => {
  const m = buildMlp();
  const before = encodeModel(m);
  const ref = await run(m);
  for (const opts of [{}, { blockSize: 32 }, { blockSize: 32, symmetric: true }, { blockSize: 16, accuracyLevel: 4 }]) {
    const { model: q, stats } = quantizeInt4WithStats(m, opts);
    t.same(stats.quantized, ['fc1', 'fc2']);
    const g = q.graph!;
    const nb = g.node.filter((n) => n.opType === 'MatMulNBits');
    t.equal(nb.length, 2);
    t.equal(nb[0].domain, 'com.microsoft');
    const attrs = Object.fromEntries(nb[0].attribute.map((a) => [a.name, Number(a.i)]));
    const bs = opts.blockSize ?? 128;
    t.same(attrs, {
      K: IN,
      N: HIDDEN,
      bits: 4,
      block_size: bs,
      ...(opts.accuracyLevel ? { accuracy_level: opts.accuracyLevel } : {}),
    });
    const w1 = g.initializer.find((i) => i.name === nb[0].input[1])!;
    t.same(w1.dims.map(Number), [HIDDEN, Math.ceil(IN / bs), bs / 2]);
    t.equal(nb[0].input.length, opts.symmetric ? 3 : 4, 'zero points only when asymmetric');
    t.ok(q.opsetImport.some((o) => o.domain === 'com.microsoft'));
    t.notOk(
      g.initializer.some((i) => i.dataType === DataType.FLOAT && i.dims.length === 2),
      'no float weights left',
    );
    const file = path.join(tmp, `q${bs}${opts.symmetric ? 's' : ''}.onnx`);
    const y = await run(q, file);
    const ops = decodeModel(readFileSync(file)).graph!.node.map((n) => n.opType);
    t.same(
      ops.filter((o) => o === 'MatMulNBits'),
      ['MatMulNBits', 'MatMulNBits'],
      `onnxruntime keeps MatMulNBits (${ops.join(', ')})`,
    );
    const c = compare(ref, y);
    const size = encodeModel(q).length / before.length;
    t.comment(
      `${JSON.stringify(opts)}: size ${size.toFixed(3)} of float, max abs error ${c.maxAbs.toExponential(3)} ` +
        `(range ${c.range.toFixed(3)}), cosine ${c.cosine}`,
    );
    t.ok(c.cosine > 0.99, 'cosine > 0.99');
    t.ok(size < 0.25, 'under a quarter of the float size');
  }
  t.same(encodeModel(m), before, 'the input model is not changed');
});

t.test('excluded nodes and bad options', async (t) => {
  const m = buildMlp();
  const { model: q, stats } = quantizeInt4WithStats(m, { excludeNodes: ['fc2'] });
  t.same(stats.skipped, [{ node: 'fc2', reason: 'excluded' }]);
  t.same(
    q.graph!.node.map((n) => n.opType),
    ['MatMulNBits', 'Add', 'Relu', 'MatMul'],
  );
  t.equal(q.graph!.initializer.find((i) => i.name === 'w2')?.dataType, DataType.FLOAT);
  t.ok(compare(await run(m), await run(q)).cosine > 0.99);
  t.throws(() => quantizeInt4(m, { blockSize: 24 }), /power of two/);
  const act = makeModel({
    graph: makeGraph({
      name: 'act',
      nodes: [node('MatMul', ['x', 'x'], ['y'], {}, { name: 'mm' })],
      inputs: [valueInfo('x', DataType.FLOAT, [2, 2])],
      outputs: [valueInfo('y', DataType.FLOAT, [2, 2])],
    }),
  });
  const r = quantizeInt4WithStats(act);
  t.same(r.stats.skipped, [{ node: 'mm', reason: 'weight is not a float32 initializer' }]);
  t.notOk(
    r.model.opsetImport.some((o) => o.domain === 'com.microsoft'),
    'no contrib opset when nothing changed',
  );
});
