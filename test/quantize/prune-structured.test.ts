import t from 'tap';
import {
  DataType,
  encodeModel,
  makeGraph,
  makeModel,
  node,
  tensor,
  valueInfo,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from '../../src/onnx/model.js';
import { dimsOf, readFloats } from '../../src/quantize/graph.js';
import { checkConvShapes, pruneChannels, sliceAxis } from '../../src/quantize/passes/prune.js';
import { compare, lcg as rng, runFloat } from '../helpers/models.js';

// Small real graphs with seeded random weights, run through onnxruntime before and after pruning.

/** Builds graphs layer by layer; weights are random in [-0.5, 0.5) unless given. */
class Builder {
  nodes: NodeProto[] = [];
  inits: TensorProto[] = [];
  readonly rand: () => number;
  constructor(seed = 1) {
    this.rand = rng(seed);
  }
  floats(name: string, dims: number[], fill?: (i: number) => number): string {
    const n = dims.reduce((a, b) => a * b, 1);
    this.inits.push(
      tensor(
        name,
        dims,
        Float32Array.from({ length: n }, (_, i) => (fill ? fill(i) : this.rand())),
      ),
    );
    return name;
  }
  conv(name: string, x: string, cin: number, cout: number, opts: { k?: number; group?: number } = {}): string {
    const k = opts.k ?? 3;
    const group = opts.group ?? 1;
    const w = this.floats(`${name}.w`, [cout, cin / group, k, k]);
    const b = this.floats(`${name}.b`, [cout]);
    const attrs = { kernel_shape: [k, k], pads: [(k - 1) / 2, (k - 1) / 2, (k - 1) / 2, (k - 1) / 2], group };
    this.nodes.push(node('Conv', [x, w, b], [name], attrs, { name }));
    return name;
  }
  bn(name: string, x: string, c: number, gamma?: (i: number) => number): string {
    const ins = [
      this.floats(`${name}.scale`, [c], gamma ?? (() => 1 + this.rand())),
      this.floats(`${name}.bias`, [c]),
      this.floats(`${name}.mean`, [c]),
      this.floats(`${name}.var`, [c], () => 1 + this.rand()),
    ];
    this.nodes.push(node('BatchNormalization', [x, ...ins], [name], {}, { name }));
    return name;
  }
  op(opType: string, inputs: string[], name: string, attrs: Record<string, number> = {}): string {
    this.nodes.push(node(opType, inputs, [name], attrs, { name }));
    return name;
  }
  head(x: string, c: number, classes: number): string {
    this.op('GlobalAveragePool', [x], 'gap');
    this.op('Flatten', ['gap'], 'flat', { axis: 1 });
    const w = this.floats('fc.w', [classes, c]);
    const b = this.floats('fc.b', [classes]);
    this.nodes.push(node('Gemm', ['flat', w, b], ['y'], { transB: 1 }, { name: 'fc' }));
    return 'y';
  }
  model(output: string, outDims: (number | string)[], cin = 3, size = 8): ModelProto {
    return makeModel({
      graph: makeGraph({
        name: 'g',
        nodes: this.nodes,
        inputs: [valueInfo('x', DataType.FLOAT, ['N', cin, size, size])],
        outputs: [valueInfo(output, DataType.FLOAT, outDims)],
        initializers: this.inits,
      }),
    });
  }
  /** Zeroes output channels of a conv: all of its filter weights and its bias. */
  kill(conv: string, channels: number[]): void {
    for (const suffix of ['.w', '.b']) {
      const i = this.inits.findIndex((x) => x.name === conv + suffix);
      const dims = dimsOf(this.inits[i]);
      const v = readFloats(this.inits[i]);
      const per = v.length / dims[0];
      for (const c of channels) v.fill(0, c * per, (c + 1) * per);
      this.inits[i] = tensor(conv + suffix, dims, v);
    }
  }
}

function input(n: number, c = 3, size = 8, seed = 7): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n * c * size * size }, () => r() * 4);
}

function run(model: ModelProto, x: Float32Array, dims: number[], output = 'y'): Promise<Float32Array> {
  return runFloat(model, { name: 'x', data: x, dims }, output);
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  return compare(a, b).maxAbs;
}

function shapes(m: ModelProto): Record<string, number[]> {
  return Object.fromEntries(m.graph!.initializer.map((x) => [x.name, dimsOf(x)]));
}

/** Conv -> BN -> Relu -> Conv -> GlobalAveragePool -> Flatten -> Gemm. */
function plainChain(gamma?: (i: number) => number): ModelProto {
  const b = new Builder(3);
  b.conv('c1', 'x', 3, 8);
  b.bn('bn1', 'c1', 8, gamma);
  b.op('Relu', ['bn1'], 'r1');
  b.conv('c2', 'r1', 8, 6);
  b.head('c2', 6, 4);
  return b.model('y', ['N', 4]);
}

t.test('plain chain: exact shapes after pruning, and the model runs', async (t) => {
  const m = plainChain();
  t.same(checkConvShapes(m), []);
  const r = pruneChannels(m, { ratio: 0.25 });
  t.same(
    r.layers.map((l) => [l.node, l.before, l.after, l.importance]),
    [
      ['c1', 8, 6, 'l1'],
      ['c2', 6, 5, 'l1'],
    ],
  );
  t.same(r.skipped, []);
  t.same(shapes(r.model), {
    'c1.w': [6, 3, 3, 3],
    'c1.b': [6],
    'bn1.scale': [6],
    'bn1.bias': [6],
    'bn1.mean': [6],
    'bn1.var': [6],
    'c2.w': [5, 6, 3, 3],
    'c2.b': [5],
    'fc.w': [4, 5],
    'fc.b': [4],
  });
  t.same(checkConvShapes(r.model), []);
  t.equal(m.graph!.initializer.find((x) => x.name === 'c1.w')!.dims[0], 8n, 'the input model is untouched');
  const y = await run(r.model, input(2), [2, 3, 8, 8]);
  t.equal(y.length, 8);
  t.ok(y.every(Number.isFinite));
});

t.test('l1 keeps the largest filters, bn-gamma the largest |gamma|, both in channel order', async (t) => {
  // gamma: channels 2 and 5 are tiny, so slimming drops exactly them.
  const m = plainChain((i) => (i === 2 || i === 5 ? 0.01 * (i === 2 ? -1 : 1) : 1 + i / 10));
  const w = readFloats(m.graph!.initializer.find((x) => x.name === 'c1.w')!);
  const l1 = Array.from({ length: 8 }, (_, o) => w.slice(o * 27, (o + 1) * 27).reduce((a, v) => a + Math.abs(v), 0));
  const byL1 = [...l1.keys()]
    .sort((a, b) => l1[a] - l1[b])
    .slice(2)
    .sort((a, b) => a - b);
  const rows = (model: ModelProto) => {
    const pruned = readFloats(model.graph!.initializer.find((x) => x.name === 'c1.w')!);
    return Array.from({ length: pruned.length / 27 }, (_, o) => w.findIndex((v) => v === pruned[o * 27]) / 27);
  };
  t.same(rows(pruneChannels(m, { ratio: 0.25 }).model), byL1);
  const slim = pruneChannels(m, { ratio: 0.25, importance: 'bn-gamma' });
  t.same(rows(slim.model), [0, 1, 3, 4, 6, 7]);
  t.equal(slim.layers[0].importance, 'bn-gamma');
  t.equal(slim.layers[1].importance, 'l1 (no BatchNormalization)', 'c2 has no BN after it');
});

t.test('dead channels: pruning exactly them leaves the outputs unchanged', async (t) => {
  // Conv -> Relu -> depthwise Conv -> Relu -> Conv -> head. Channels 1, 4 of c1 are dead (0 weights, 0 bias), and
  // the depthwise bias of those channels is 0 too, so they stay exactly 0 up to c3, which ignores them once pruned.
  const b = new Builder(11);
  b.conv('c1', 'x', 3, 8);
  b.op('Relu', ['c1'], 'r1');
  b.conv('dw', 'r1', 8, 8, { group: 8 });
  b.op('Relu', ['dw'], 'r2');
  b.conv('c3', 'r2', 8, 5, { k: 1 });
  b.head('c3', 5, 3);
  b.kill('c1', [1, 4]);
  const dwb = b.inits.findIndex((x) => x.name === 'dw.b');
  const bias = readFloats(b.inits[dwb]);
  bias[1] = bias[4] = 0;
  b.inits[dwb] = tensor('dw.b', [8], bias);
  const m = b.model('y', ['N', 3]);

  const r = pruneChannels(m, { perLayer: { c1: 0.25 } });
  t.same(
    r.layers.map((l) => [l.node, l.after, l.group]),
    [
      ['c1', 6, 'c1'],
      ['dw', 6, 'c1'],
      ['c3', 5, 'c3'],
    ],
  );
  t.same(shapes(r.model)['dw.w'], [6, 1, 3, 3]);
  t.equal(Number(r.model.graph!.node.find((n) => n.name === 'dw')!.attribute.find((a) => a.name === 'group')!.i), 6);
  t.same(shapes(r.model)['c3.w'], [5, 6, 1, 1]);
  const x = input(3);
  t.ok(maxDiff(await run(m, x, [3, 3, 8, 8]), await run(r.model, x, [3, 3, 8, 8])) < 1e-5);
});

t.test('Resize with channel scale 1 passes channels through; one that resizes channels does not', async (t) => {
  // Conv -> Relu -> Resize (x2 spatially, nearest) -> Conv -> head, with channels 1 and 4 of c1 dead: pruning them
  // through the Resize leaves the outputs unchanged
  const b = new Builder(13);
  b.conv('c1', 'x', 3, 8);
  b.op('Relu', ['c1'], 'r1');
  b.floats('scales', [4], (i) => [1, 1, 2, 2][i]);
  b.nodes.push(node('Resize', ['r1', '', 'scales'], ['up'], {}, { name: 'up' }));
  b.conv('c3', 'up', 8, 5, { k: 1 });
  b.head('c3', 5, 3);
  b.kill('c1', [1, 4]);
  const m = b.model('y', ['N', 3]);
  const r = pruneChannels(m, { perLayer: { c1: 0.25 } });
  t.same(
    r.layers.map((l) => [l.node, l.after]),
    [
      ['c1', 6],
      ['c3', 5],
    ],
  );
  t.same(shapes(r.model)['c3.w'], [5, 6, 1, 1]);
  const x = input(3);
  t.ok(maxDiff(await run(m, x, [3, 3, 8, 8]), await run(r.model, x, [3, 3, 8, 8])) < 1e-5, 'same outputs');

  const channels = new Builder(13);
  channels.conv('c1', 'x', 3, 8);
  channels.floats('scales', [4], (i) => [1, 2, 2, 2][i]);
  channels.nodes.push(node('Resize', ['c1', '', 'scales'], ['up'], {}, { name: 'up' }));
  channels.conv('c3', 'up', 16, 5, { k: 1 });
  channels.head('c3', 5, 3);
  const refused = pruneChannels(channels.model('y', ['N', 3]), { ratio: 0.25 });
  t.match(refused.skipped, [{ node: 'c1', reason: /does not keep its batch and channel scales at 1/ }]);
});

t.test('residual Add and squeeze-excitation Mul: all joined producers lose the same channels', async (t) => {
  // c1 -> hardswish (Add/Clip/Mul/Div) -> c2 ; SE: GAP -> se1 -> Relu -> se2 -> HardSigmoid ; Mul -> c3 ; Add(c1, c3)
  const b = new Builder(5);
  const three = b.floats('three', [], () => 3);
  const six = b.floats('six', [], () => 6);
  b.conv('c1', 'x', 3, 8);
  b.op('Add', ['c1', three], 'hs.a');
  b.op('Clip', ['hs.a', b.floats('zero', [], () => 0), six], 'hs.c'); // scalar min/max inputs carry no channels
  b.op('Mul', ['c1', 'hs.c'], 'hs.m');
  b.op('Div', ['hs.m', six], 'hs');
  b.conv('c2', 'hs', 8, 8, { k: 1 });
  b.op('GlobalAveragePool', ['c2'], 'se.p');
  b.conv('se1', 'se.p', 8, 4, { k: 1 });
  b.op('Relu', ['se1'], 'se.r');
  b.conv('se2', 'se.r', 4, 8, { k: 1 });
  b.op('HardSigmoid', ['se2'], 'se.s');
  b.op('Mul', ['c2', 'se.s'], 'se');
  b.conv('c3', 'se', 8, 8, { k: 1 });
  b.op('Add', ['c1', 'c3'], 'res');
  b.conv('c4', 'res', 8, 4, { k: 1 });
  b.head('c4', 4, 2);
  // Dead residual channels 0 and 6 in both producers; dead c2 and se2 channels 3 and 5 (HardSigmoid(0) = 0.5 but
  // it multiplies c2's zeros).
  b.kill('c1', [0, 6]);
  b.kill('c3', [0, 6]);
  b.kill('c2', [3, 5]);
  b.kill('se2', [3, 5]);
  const m = b.model('y', ['N', 2]);

  const r = pruneChannels(m, { ratio: 0.25 });
  const by = Object.fromEntries(r.layers.map((l) => [l.node, l]));
  t.equal(by.c3.group, 'c1', 'residual: c1 and c3 form one group');
  t.equal(by.se2.group, 'c2', 'SE: the excitation conv joins the group it scales');
  t.same(shapes(r.model)['c1.w'], [6, 3, 3, 3]);
  t.same(shapes(r.model)['c3.w'], [6, 6, 1, 1]);
  t.same(shapes(r.model)['se1.w'], [3, 6, 1, 1]);
  t.same(shapes(r.model)['se2.w'], [6, 3, 1, 1]);
  t.same(shapes(r.model)['c4.w'], [3, 6, 1, 1]);
  // se1 has 4 channels: ratio 0.25 removes one, which is not dead, so compare with se1 left alone.
  const exact = pruneChannels(m, { ratio: 0.25, excludeNodes: ['se1', 'c4'] });
  t.same(exact.skipped.map((s) => s.node).sort(), ['c4', 'se1']);
  t.match(exact.skipped[0].reason, /excluded/);
  const x = input(2);
  t.ok(maxDiff(await run(m, x, [2, 3, 8, 8]), await run(exact.model, x, [2, 3, 8, 8])) < 1e-5);
  t.same(checkConvShapes(r.model), []);
  await run(r.model, x, [2, 3, 8, 8]);
});

t.test('left alone and reported: residual from the graph input, Concat, grouped conv, graph output', async (t) => {
  const b = new Builder(9);
  b.conv('c1', 'x', 3, 3); // Add with the graph input: x cannot lose channels
  b.op('Add', ['c1', 'x'], 'res');
  b.conv('c2', 'res', 3, 4);
  b.conv('c3', 'res', 3, 4);
  b.nodes.push(node('Concat', ['c2', 'c3'], ['cat'], { axis: 1 }, { name: 'cat' }));
  b.conv('g4', 'cat', 8, 8, { group: 2 });
  b.conv('c5', 'g4', 8, 6);
  const m = b.model('c5', ['N', 6, 8, 8]);
  const r = pruneChannels(m, { ratio: 0.5 });
  t.same(r.layers, []);
  const why = Object.fromEntries(r.skipped.map((s) => [s.node, s.reason]));
  t.match(why.c1, /'x' is a graph input/);
  t.match(why.c2, /Concat 'cat'/);
  t.match(why.c3, /Concat 'cat'/);
  t.match(why.g4, /grouped Conv \(group=2\)/);
  t.match(why.c5, /graph output/);
  t.same(encodeModel(r.model), encodeModel(m), 'nothing changed');
});

t.test('value_info of pruned tensors is fixed, and inconsistent graphs are detected', async (t) => {
  const m = plainChain();
  m.graph!.valueInfo.push(
    valueInfo('r1', DataType.FLOAT, ['N', 8, 8, 8]),
    valueInfo('flat', DataType.FLOAT, ['N', 6]),
    valueInfo('gap', DataType.FLOAT),
  );
  const r = pruneChannels(m, { ratio: 0.5 });
  const vi = r.model.graph!.valueInfo;
  t.same(
    vi.map((v) => v.name),
    ['r1', 'flat'],
    'a shape without a fixed channel dim is dropped',
  );
  const dim = (i: number) => {
    const type = vi[i].type!.value;
    return type.case === 'tensorType' ? type.value.shape!.dim[1].value.value : undefined;
  };
  t.equal(dim(0), 4n);
  t.equal(dim(1), 3n);
  await run(r.model, input(1), [1, 3, 8, 8]);

  // A checker that misses nothing the pass could break.
  const bad = plainChain();
  const init = bad.graph!.initializer;
  const i = init.findIndex((x) => x.name === 'c2.w');
  init[i] = sliceAxis(init[i], 1, [0, 1, 2]);
  const j = init.findIndex((x) => x.name === 'bn1.mean');
  init[j] = sliceAxis(init[j], 0, [0]);
  const k = init.findIndex((x) => x.name === 'fc.w');
  init[k] = sliceAxis(init[k], 1, [0]);
  t.same(checkConvShapes(bad), [
    "BatchNormalization 'bn1': input 3 length is 1, expected 8",
    "Conv 'c2': weight dim 1 x group is 3, expected 8",
    "Gemm 'fc': weight input dim is 1, expected 6",
  ]);
});

t.test('options are validated; minChannels bounds the pruning', async (t) => {
  const m = plainChain();
  t.throws(() => pruneChannels(m, { ratio: 1 }), /ratio must be in \[0, 1\)/);
  t.throws(() => pruneChannels(m, { perLayer: { c1: -0.1 } }), /perLayer\['c1'\]/);
  t.throws(() => pruneChannels(m, { perLayer: { fc: 0.5 } }), /not a Conv/);
  t.throws(() => pruneChannels(m, { minChannels: 0 }), /minChannels/);
  t.doesNotThrow(() => pruneChannels(m, { excludeNodes: ['no-such-node'] }), 'unknown excluded names are ignored');
  const r = pruneChannels(m, { ratio: 0.9, minChannels: 4 });
  t.same(
    r.layers.map((l) => l.after),
    [4, 4],
  );
  const one = pruneChannels(m, { ratio: 0.99 });
  t.same(
    one.layers.map((l) => l.after),
    [1, 1],
  );
  await run(one.model, input(1), [1, 3, 8, 8]);
});

t.test('output drift grows with the ratio on random weights', async (t) => {
  const b = new Builder(21);
  b.conv('c1', 'x', 3, 16);
  b.op('Relu', ['c1'], 'r1');
  b.conv('c2', 'r1', 16, 16);
  b.op('Relu', ['c2'], 'r2');
  b.conv('c3', 'r2', 16, 16);
  b.head('c3', 16, 4);
  const m = b.model('y', ['N', 4]);
  const x = input(4);
  const ref = await run(m, x, [4, 3, 8, 8]);
  const drift: number[] = [];
  for (const ratio of [0, 0.25, 0.5, 0.75]) {
    const y = await run(pruneChannels(m, { ratio }).model, x, [4, 3, 8, 8]);
    drift.push(y.reduce((a, v, i) => a + Math.abs(v - ref[i]), 0) / y.length);
  }
  t.equal(drift[0], 0);
  for (let i = 1; i < drift.length; i++) t.ok(drift[i] > drift[i - 1], `drift ${drift.join(', ')} increases`);
});

t.test('activation and reconstruction rank by calibration statistics, and need them', async (t) => {
  const m = plainChain();
  t.throws(() => pruneChannels(m, { ratio: 0.25, importance: 'activation' }), RangeError);
  t.throws(() => pruneChannels(m, { ratio: 0.25, importance: 'reconstruction' }), RangeError);
  // channels 2 and 5 of r1 (what c2 reads) are never active: they feed c2 nothing, whatever their filters' L1
  const meanSquare = Float64Array.from({ length: 8 }, (_, i) => (i === 2 || i === 5 ? 0 : 1 + i));
  const inputStats = new Map([['r1', { meanSquare }]]);
  const keptOf = (r: ReturnType<typeof pruneChannels>) =>
    dimsOf(r.model.graph!.initializer.find((x) => x.name === 'c1.w')!)[0];
  for (const importance of ['activation', 'reconstruction'] as const) {
    const r = pruneChannels(m, { ratio: 0.25, importance, inputStats });
    t.equal(keptOf(r), 6);
    t.same(
      r.layers.map((l) => [l.node, l.importance]),
      [
        ['c1', 'activation'], // reconstruction needs pointwise readers; c2 is 3 x 3
        ['c2', 'l1 (no activation data for a layer reading it)'],
      ],
      importance,
    );
    const w = readFloats(m.graph!.initializer.find((x) => x.name === 'c1.w')!);
    const pruned = readFloats(r.model.graph!.initializer.find((x) => x.name === 'c1.w')!);
    const rows = Array.from({ length: 6 }, (_, o) => w.findIndex((v) => v === pruned[o * 27]) / 27);
    t.same(rows, [0, 1, 3, 4, 6, 7], 'the silent channels go');
  }
});
