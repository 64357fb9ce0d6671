import { Errors } from '../errors.js';
import type { HostTensor, TensorType } from '../models/session.js';
import { isTensorType } from '../models/tensors.js';
import { floatToHalf } from '../onnx/float16.js';

// The Open Inference Protocol's element types and tensor data, whatever carries them (REST JSON or binary, gRPC raw
// or typed contents): datatype names, shape checks, and element data read and checked the same way for each.

const bad = (message: string) => new Errors.INVALID_TENSOR(message);

/** v2 datatype names of the element types the server runs. */
export const datatypeOf: Record<TensorType, string> = {
  float32: 'FP32',
  int64: 'INT64',
  int32: 'INT32',
  float16: 'FP16',
  uint8: 'UINT8',
  bool: 'BOOL',
};
const typeOfDatatype = new Map(Object.entries(datatypeOf).map(([t, d]) => [d, t as TensorType]));
const bytesPer: Record<TensorType, number> = { float32: 4, int64: 8, int32: 4, float16: 2, uint8: 1, bool: 1 };

/** The v2 datatype of a graph tensor type (onnxruntime's names), for metadata; unknown types pass through upper-cased. */
export function datatypeOfGraphType(type: string): string {
  return isTensorType(type) ? datatypeOf[type] : type.toUpperCase();
}

/** An input's element type, shape and element count, checked the same way whatever the protocol. */
export interface TensorHead {
  readonly type: TensorType;
  readonly shape: number[];
  readonly count: number;
}

/** Checks an input's datatype (a v2 name the server runs) and shape (non-negative safe integers). */
export function tensorHead(name: string, datatype: unknown, shape: unknown): TensorHead {
  if (typeof datatype !== 'string' || datatype === '') throw bad(`input '${name}' needs a "datatype"`);
  const type = typeOfDatatype.get(datatype);
  if (!type)
    throw bad(`input '${name}': datatype ${datatype} is not supported (${[...typeOfDatatype.keys()].join(', ')})`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    throw bad(`input '${name}' needs a "shape" of non-negative integers`);
  return { type, shape: shape as number[], count: elements(shape as number[]) };
}

/** Elements of a shape: 0 with an empty axis, whatever the others (a product that overflowed first would be NaN). */
const elements = (shape: readonly number[]) => (shape.includes(0) ? 0 : shape.reduce((a, b) => a * b, 1));

/**
 * Bytes a tensor of this datatype and shape takes once decoded, from the declaration alone; 0 when either is not one
 * {@link tensorHead} takes (the decoder then refuses it with its reason).
 */
export function declaredBytes(datatype: unknown, shape: unknown): number {
  const type = typeof datatype === 'string' ? typeOfDatatype.get(datatype) : undefined;
  if (!type || !Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return 0;
  return elements(shape as number[]) * bytesPer[type];
}

/** Bytes of one element of a datatype the server runs. */
export function bytesPerElement(type: TensorType): number {
  return bytesPer[type];
}

/**
 * Raw little-endian tensor data (exactly `count` elements' bytes, checked by the caller), copied out of the message
 * it came in; floats must be finite, as in JSON.
 */
export function tensorFromBytes(name: string, type: TensorType, bytes: Uint8Array, count: number): HostTensor['data'] {
  const data = fromBytes(type, bytes, count);
  const i = firstNonFinite(type, data);
  if (i >= 0) throw bad(`input '${name}': value ${i} is not finite (NaN or Infinity)`);
  return data;
}

/**
 * A flat list of typed values (the gRPC `contents` fields), checked against the datatype as JSON values are: the
 * same count, range and finiteness rules. INT64 also takes bigints (protobuf's int64).
 */
export function tensorFromValues(
  name: string,
  type: TensorType,
  values: readonly unknown[],
  count: number,
): HostTensor['data'] {
  if (values.length !== count) throw bad(`input '${name}' has ${values.length} values, its shape holds ${count}`);
  return fromFlat(type, values, name);
}

/** Index of the first NaN or infinite value of float data, else -1 (other types: -1). */
export function firstNonFinite(type: TensorType, data: HostTensor['data']): number {
  if (type === 'float32') return (data as Float32Array).findIndex((v) => !Number.isFinite(v));
  if (type === 'float16') return (data as Uint16Array).findIndex((h) => (h & 0x7c00) === 0x7c00); // exponent all ones
  return -1;
}

/** Reads little-endian element data from a (possibly unaligned) slice of the body. */
export function fromBytes(type: TensorType, bytes: Uint8Array, count: number): HostTensor['data'] {
  const copy = new Uint8Array(bytes); // aligned, and detached from the request buffer
  switch (type) {
    case 'float32':
      return new Float32Array(copy.buffer, 0, count);
    case 'int64':
      return new BigInt64Array(copy.buffer, 0, count);
    case 'int32':
      return new Int32Array(copy.buffer, 0, count);
    case 'float16':
      return new Uint16Array(copy.buffer, 0, count);
    case 'uint8':
      return copy;
    case 'bool':
      return copy.map((b) => (b ? 1 : 0));
  }
}

const FP32_MAX = 3.4028234663852886e38;
const FP16_MAX = 65504;

/**
 * JSON tensor data as one flat list: a scalar, a flat (row-major) list, or lists nested along the shape's first axes
 * with flat runs under them (`[[...all 3 x 48 x 192 values...]]` for `[1, 3, 48, 192]`, as Triton's clients may send a
 * batch of flattened rows): every list above the runs has its axis's length, every run the size of the axes it
 * flattens, all runs at one depth. A ragged body (rows of 619 and 621 values for `[2, 620]`) is refused, not re-flowed
 * into the shape. Walked without recursion and stopped as soon as it holds more values than the shape, so neither a
 * body nested 10,000 deep nor a huge list costs more than the shape allows.
 */
function flatten(data: unknown, name: string, count: number, shape: readonly number[]): unknown[] {
  if (!Array.isArray(data)) {
    if (count !== 1) throw bad(`input '${name}' has 1 value, its shape holds ${count}`);
    return [data];
  }
  const rank = shape.length;
  // the values under axis d: what a flat run at depth d holds
  const under = shape.map((_, d) => elements(shape.slice(d)));
  const ragged = (depth: number) =>
    bad(`input '${name}': nested data must follow its shape [${shape.join(', ')}] (lists at depth ${depth})`);
  /** The depth of the lists that hold values, once one value is seen. */
  let runs: number | undefined;
  const out: unknown[] = [];
  const stack: { list: unknown[]; at: number }[] = [{ list: data, at: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const depth = stack.length - 1;
    if (top.at === top.list.length) {
      // a finished list: the length of its axis above the runs, the size of a run at their depth
      if (depth > 0 || runs !== 0) {
        const want = runs === undefined ? [shape[depth], under[depth]] : [depth < runs ? shape[depth] : under[depth]];
        if (!want.includes(top.list.length)) throw ragged(depth);
      }
      stack.pop();
      continue;
    }
    const v = top.list[top.at++];
    if (Array.isArray(v)) {
      if (depth + 1 >= Math.max(rank, 1)) throw bad(`input '${name}': data is nested deeper than its ${rank} axes`);
      if (runs !== undefined && depth + 1 > runs) throw ragged(depth + 1);
      stack.push({ list: v, at: 0 });
    } else {
      runs ??= depth;
      if (depth !== runs) throw ragged(depth);
      if (out.push(v) > count) throw bad(`input '${name}' has more values than its shape holds (${count})`);
    }
  }
  if (out.length !== count) throw bad(`input '${name}' has ${out.length} values, its shape holds ${count}`);
  return out;
}

/** Reads JSON element data, flat (row-major) or nested, checking every value against the datatype. */
export function fromJson(
  type: TensorType,
  data: unknown,
  name: string,
  count: number,
  shape: readonly number[],
): HostTensor['data'] {
  return fromFlat(type, flatten(data, name, count, shape), name);
}

/** Checks flat element values against the datatype (finite and in range) and packs them. */
function fromFlat(type: TensorType, flat: readonly unknown[], name: string): HostTensor['data'] {
  const check = (ok: (v: unknown) => boolean, what: string) => {
    const i = flat.findIndex((v) => !ok(v));
    if (i >= 0)
      throw bad(
        `input '${name}': value ${i} (${typeof flat[i] === 'bigint' ? String(flat[i]) : JSON.stringify(flat[i])}) is not ${what}`,
      );
  };
  const inRange = (lo: number, hi: number) => (v: unknown) =>
    Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi;
  switch (type) {
    case 'float32':
    case 'float16':
      // finite, and within the datatype's range (1e39 would become Infinity in FP32): the graph's outputs stay finite
      check(
        (v) => typeof v === 'number' && Math.abs(v) <= (type === 'float32' ? FP32_MAX : FP16_MAX),
        `a number (finite, within ${type} range)`,
      );
      return type === 'float32'
        ? Float32Array.from(flat as number[])
        : Uint16Array.from(flat as number[], (v) => floatToHalf(v));
    case 'int64':
      check((v) => typeof v === 'bigint' || inRange(Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)(v), 'an integer');
      return BigInt64Array.from(flat as (number | bigint)[], (v) => BigInt(v));
    case 'int32':
      check(inRange(-(2 ** 31), 2 ** 31 - 1), 'an int32');
      return Int32Array.from(flat as number[]);
    case 'uint8':
      check(inRange(0, 255), 'a uint8');
      return Uint8Array.from(flat as number[]);
    case 'bool':
      check((v) => typeof v === 'boolean', 'true or false');
      return Uint8Array.from(flat as boolean[], (v) => (v ? 1 : 0));
  }
}
