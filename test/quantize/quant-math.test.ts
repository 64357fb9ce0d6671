import t from 'tap';
import {
  activationQParams,
  computeScaleZeroPoint,
  qRange,
  quantizeBias,
  quantizeValue,
  quantizeWeight,
  roundHalfEven,
} from '../../src/quantize/quant-math.js';

t.test('integer ranges as ORT get_qmin_qmax_for_qType', async (t) => {
  t.same(qRange('uint8'), { qmin: 0, qmax: 255 });
  t.same(qRange('uint8', { symmetric: true }), { qmin: 0, qmax: 255 }, 'no symmetric table for uint8');
  t.same(qRange('int8'), { qmin: -128, qmax: 127 });
  t.same(qRange('int8', { symmetric: true }), { qmin: -127, qmax: 127 });
  t.same(qRange('int8', { symmetric: true, reduceRange: true }), { qmin: -64, qmax: 64 });
  t.same(qRange('uint8', { reduceRange: true }), { qmin: 0, qmax: 127 });
});

t.test('round half to even', async (t) => {
  t.same([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6, -2.6].map(roundHalfEven), [0, 2, 2, -0, -2, -2, 2, 3, -3]);
});

t.test('asymmetric uint8 activations: range widened to include 0', async (t) => {
  // [-1, 3]: scale 4/255, zero point round(0 - (-1) / (4/255)) = round(63.75) = 64
  t.same(activationQParams({ min: -1, max: 3 }), { scale: Math.fround(4 / 255), zeroPoint: 64 });
  // [2, 6] is widened to [0, 6]: zero point 0
  t.same(activationQParams({ min: 2, max: 6 }), { scale: Math.fround(6 / 255), zeroPoint: 0 });
  // all negative: [-5, -1] -> [-5, 0], zero point 255
  t.same(activationQParams({ min: -5, max: -1 }), { scale: Math.fround(5 / 255), zeroPoint: 255 });
  // a constant zero tensor: scale 1, zero point 0 instead of a zero scale
  t.same(activationQParams({ min: 0, max: 0 }), { scale: 1, zeroPoint: 0 });
  // tie in the zero point: [-0.5, 0.5] over 255 steps -> 127.5 -> 128 (even)
  t.same(computeScaleZeroPoint(-0.5, 0.5, 0, 255), { scale: Math.fround(1 / 255), zeroPoint: 128 });
  t.throws(() => computeScaleZeroPoint(0, 1, 1, 255), /qmin/);
  t.throws(() => computeScaleZeroPoint(0, Infinity, 0, 255), /finite/);
});

t.test('symmetric int8: zero point 0, scale absmax / 127', async (t) => {
  t.same(computeScaleZeroPoint(-0.5, 2, -127, 127, true), { scale: Math.fround(4 / 254), zeroPoint: 0 });
  t.same(computeScaleZeroPoint(-0.5, 2, 0, 255, true), { scale: Math.fround(4 / 255), zeroPoint: 128 });
});

t.test('quantizing values: float32 division, ties to even, clipping', async (t) => {
  const p = { scale: 0.5, zeroPoint: 10 };
  t.equal(quantizeValue(1.25, p, 0, 255), 12, '2.5 -> 2, + 10');
  t.equal(quantizeValue(1.75, p, 0, 255), 14, '3.5 -> 4, + 10');
  t.equal(quantizeValue(-100, p, 0, 255), 0);
  t.equal(quantizeValue(1000, p, 0, 255), 255);
});

t.test('weights per tensor and per output channel', async (t) => {
  // 2 output channels x 3: channel 0 in [-1, 0.5], channel 1 in [-0.2, 4]
  const w = new Float32Array([-1, 0.5, 0.25, 4, -0.2, 2]);
  const pt = quantizeWeight(w, [2, 3]);
  t.equal(pt.axis, undefined);
  t.same([...pt.scales], [Math.fround(8 / 254)]);
  t.same([...pt.zeroPoints], [0]);
  t.same([...pt.data], [-32, 16, 8, 127, -6, 64]);
  const pc = quantizeWeight(w, [2, 3], { axis: 0 });
  t.same([...pc.scales], [Math.fround(2 / 254), Math.fround(8 / 254)]);
  t.same([...pc.data], [-127, 64, 32, 127, -6, 64], 'each channel uses its full range');
  t.ok(pc.data instanceof Int8Array);
  // axis 1 of a [K=2, N=3] MatMul weight: the columns
  const col = quantizeWeight(new Float32Array([1, 2, 3, -1, -4, 6]), [2, 3], { axis: 1 });
  t.same(
    [...col.scales],
    [1, 4, 6].map((m) => Math.fround((2 * m) / 254)),
  );
  t.same([...col.data], [127, 64, 64, -127, -127, 127]);
  const reduced = quantizeWeight(w, [2, 3], { axis: -2, reduceRange: true });
  t.same([...reduced.scales], [Math.fround(2 / 128), Math.fround(8 / 128)], '7-bit: [-64, 64]');
  t.same([...reduced.data], [-64, 32, 16, 64, -3, 32]);
  const u8 = quantizeWeight(new Float32Array([3]), [], { type: 'uint8' });
  t.same([...u8.scales, ...u8.zeroPoints, ...u8.data], [Math.fround(3 / 255), 0, 255], 'uint8 constant, asymmetric');
  t.throws(() => quantizeWeight(w, [2, 3], { axis: 2 }), /axis/);
});

t.test('int32 bias: scale = input scale * weight scale, zero point 0', async (t) => {
  const b = quantizeBias(new Float32Array([0.5, -0.25]), 0.01, new Float32Array([0.5, 0.1]));
  t.same([...b.scales], [Math.fround(Math.fround(0.01) * 0.5), Math.fround(Math.fround(0.01) * Math.fround(0.1))]);
  t.same([...b.data], [100, -250]);
  const shared = quantizeBias(new Float32Array([1, 2]), 0.5, new Float32Array([0.25]));
  t.same([...shared.data], [8, 16]);
  t.same([...quantizeBias(new Float32Array([1e30]), 1e-10, new Float32Array([1e-10])).data], [2147483647], 'saturates');
  t.throws(() => quantizeBias(new Float32Array(3), 1, new Float32Array(2)), /scales/);
});
