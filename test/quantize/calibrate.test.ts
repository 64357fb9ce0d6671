import t from 'tap';
import { DataType, makeGraph, makeModel, node, tensor, valueInfo, type ModelProto } from '../../src/onnx/model.js';
import type { HostTensor } from '../../src/models/session.js';
import { AbsHistogram, calibrate, exposeTensors, type Feed } from '../../src/quantize/calibrate.js';

/** x -> Relu -> r;  x -> Mul(2) -> m -> Neg -> y (the only graph output);  Shape(x) is int64. */
function model(): ModelProto {
  return makeModel({
    graph: makeGraph({
      name: 'calib',
      nodes: [
        node('Relu', ['x'], ['r']),
        node('Mul', ['x', 'two'], ['m']),
        node('Add', ['r', 'm'], ['s']),
        node('Neg', ['s'], ['y']),
        node('Shape', ['x'], ['shape']),
      ],
      inputs: [valueInfo('x', DataType.FLOAT, ['n', 4])],
      outputs: [valueInfo('y', DataType.FLOAT, ['n', 4])],
      initializers: [tensor('two', [], new Float32Array([2]))],
    }),
  });
}

const feed = (...values: number[]): Feed => ({
  x: { type: 'float32', data: new Float32Array(values), dims: [values.length / 4, 4] } satisfies HostTensor,
});

t.test('minmax over every feed, from a sync or an async iterable', async (t) => {
  const feeds = [feed(1, -2, 3, 0.5), feed(-1, 0, 0, 4, 0.25, 0.25, 0.25, -3)];
  const ranges = await calibrate(model(), feeds);
  t.same(Object.fromEntries(ranges), {
    x: { min: -3, max: 4 },
    r: { min: 0, max: 4 },
    m: { min: -6, max: 8 },
    s: { min: -6, max: 12 },
    y: { min: -12, max: 6 },
  });
  t.notOk(ranges.has('shape'), 'int64 tensors are left out');
  t.notOk(ranges.has('two'), 'initializers are not calibrated');
  async function* stream() {
    for (const f of feeds) yield f;
  }
  const some = await calibrate(model(), stream(), { tensors: ['r', 'y'] });
  t.same([...some.keys()].sort(), ['r', 'y']);
  t.same(some.get('r'), { min: 0, max: 4 });
  await t.rejects(calibrate(model(), []), /at least one feed/);
  await t.rejects(calibrate(model(), feeds, { percentile: 0 }), /percentile/);
  t.throws(() => exposeTensors(model(), ['nope']), /no node produces it/);
  const exposed = exposeTensors(model(), ['r', 'y', 'x', 'two']);
  t.same(
    exposed.graph!.output.map((o) => o.name),
    ['y', 'r'],
  );
});

t.test('percentile: symmetric on |x|, clamped to the values seen', async (t) => {
  // 10 000 values in [-1, 1) and one outlier at 100: the 99.9th percentile of |x| ignores the outlier
  const values: number[] = [];
  for (let i = 0; i < 10000; i++) values.push(((i * 7919) % 20000) / 10000 - 1);
  values.push(100, 0, 0, 0);
  const feeds = [];
  for (let i = 0; i < values.length; i += 4 * 500) feeds.push(feed(...values.slice(i, i + 4 * 500)));
  const ranges = await calibrate(model(), feeds, { method: 'percentile', percentile: 99.9, tensors: ['x', 'r'] });
  const x = ranges.get('x')!;
  t.ok(x.max > 0.99 && x.max < 1.1, `x max ${x.max}`);
  t.ok(x.min < -0.99 && x.min > -1.1, `x min ${x.min}`);
  const r = ranges.get('r')!;
  t.equal(r.min, 0, 'clamped to the smallest value seen');
  const full = await calibrate(model(), feeds, { method: 'percentile', percentile: 100, tensors: ['x'] });
  t.same(full.get('x'), { min: -1, max: 100 });
  const entropy = await calibrate(model(), feeds, { method: 'entropy', tensors: ['x'] });
  const e = entropy.get('x')!;
  t.ok(e.min >= -1 && e.max <= 100, 'entropy range inside the values seen');
});

t.test('entropy clips the tail of a Laplace distribution', async (t) => {
  const h = new AbsHistogram();
  let a = 12345;
  const values = new Float32Array(20000);
  for (let i = 0; i < values.length; i++) {
    a = (a * 1103515245 + 12345) % 2147483648;
    values[i] = (i % 2 ? 1 : -1) * -Math.log((a + 0.5) / 2147483648);
  }
  for (let i = 0; i < values.length; i += 2000) h.add(values.subarray(i, i + 2000));
  const e = h.range('entropy');
  const p = h.range('percentile', 99.9);
  t.ok(e.max < h.max && e.max > p.max, `entropy ${e.max}, percentile ${p.max}, max ${h.max}`);
});

t.test('histogram: bounded bins, coarsened when larger values arrive', async (t) => {
  const h = new AbsHistogram(8);
  h.add(new Float32Array([0, 0]));
  t.equal(h.width, 0, 'no width before a non-zero value');
  h.add(new Float32Array([1, -2, 3, 4]));
  t.equal(h.width, 0.5);
  t.same([...h.counts], [2, 0, 1, 0, 1, 0, 1, 1]);
  h.add(new Float32Array([-9]));
  t.equal(h.width, 2, 'doubled until 9 fits under 8 bins');
  t.same([...h.counts], [3, 3, 0, 0, 1, 0, 0, 0], 'bins merged in pairs twice, then 9 in [8, 10)');
  t.equal(h.total, 7);
  t.equal(h.counts.length, 8);
  t.equal(h.percentileThreshold(50), 4, 'upper edge of the bin reaching the percentile');
  t.equal(h.percentileThreshold(100), 10);
  t.same(h.range('minmax'), { min: -9, max: 4 });
  t.same(h.range('percentile', 50), { min: -4, max: 4 });
  t.same(new AbsHistogram(4).range('percentile'), { min: 0, max: 0 });
  t.equal(new AbsHistogram(4).percentileThreshold(50), 0);
  t.throws(() => new AbsHistogram(3), /even/);
});
