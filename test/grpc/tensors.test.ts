import { fromBinary } from '@bufbuild/protobuf';
import t from 'tap';
import { ModelInferResponseSchema } from '../../src/grpc/gen/grpc_service_pb.js';
import { encodeModelInfer } from '../../src/grpc/tensors.js';
import type { HostTensor } from '../../src/models/session.js';
import type { InferRequest } from '../../src/protocol/v2-codec.js';

// ModelInfer's answer is encoded by hand where its outputs go typed (grpc/tensors.ts writes each packed contents
// field from the tensor's array): protobuf-es must read back exactly the values, for every type and its edges.

const model = { name: 'm', version: '1' };
const typed: InferRequest = { feeds: {}, binaryOutput: false };

t.test('typed outputs decode to their values, every type and its edges', async (t) => {
  const outputs: Record<string, HostTensor> = {
    f: { type: 'float32', dims: [4], data: Float32Array.from([1.5, -0, -3.25e38, 1e-40]) },
    i: { type: 'int32', dims: [8], data: Int32Array.from([0, 1, -1, 127, 128, 2 ** 31 - 1, -(2 ** 31), -300]) },
    l: {
      type: 'int64',
      dims: [8],
      data: BigInt64Array.from([0n, 1n, -1n, 300n, 2n ** 35n, 2n ** 63n - 1n, -(2n ** 63n), -(2n ** 40n)]),
    },
    u: { type: 'uint8', dims: [5], data: Uint8Array.from([0, 1, 127, 128, 255]) },
    b: { type: 'bool', dims: [3], data: Uint8Array.from([0, 1, 7]) },
    e: { type: 'float32', dims: [0], data: new Float32Array(0) },
  };
  const { response, bytes } = encodeModelInfer(model, { ...typed, id: 'req-1' }, outputs);
  t.ok(bytes >= response.length);
  const m = fromBinary(ModelInferResponseSchema, response);
  t.equal(m.modelName, 'm');
  t.equal(m.modelVersion, '1');
  t.equal(m.id, 'req-1');
  t.same(m.rawOutputContents, []);
  t.same(
    m.outputs.map((o) => [o.name, o.datatype, o.shape.map(Number)]),
    [
      ['f', 'FP32', [4]],
      ['i', 'INT32', [8]],
      ['l', 'INT64', [8]],
      ['u', 'UINT8', [5]],
      ['b', 'BOOL', [3]],
      ['e', 'FP32', [0]],
    ],
  );
  const [f, i, l, u, b, e] = m.outputs.map((o) => o.contents!);
  t.same(f.fp32Contents, [...(outputs.f.data as Float32Array)]);
  t.ok(Object.is(f.fp32Contents[1], -0), '-0 stays -0');
  t.same(i.intContents, [...(outputs.i.data as Int32Array)]);
  t.same(l.int64Contents, [...(outputs.l.data as BigInt64Array)]);
  t.same(u.uintContents, [0, 1, 127, 128, 255]);
  t.same(b.boolContents, [false, true, true]);
  t.same(e.fp32Contents, []);
});

t.test('raw outputs, and the outputs asked for in their order', async (t) => {
  const outputs: Record<string, HostTensor> = {
    a: { type: 'float32', dims: [2], data: Float32Array.from([1, 2]) },
    b: { type: 'int64', dims: [1], data: BigInt64Array.from([5n]) },
  };
  const raw = fromBinary(
    ModelInferResponseSchema,
    encodeModelInfer(model, { ...typed, binaryOutput: true }, outputs).response,
  );
  t.same(
    raw.outputs.map((o) => o.name),
    ['a', 'b'],
  );
  t.same([...new Float32Array(new Uint8Array(raw.rawOutputContents[0]).buffer)], [1, 2]);
  const some = fromBinary(
    ModelInferResponseSchema,
    encodeModelInfer(model, { ...typed, outputs: [{ name: 'b' }] } as never, outputs).response,
  );
  t.same(
    some.outputs.map((o) => [o.name, o.contents?.int64Contents]),
    [['b', [5n]]],
  );
  t.throws(() => encodeModelInfer(model, { ...typed, outputs: [{ name: 'nope' }] } as never, outputs), {
    code: 'MUON_ERR_INVALID_TENSOR',
  });
});
