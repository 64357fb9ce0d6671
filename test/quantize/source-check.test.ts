import path from 'node:path';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { readManifest } from '../../src/models/folder.js';
import { DataType, decodeModel, makeGraph, makeModel, node, tensor, valueInfo } from '../../src/onnx/model.js';
import { convertFp16 } from '../../src/quantize/passes/fp16.js';
import { compressedEvidence } from '../../src/quantize/source-check.js';

// What shows that a source was compressed already (muon-compress refuses it unless asked): a compression record,
// quantized ops, 16-bit float weights, in subgraphs and functions too; nothing on an original.

const root = path.resolve(import.meta.dirname, '../..');
/** y = x + w, w a float initializer. */
const add = () =>
  makeModel({
    graph: makeGraph({
      name: 'g',
      nodes: [node('Add', ['x', 'w'], ['y'])],
      inputs: [valueInfo('x', DataType.FLOAT, [1, 4])],
      outputs: [valueInfo('y', DataType.FLOAT, [1, 4])],
      initializers: [tensor('w', [1, 4], new Float32Array([1, 2, 3, 4]))],
    }),
  });

t.test('an original: nothing', async (t) => {
  t.same(compressedEvidence(add()), []);
  const { manifest } = await readManifest(path.join(root, 'models/text-orientation-fp32'));
  t.same(compressedEvidence(add(), manifest), [], 'nor from an original manifest');
});

t.test('the served int8 default: its record and its quantized ops', async (t) => {
  const dir = path.join(root, 'models/text-recognition');
  const { manifest } = await readManifest(dir);
  const found = compressedEvidence(decodeModel(readFileSync(path.join(dir, 'model.onnx'))), manifest);
  t.match(found, [
    /its manifest records a compression \(int8-static\)/,
    /its graph has quantized ops \(\d+ DequantizeLinear/,
  ]);
});

t.test('float16 weights, in initializers and in a Constant', async (t) => {
  t.match(compressedEvidence(convertFp16(add())), [/1 of its weights are 16-bit floats/]);
  const constant = makeModel({
    graph: makeGraph({
      name: 'g',
      nodes: [node('Constant', [], ['y'], { value: tensor('v', [1], new Uint16Array([0x3c00]), DataType.FLOAT16) })],
      inputs: [],
      outputs: [valueInfo('y', DataType.FLOAT16, [1])],
    }),
  });
  t.match(compressedEvidence(constant), [/1 of its weights are 16-bit floats/]);
});
