import { create } from '@bufbuild/protobuf';
import { TensorProto_DataType, TensorProtoSchema, type TensorProto } from './proto/onnx_pb.js';

// Initializer and constant tensors for the graph builder (see model.ts, which re-exports these).

/** Typed arrays accepted as tensor contents by {@link tensor}. */
export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/**
 * Infer the ONNX element type of a typed array.
 *
 * @param data - tensor contents
 * @returns the matching `DataType` (a `Uint8Array` maps to UINT8; pass an explicit
 *   type to {@link tensor} for BOOL)
 */
export function dataTypeOf(data: TensorData): TensorProto_DataType {
  if (data instanceof Float32Array) return TensorProto_DataType.FLOAT;
  if (data instanceof Float64Array) return TensorProto_DataType.DOUBLE;
  if (data instanceof Int8Array) return TensorProto_DataType.INT8;
  if (data instanceof Uint8Array) return TensorProto_DataType.UINT8;
  if (data instanceof Int16Array) return TensorProto_DataType.INT16;
  if (data instanceof Uint16Array) return TensorProto_DataType.UINT16;
  if (data instanceof Int32Array) return TensorProto_DataType.INT32;
  if (data instanceof Uint32Array) return TensorProto_DataType.UINT32;
  if (data instanceof BigInt64Array) return TensorProto_DataType.INT64;
  return TensorProto_DataType.UINT64;
}

// True on every platform Node realistically runs on (x86-64, arm64); checked anyway
// because ONNX raw_data is defined as little-endian and a silent byte-order bug in
// model weights would be very hard to diagnose.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Build an initializer / constant tensor.
 *
 * Contents are stored in `raw_data` (little-endian bytes), like PyTorch and
 * onnx.numpy_helper do: it is the most compact encoding and the one every runtime
 * reads, instead of the type-specific repeated fields (`float_data`, ...).
 *
 * @param name - tensor name (the graph value it defines when used as an initializer)
 * @param dims - shape; the product must equal `data.length` (`[]` for a scalar)
 * @param data - contents in row-major order; the element type is inferred from it
 * @param dataType - override the inferred type when the array type is ambiguous,
 *   e.g. `DataType.BOOL` for a `Uint8Array` of 0/1 (must have the same byte width)
 * @returns a `TensorProto`
 * @throws if the element count does not match `dims`, or the override changes width
 */
export function tensor(
  name: string,
  dims: readonly (number | bigint)[],
  data: TensorData,
  dataType: TensorProto_DataType = dataTypeOf(data),
): TensorProto {
  const shape = dims.map(toInt64);
  const count = shape.reduce((a, b) => a * b, 1n);
  if (count !== BigInt(data.length)) {
    throw new RangeError(
      `tensor ${name}: dims [${dims.join(', ')}] hold ${count} elements but data has ${data.length}`,
    );
  }
  const reinterpretable =
    (dataType === TensorProto_DataType.BOOL && data instanceof Uint8Array) ||
    ((dataType === TensorProto_DataType.FLOAT16 || dataType === TensorProto_DataType.BFLOAT16) &&
      data instanceof Uint16Array);
  if (dataType !== dataTypeOf(data) && !reinterpretable) {
    throw new TypeError(`tensor ${name}: cannot store a ${data.constructor.name} as ${TensorProto_DataType[dataType]}`);
  }
  // Copy: the caller's array may be a view into a larger buffer, and the proto must
  // not alias memory the caller can still mutate.
  const raw = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  /* c8 ignore start -- big-endian hosts only; CI runs on little-endian x86-64/arm64 */
  if (!LITTLE_ENDIAN && data.BYTES_PER_ELEMENT > 1) {
    const w = data.BYTES_PER_ELEMENT;
    for (let i = 0; i < raw.length; i += w) raw.subarray(i, i + w).reverse();
  }
  /* c8 ignore stop */
  return create(TensorProtoSchema, { name, dims: shape, dataType, rawData: raw });
}

/** Convert to int64, refusing fractional or unsafe numbers (which would lose precision). */
export function toInt64(v: number | bigint): bigint {
  if (typeof v === 'bigint') return v;
  if (!Number.isSafeInteger(v)) throw new RangeError(`not a safe integer: ${v}`);
  return BigInt(v);
}
