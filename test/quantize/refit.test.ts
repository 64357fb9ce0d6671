import t from 'tap';
import { DataType, makeGraph, makeModel, node, tensor, valueInfo } from '../../src/onnx/model.js';
import {
  channelsOf,
  POINTWISE,
  refitConv,
  RefitSkipped,
  type ConvGeometry,
  type FeatureMap,
} from '../../src/quantize/passes/refit.js';
import { compare, gaussian, mulberry32, runFloat } from '../helpers/models.js';

// The least-squares refit of a layer whose input channels were pruned: a layer pruned and refit reproduces the
// unpruned layer's outputs on its calibration data (exactly, when the removed channels are combinations of the kept
// ones), far better than pruning alone, and onnxruntime's Conv with the refit weights computes what the refit says.

/**
 * Samples of a [C, H, W] input whose channels past `free` are fixed combinations of the first `free` (plus `noise`
 * of their own): what makes channels redundant, and pruning them recoverable. The combinations depend on C and
 * `free` only, so held-out samples (another `seed`) share them.
 */
function inputs(n: number, C: number, free: number, h: number, w: number, noise: number, seed = 1): FeatureMap[] {
  const mix = gaussian((C - free) * free, 0.5, mulberry32(1000 + C * 31 + free));
  const r = mulberry32(seed);
  return Array.from({ length: n }, () => {
    const data = gaussian(C * h * w, 1, r);
    const plane = h * w;
    for (let c = free; c < C; c++)
      for (let p = 0; p < plane; p++) {
        let v = 0;
        for (let k = 0; k < free; k++) v += mix[(c - free) * free + k] * data[k * plane + p];
        data[c * plane + p] = v + noise * data[c * plane + p];
      }
    return { data, channels: C, height: h, width: w };
  });
}

/** One Conv as a model: x [1, C, H, W] -> y. */
function conv(weight: Float32Array, bias: Float32Array, M: number, C: number, g: ConvGeometry) {
  const [kh, kw] = g.kernel;
  return makeModel({
    graph: makeGraph({
      name: 'conv',
      nodes: [
        node('Conv', ['x', 'w', 'b'], ['y'], {
          kernel_shape: [kh, kw],
          strides: [...g.strides],
          pads: [...g.pads],
          dilations: [...g.dilations],
        }),
      ],
      inputs: [valueInfo('x', DataType.FLOAT, [1, C, 'h', 'w'])],
      outputs: [valueInfo('y', DataType.FLOAT)],
      initializers: [tensor('w', [M, C, kh, kw], weight), tensor('b', [M], bias)],
    }),
  });
}

const geometries: [string, ConvGeometry][] = [
  ['3x3, padded', { kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1] }],
  [
    '3x2, stride 2, dilation 2, uneven padding',
    { kernel: [3, 2], strides: [2, 2], pads: [2, 0, 1, 1], dilations: [2, 2] },
  ],
  ['1x1', POINTWISE],
];

for (const [name, g] of geometries) {
  t.test(`${name}: removed channels that the kept ones explain are recovered exactly`, async (t) => {
    const [C, M, free] = [8, 5, 6];
    const r = mulberry32(7);
    const [kh, kw] = g.kernel;
    const weight = gaussian(M * C * kh * kw, 0.4, r);
    const bias = gaussian(M, 0.1, r);
    const calibration = inputs(6, C, free, 9, 11, 0);
    const kept = [0, 1, 2, 3, 4, 5];
    const fit = refitConv(weight, bias, M, g, calibration, kept);
    t.ok(fit.error.pruned > 1e-2, `pruning alone: relative error ${fit.error.pruned.toExponential(2)}`);
    t.ok(fit.error.refit < 1e-6, `refit: relative error ${fit.error.refit.toExponential(2)}`);

    // onnxruntime: the refit Conv on the kept channels of a held-out input computes the unpruned Conv's output
    const held = inputs(1, C, free, 9, 11, 0, 99)[0];
    const original = await runFloat(
      conv(weight, bias, M, C, g),
      { name: 'x', data: held.data, dims: [1, C, 9, 11] },
      'y',
    );
    const pruned = await runFloat(
      conv(fit.weight, fit.bias, M, kept.length, g),
      { name: 'x', data: channelsOf(held, kept).data, dims: [1, kept.length, 9, 11] },
      'y',
    );
    const c = compare(original, pruned);
    t.ok(c.cosine > 0.99999, `held-out output cosine ${c.cosine}`);
    t.ok(c.maxAbs < 1e-2, `max abs error ${c.maxAbs}`);
  });
}

t.test('all channels kept: the refit is the layer itself', async (t) => {
  const [C, M] = [4, 3];
  const g = geometries[1][1];
  const r = mulberry32(3);
  const weight = gaussian(M * C * 6, 0.4, r);
  const bias = gaussian(M, 0.1, r);
  const fit = refitConv(weight, bias, M, g, inputs(4, C, C, 12, 10, 0), [0, 1, 2, 3], { ridge: 1e-9 });
  t.ok(fit.error.refit < 1e-8 && fit.error.pruned < 1e-12, 'no error either way');
  t.ok(compare(weight, fit.weight).maxAbs < 1e-3, 'the same weights');
});

t.test('partly redundant channels: the refit halves the error of pruning alone, at least', async (t) => {
  const [C, M] = [12, 6];
  const r = mulberry32(5);
  const weight = gaussian(M * C * 9, 0.3, r);
  const fit = refitConv(
    weight,
    undefined,
    M,
    geometries[0][1],
    inputs(8, C, 8, 10, 10, 0.3),
    [0, 1, 2, 3, 4, 5, 6, 7, 9],
  );
  t.ok(fit.error.refit < fit.error.pruned / 2, `${fit.error.pruned.toFixed(3)} -> ${fit.error.refit.toFixed(3)}`);
  t.ok(fit.error.refit > 0, 'noise no kept channel explains stays');
});

t.test('bad arguments', async (t) => {
  const x = inputs(1, 2, 2, 3, 3, 0);
  t.throws(() => refitConv(new Float32Array(3), undefined, 1, POINTWISE, x, [0]), /weight has 3 values/);
  t.throws(() => refitConv(new Float32Array(2), undefined, 1, POINTWISE, x, [1, 0]), /kept must be ascending/);
  t.throws(() => refitConv(new Float32Array(2), undefined, 1, POINTWISE, [], [0]), /at least one input sample/);
});

t.test('sampled positions do not line up with the inputs: every kernel tap is fit', async (t) => {
  // 1,024 maps of 8 x 8: 65,536 positions, 8,192 sampled; spaced evenly they would all be column 0 of each map,
  // where the kernel's left column reads padding, and the fit could not see that column's weights
  const [C, M] = [2, 3];
  const g = geometries[0][1];
  const r = mulberry32(9);
  const weight = gaussian(M * C * 9, 0.4, r);
  const maps = inputs(1024, C, C, 8, 8, 0, 4);
  const fit = refitConv(weight, new Float32Array(M), M, g, maps, [0, 1], { ridge: 1e-9 });
  t.ok(
    compare(weight, fit.weight).maxAbs < 1e-3,
    `every tap's weight recovered (max abs ${compare(weight, fit.weight).maxAbs})`,
  );
});

t.test('what cannot be fit is skipped with its reason, not a crash', async (t) => {
  const x = inputs(5, 2, 2, 4, 4, 0);
  x[2].data[3] = Number.NaN;
  t.throws(() => refitConv(gaussian(2, 0.3, mulberry32(1)), undefined, 1, POINTWISE, x, [0]), RefitSkipped);
  const wide = inputs(1, 200, 200, 3, 3, 0);
  t.throws(
    () => refitConv(new Float32Array(200 * 9), undefined, 1, geometries[0][1], wide, [...Array(180).keys()]),
    /1621 weights per output: more than 1536/,
  );
  const few = inputs(1, 40, 40, 2, 2, 0);
  t.throws(
    () => refitConv(new Float32Array(40), undefined, 1, POINTWISE, few, [...Array(30).keys()]),
    /4 output positions for 31 weights per output: too few to fit/,
  );
});
