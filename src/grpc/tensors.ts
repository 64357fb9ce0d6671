import { create, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { Errors } from '../errors.js';
import type { HostTensor, TensorType } from '../models/session.js';
import type { TensorOutputs } from '../models/tensors.js';
import type { InferRequest, RequestedOutput } from '../protocol/v2-codec.js';
import {
  bytesPerElement,
  datatypeOf,
  declaredBytes,
  tensorFromBytes,
  tensorFromValues,
  tensorHead,
} from '../protocol/v2-tensors.js';
import {
  ModelInferResponse_InferOutputTensorSchema as InferOutputTensorSchema,
  ModelInferResponseSchema,
  type InferParameter,
  type InferTensorContents,
  type ModelInferRequest,
} from './gen/grpc_service_pb.js';

// ModelInfer's tensors: each input's data is either its entry of `raw_input_contents` (one per input, in order,
// little-endian, as Triton's clients send) or its typed `contents` field; both are checked by the same rules as the
// REST API's JSON and binary tensors (protocol/v2-codec.ts). Outputs come back the way the inputs came: raw by
// default, typed `contents` when every input came typed; `parameters.binary_data_output` (bool) decides otherwise.

const bad = (message: string) => new Errors.INVALID_TENSOR(message);

/** The typed `contents` field each datatype's values go in (FP16 has none: it travels raw). */
const typedField = {
  float32: 'fp32Contents',
  int64: 'int64Contents',
  int32: 'intContents',
  uint8: 'uintContents',
  bool: 'boolContents',
} as const satisfies Partial<Record<TensorType, keyof InferTensorContents>>;

/** The proto field names of the typed contents, for messages. */
const protoName: Record<string, string> = {
  boolContents: 'bool_contents',
  intContents: 'int_contents',
  int64Contents: 'int64_contents',
  uintContents: 'uint_contents',
  uint64Contents: 'uint64_contents',
  fp32Contents: 'fp32_contents',
  fp64Contents: 'fp64_contents',
  bytesContents: 'bytes_contents',
};

/** A shape's int64 dimensions as numbers (a dimension beyond 2^53 stays out of range, so the shape is refused). */
const dims = (shape: readonly bigint[]) => shape.map((d) => (d <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(d) : NaN));

/** A bool parameter's value, undefined when it is absent; another kind of value is refused. */
function boolParam(params: { [key: string]: InferParameter }, key: string): boolean | undefined {
  if (!Object.hasOwn(params, key)) return undefined;
  const p = params[key].parameterChoice;
  if (p.case !== 'boolParam') throw new Errors.BAD_REQUEST(`parameter '${key}' must be a bool_param`);
  return p.value;
}

/** The outputs a request asks for, in order (undefined: all), each at most once; read before any tensor. */
export function requestedOutputs(req: ModelInferRequest): RequestedOutput[] | undefined {
  if (req.outputs.length === 0) return undefined;
  const raw = rawResponse(req);
  const seen = new Set<string>();
  return req.outputs.map((o) => {
    if (o.name === '') throw new Errors.BAD_REQUEST('every output needs a "name"');
    if (seen.has(o.name)) throw bad(`output '${o.name}' is asked for twice`);
    seen.add(o.name);
    // Triton's classification (and per-output binary_data) are served over REST only: refused, never ignored
    const unknown = Object.keys(o.parameters);
    if (unknown.length > 0)
      throw new Errors.BAD_REQUEST(
        `output '${o.name}': parameters ${unknown.join(', ')} are not served over gRPC (classification is, over REST)`,
      );
    return { name: o.name, binary: raw };
  });
}

/** Whether the answer's tensors go in `raw_output_contents` (see the module comment). */
function rawResponse(req: ModelInferRequest): boolean {
  return boolParam(req.parameters, 'binary_data_output') ?? req.rawInputContents.length > 0;
}

/**
 * Bytes the request's tensors will take once decoded, from their declared shapes and datatypes, but no more than
 * their data in the message; inputs too malformed to count are left to the decoder, which refuses them.
 */
export function declaredTensorBytes(req: ModelInferRequest): number {
  const raw = req.rawInputContents;
  return req.inputs.reduce((total, input, i) => {
    const declared = declaredBytes(input.datatype, dims(input.shape));
    // no more than the data the message holds (8 bytes a typed value at most): a shape it cannot fill is refused
    // by decodeModelInfer (INVALID_TENSOR), not by the memory budget as if it needed 1e33 MiB
    const contents = Object.values(input.contents ?? {}) as unknown[];
    const present =
      raw.length > 0
        ? (raw[i]?.length ?? 0)
        : 8 * contents.reduce<number>((n, v) => n + (Array.isArray(v) ? v.length : 0), 0);
    return total + (Number.isFinite(declared) ? Math.min(declared, present) : present);
  }, 0);
}

/** Decodes a ModelInfer request's tensors, checking each against its declared datatype and shape. */
export function decodeModelInfer(req: ModelInferRequest): InferRequest {
  const { inputs, rawInputContents: raw } = req;
  if (inputs.length === 0)
    throw new Errors.BAD_REQUEST('the inference request needs inputs: [{name, datatype, shape}]');
  if (raw.length > 0 && raw.length !== inputs.length)
    throw bad(
      `raw_input_contents has ${raw.length} entries for ${inputs.length} inputs: give one per input, in order, or none`,
    );
  const feeds: Record<string, HostTensor> = {};
  inputs.forEach((input, i) => {
    const name = input.name;
    if (name === '') throw bad('every input needs a "name"');
    if (Object.hasOwn(feeds, name)) throw bad(`input '${name}' is given twice`);
    const { type, shape, count } = tensorHead(name, input.datatype, dims(input.shape));
    const given = Object.entries(input.contents ?? {}).filter(
      ([k, v]) => k in protoName && (v as unknown[]).length > 0,
    );
    let data: HostTensor['data'];
    if (raw.length > 0) {
      if (given.length > 0) throw bad(`input '${name}' has both contents and raw_input_contents: send one of them`);
      const bytes = raw[i];
      const want = count * bytesPerElement(type);
      if (bytes.length !== want)
        throw bad(
          `input '${name}': raw_input_contents[${i}] has ${bytes.length} bytes, not ${count} x ${bytesPerElement(type)} for shape [${shape.join(', ')}]`,
        );
      data = tensorFromBytes(name, type, bytes, count);
    } else {
      if (type === 'float16') throw bad(`input '${name}': FP16 data has no typed contents field; send it raw`);
      const field = typedField[type];
      const wrong = given.find(([k]) => k !== field);
      if (wrong)
        throw bad(
          `input '${name}': ${input.datatype} data goes in contents.${protoName[field]}, not ${protoName[wrong[0]]}`,
        );
      data = tensorFromValues(name, type, input.contents?.[field] ?? [], count);
    }
    feeds[name] = { type, data, dims: shape };
  });
  const outputs = requestedOutputs(req);
  return { id: req.id === '' ? undefined : req.id, feeds, outputs, binaryOutput: rawResponse(req) };
}

/** Bytes of a varint run's values: each value's varint length, summed. */
const varintBytes = (n: number) => (n < 2 ** 7 ? 1 : n < 2 ** 14 ? 2 : n < 2 ** 21 ? 3 : n < 2 ** 28 ? 4 : 5);

/**
 * An output's typed `contents` as protobuf writes it (an InferTensorContents with one packed field), straight from
 * the tensor's array: float32 is its little-endian bytes, the integers and bools varints. Building a JS array and
 * encoding it element by element took about a second on the event loop for a 46 MB output.
 */
function typedContents(t: HostTensor): Uint8Array {
  const n = t.data.length;
  let field: number;
  let data: Uint8Array;
  switch (t.type) {
    case 'float32':
      field = 6;
      data = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      break;
    case 'bool':
    case 'uint8': {
      const v = t.data as Uint8Array;
      field = t.type === 'bool' ? 1 : 4;
      if (t.type === 'bool') {
        data = new Uint8Array(n);
        for (let i = 0; i < n; i++) data[i] = v[i] === 0 ? 0 : 1;
        break;
      }
      let size = 0;
      for (let i = 0; i < n; i++) size += v[i] < 0x80 ? 1 : 2;
      data = new Uint8Array(size);
      for (let i = 0, at = 0; i < n; i++) {
        if (v[i] < 0x80) data[at++] = v[i];
        else ((data[at++] = v[i] | 0x80), (data[at++] = 1));
      }
      break;
    }
    case 'int32':
    case 'int64': {
      // two 32-bit words per value: an int64's, or an int32 sign-extended (protobuf writes a negative int32 in 10
      // bytes, as the int64 it extends to)
      field = t.type === 'int32' ? 2 : 3;
      let words: Uint32Array;
      if (t.type === 'int64') words = new Uint32Array(t.data.buffer, t.data.byteOffset, 2 * n);
      else {
        const v = t.data as Int32Array;
        words = new Uint32Array(2 * n);
        for (let i = 0; i < n; i++) ((words[2 * i] = v[i]), (words[2 * i + 1] = v[i] < 0 ? 0xffffffff : 0));
      }
      let size = 0;
      for (let i = 0; i < 2 * n; i += 2) {
        const h = words[i + 1];
        size += h === 0 ? varintBytes(words[i]) : h < 2 ** 3 ? 5 : 5 + varintBytes(h >>> 3);
      }
      data = new Uint8Array(size);
      let at = 0;
      for (let i = 0; i < 2 * n; i += 2) {
        let l = words[i];
        let h = words[i + 1];
        while (h !== 0 || l >= 0x80) {
          data[at++] = (l & 0x7f) | 0x80;
          l = ((l >>> 7) | ((h & 0x7f) << 25)) >>> 0;
          h >>>= 7;
        }
        data[at++] = l;
      }
      break;
    }
    case 'float16':
      throw new Error('FP16 travels raw'); // never reached: encodeModelInfer answers raw when an output is FP16
  }
  return concat(lengthDelimited(field, [data]));
}

/** A length-delimited field holding `parts`: its tag and length (protobuf-es's writer), then the parts (not copied). */
function lengthDelimited(field: number, parts: Uint8Array[]): Uint8Array[] {
  const length = parts.reduce((n, p) => n + p.length, 0);
  return [new BinaryWriter().tag(field, WireType.LengthDelimited).uint32(length).finish(), ...parts];
}

/** The parts in one buffer. */
function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The ModelInfer response, encoded: the outputs asked for (all, in the graph's order, when none were), raw or typed
 * as the request decided; an FP16 output, which has no typed field, makes the whole answer raw. A typed output's
 * contents are written from its array ({@link typedContents}) into its InferOutputTensor, after the fields
 * protobuf-es encodes (fields may come in any order). `bytes`: what the answer holds in memory until it is sent.
 */
export function encodeModelInfer(
  model: { name: string; version: string },
  request: InferRequest,
  outputs: TensorOutputs,
): { response: Uint8Array; bytes: number } {
  const names = request.outputs?.map((o) => o.name) ?? Object.keys(outputs);
  const tensors = names.map((name) => {
    if (!Object.hasOwn(outputs, name)) throw bad(`unknown output '${name}'`);
    return [name, outputs[name]] as const;
  });
  const raw = request.binaryOutput || tensors.some(([, t]) => t.type === 'float16');
  const tensorBytes = tensors.reduce((n, [, t]) => n + t.data.byteLength, 0);
  const heads = tensors.map(([name, t]) => ({
    name,
    datatype: datatypeOf[t.type],
    shape: t.dims.map((d) => BigInt(d)),
  }));
  const top = {
    modelName: model.name,
    modelVersion: model.version,
    id: request.id ?? '',
  };
  if (raw) {
    const response = toBinary(
      ModelInferResponseSchema,
      create(ModelInferResponseSchema, {
        ...top,
        outputs: heads,
        rawOutputContents: tensors.map(([, t]) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
      }),
    );
    return { response, bytes: response.length + tensorBytes };
  }
  const response = concat([
    toBinary(ModelInferResponseSchema, create(ModelInferResponseSchema, top)),
    ...tensors.flatMap(([, t], i) =>
      lengthDelimited(OUTPUTS_FIELD, [
        toBinary(InferOutputTensorSchema, create(InferOutputTensorSchema, heads[i])),
        ...lengthDelimited(CONTENTS_FIELD, [typedContents(t)]),
      ]),
    ),
  ]);
  // the outputs are held until the call is done with them too
  return { response, bytes: response.length + tensorBytes };
}

/** ModelInferResponse.outputs and InferOutputTensor.contents. */
const OUTPUTS_FIELD = 5;
const CONTENTS_FIELD = 5;
