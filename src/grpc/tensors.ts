import { create } from '@bufbuild/protobuf';
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
  InferTensorContentsSchema,
  ModelInferResponseSchema,
  type InferParameter,
  type InferTensorContents,
  type ModelInferRequest,
  type ModelInferResponse,
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
 * Bytes the request's tensors will take once decoded, from their declared shapes and datatypes alone; inputs too
 * malformed to count are left to the decoder, which refuses them.
 */
export function declaredTensorBytes(req: ModelInferRequest): number {
  return req.inputs.reduce((total, input) => total + declaredBytes(input.datatype, dims(input.shape)), 0);
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

/** An output's values for its typed `contents` field. */
function typedContents(t: HostTensor): InferTensorContents {
  switch (t.type) {
    case 'float32':
      return create(InferTensorContentsSchema, { fp32Contents: Array.from(t.data as Float32Array) });
    case 'int64':
      return create(InferTensorContentsSchema, { int64Contents: Array.from(t.data as BigInt64Array) });
    case 'int32':
      return create(InferTensorContentsSchema, { intContents: Array.from(t.data as Int32Array) });
    case 'uint8':
      return create(InferTensorContentsSchema, { uintContents: Array.from(t.data as Uint8Array) });
    case 'bool':
      return create(InferTensorContentsSchema, { boolContents: Array.from(t.data as Uint8Array, (v) => v !== 0) });
    case 'float16':
      throw new Error('FP16 travels raw'); // never reached: encodeModelInfer answers raw when an output is FP16
  }
}

/**
 * The ModelInfer response: the outputs asked for (all, in the graph's order, when none were), raw or typed as the
 * request decided; an FP16 output, which has no typed field, makes the whole answer raw.
 */
export function encodeModelInfer(
  model: { name: string; version: string },
  request: InferRequest,
  outputs: TensorOutputs,
): { response: ModelInferResponse; bytes: number } {
  const names = request.outputs?.map((o) => o.name) ?? Object.keys(outputs);
  const tensors = names.map((name) => {
    if (!Object.hasOwn(outputs, name)) throw bad(`unknown output '${name}'`);
    return [name, outputs[name]] as const;
  });
  const raw = request.binaryOutput || tensors.some(([, t]) => t.type === 'float16');
  const rawOutputContents: Uint8Array[] = [];
  let bytes = 0;
  const list = tensors.map(([name, t]) => {
    const head = { name, datatype: datatypeOf[t.type], shape: t.dims.map((d) => BigInt(d)) };
    if (raw) {
      rawOutputContents.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      bytes += 2 * t.data.byteLength; // the tensor, and its copy in the encoded message
      return head;
    }
    bytes += 20 * t.data.length; // a JS array of numbers, and their encoding
    return { ...head, contents: typedContents(t) };
  });
  const response = create(ModelInferResponseSchema, {
    modelName: model.name,
    modelVersion: model.version,
    id: request.id ?? '',
    outputs: list,
    rawOutputContents,
  });
  return { response, bytes };
}
