import { create } from '@bufbuild/protobuf';
import type { TensorProto } from '../../onnx/model.js';
import { DataType } from '../../onnx/model.js';
import { TensorProtoSchema } from '../../onnx/proto/onnx_pb.js';
import { dimsOf, elementCount } from '../graph.js';

// Initializers read as bytes and sliced along an axis: what the pruning passes rewrite weights with.

const WIDTH: Partial<Record<DataType, number>> = {
  [DataType.FLOAT]: 4,
  [DataType.DOUBLE]: 8,
  [DataType.FLOAT16]: 2,
  [DataType.BFLOAT16]: 2,
  [DataType.INT64]: 8,
  [DataType.INT32]: 4,
  [DataType.INT8]: 1,
  [DataType.UINT8]: 1,
};

/**
 * The little-endian element bytes of a dense initializer, whichever field stores them (`raw_data` or a typed field),
 * and the element width. The bytes may be a view of the tensor's own storage: copy before writing.
 *
 * @throws for external data and for element types other than float, double, float16, bfloat16, int8/32/64, uint8
 */
export function elementBytes(t: TensorProto): { bytes: Uint8Array; width: number } {
  const width = WIDTH[t.dataType as DataType];
  if (!width) throw new Error(`initializer '${t.name}' has type ${DataType[t.dataType]}, which pruning cannot slice`);
  if (t.rawData.length > 0) return { bytes: t.rawData, width };
  if (t.externalData.length > 0) throw new Error(`initializer '${t.name}' is stored as external data`);
  const n = elementCount(t);
  switch (t.dataType) {
    case DataType.FLOAT:
      return { bytes: new Uint8Array(Float32Array.from(t.floatData).buffer), width };
    case DataType.DOUBLE:
      return { bytes: new Uint8Array(Float64Array.from(t.doubleData).buffer), width };
    case DataType.INT64:
      return { bytes: new Uint8Array(BigInt64Array.from(t.int64Data).buffer), width };
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
      return { bytes: new Uint8Array(Uint16Array.from(t.int32Data).buffer), width };
    default: {
      const a = t.dataType === DataType.INT32 ? Int32Array.from(t.int32Data) : Int8Array.from(t.int32Data);
      return { bytes: new Uint8Array(a.buffer, 0, n * width), width };
    }
  }
}

/**
 * A copy of `t` keeping only the given indices along `axis` (same name, same element type, stored as raw data).
 *
 * @param t - a dense initializer
 * @param axis - the axis to slice
 * @param keep - indices to keep, in the order they should appear
 */
export function sliceAxis(t: TensorProto, axis: number, keep: readonly number[]): TensorProto {
  const dims = dimsOf(t);
  const { bytes, width } = elementBytes(t);
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1) * width;
  const out = new Uint8Array(outer * keep.length * inner);
  let at = 0;
  for (let o = 0; o < outer; o++) {
    for (const k of keep) {
      const from = (o * dims[axis] + k) * inner;
      out.set(bytes.subarray(from, from + inner), at);
      at += inner;
    }
  }
  dims[axis] = keep.length;
  return create(TensorProtoSchema, { name: t.name, dims: dims.map(BigInt), dataType: t.dataType, rawData: out });
}
