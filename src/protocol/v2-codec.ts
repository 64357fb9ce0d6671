import { Errors } from '../errors.js';
import type { HostTensor, TensorInfo } from '../models/session.js';
import { halfToFloat } from '../onnx/float16.js';
import { checkClassCount, classifiedOutput, parseClassCount } from './triton-classification.js';
import {
  bytesPerElement,
  datatypeOf,
  declaredBytes,
  firstNonFinite,
  fromJson,
  tensorFromBytes,
  tensorHead,
} from './v2-tensors.js';

// The Open Inference Protocol's (KServe v2) JSON tensors, and Triton's binary tensor data extension: a JSON header of
// `Inference-Header-Content-Length` bytes, then the raw little-endian data of the inputs that give `binary_data_size`,
// in the order they are listed (and the same for outputs asked for with `binary_data`).

/** One requested output. */
export interface RequestedOutput {
  readonly name: string;
  readonly binary: boolean;
  /** Triton's classification extension: the classes to answer instead of the tensor. */
  readonly classes?: number;
}

/** A decoded infer request. */
export interface InferRequest {
  readonly id?: string;
  readonly feeds: Record<string, HostTensor>;
  /** Outputs asked for, in order; undefined means all. */
  readonly outputs?: readonly RequestedOutput[];
  /** `parameters.binary_data_output`: every output as binary unless it says otherwise. */
  readonly binaryOutput: boolean;
}

const bad = (message: string) => new Errors.INVALID_TENSOR(message);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** An infer request body split into its JSON header (parsed, not yet checked) and its binary tensor data. */
export interface InferBody {
  readonly json: Record<string, unknown> & { inputs: unknown[] };
  readonly binary: Buffer;
}

/**
 * How deep a request's JSON may nest: the request object, its input list, an input, then its data nested as deep as
 * its shape has axes, with room to spare (onnxruntime's tensors have at most a few dozen axes).
 */
export const MAX_JSON_DEPTH = 64;

/** Byte classes for {@link nestedDeeperThan}: 1 opens, 2 closes, 3 quotes, 4 escapes; 0 is everything else. */
const JSON_CLASS = new Uint8Array(256);
JSON_CLASS[0x5b] = JSON_CLASS[0x7b] = 1; // [ {
JSON_CLASS[0x5d] = JSON_CLASS[0x7d] = 2; // ] }
JSON_CLASS[0x22] = 3; // "
JSON_CLASS[0x5c] = 4; // \

/**
 * Whether JSON text nests lists and objects deeper than `limit` (brackets inside strings do not count). Stops at the
 * first level too deep; about 1 ns per byte otherwise. Text that is not JSON is left to the parser to refuse.
 */
export function nestedDeeperThan(text: Uint8Array, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const k = JSON_CLASS[text[i]];
    if (k === 0) continue;
    if (inString) {
      if (k === 4) i++;
      else if (k === 3) inString = false;
    } else if (k === 1) {
      if (++depth > limit) return true;
    } else if (k === 2) depth--;
    else if (k === 3) inString = true;
  }
  return false;
}

/**
 * Bytes of an infer body's JSON header: `headerLength` (the `Inference-Header-Content-Length` header) when it is a
 * length within the body, the whole body when there is none; undefined for a length that is not within the body.
 */
export function jsonHeaderBytes(bodyLength: number, headerLength: number | undefined): number | undefined {
  if (headerLength === undefined) return bodyLength;
  return Number.isInteger(headerLength) && headerLength >= 0 && headerLength <= bodyLength ? headerLength : undefined;
}

/**
 * Splits and parses an infer request body. `headerLength` is the `Inference-Header-Content-Length` header: the JSON
 * header's size when the body carries binary tensor data after it; absent, the whole body is JSON.
 */
export function parseInferBody(body: Buffer, headerLength: number | undefined): InferBody {
  const jsonBytes = jsonHeaderBytes(body.length, headerLength);
  if (jsonBytes === undefined)
    throw new Errors.BAD_REQUEST(
      `Inference-Header-Content-Length ${headerLength} is not within the body's ${body.length} bytes`,
    );
  const jsonPart = body.subarray(0, jsonBytes);
  // V8 parses nested lists about 8x slower per byte than flat ones (a 20 KB body nested 10,000 deep: 0.9 ms), and
  // no tensor needs more than a few levels: refused from a scan of the brackets before the parser sees it
  if (nestedDeeperThan(jsonPart, MAX_JSON_DEPTH))
    throw bad(`the inference request is nested deeper than ${MAX_JSON_DEPTH} levels`);
  let json: unknown;
  try {
    json = JSON.parse(jsonPart.toString('utf8'));
  } catch (err) {
    throw new Errors.BAD_REQUEST(`the inference request is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(json) || !Array.isArray(json.inputs) || json.inputs.length === 0)
    throw new Errors.BAD_REQUEST('the inference request needs "inputs": [{name, shape, datatype, data}]');
  const binary = headerLength === undefined ? Buffer.alloc(0) : body.subarray(headerLength);
  return { json: json as InferBody['json'], binary };
}

/**
 * Bytes the request's tensors will take once decoded, from their declared shapes and datatypes alone (before any
 * data is walked); inputs too malformed to count are left to the decoder, which refuses them.
 */
export function declaredTensorBytes({ json }: InferBody): number {
  let total = 0;
  for (const input of json.inputs) if (isObject(input)) total += declaredBytes(input.datatype, input.shape);
  return total;
}

/**
 * The outputs a request asks for, in order (undefined: all), each at most once; read from the JSON header alone, so
 * a bad list is refused before any tensor is decoded.
 */
export function requestedOutputs({ json }: InferBody): RequestedOutput[] | undefined {
  if (json.outputs === undefined) return undefined;
  if (!Array.isArray(json.outputs)) throw new Errors.BAD_REQUEST('"outputs" must be a list');
  const params = isObject(json.parameters) ? json.parameters : {};
  const seen = new Set<string>();
  return json.outputs.map((o: unknown) => {
    if (!isObject(o) || typeof o.name !== 'string') throw new Errors.BAD_REQUEST('every output needs a "name"');
    if (seen.has(o.name)) throw bad(`output '${o.name}' is asked for twice`);
    seen.add(o.name);
    const p = isObject(o.parameters) ? o.parameters : {};
    const classes = parseClassCount(o.name, p.classification);
    return {
      name: o.name,
      binary: p.binary_data === undefined ? params.binary_data_output === true : p.binary_data === true,
      ...(classes !== undefined ? { classes } : {}),
    };
  });
}

/** Decodes an infer request's tensors, checking each against its declared datatype and shape. */
export function decodeInferRequest({ json, binary }: InferBody): InferRequest {
  let offset = 0;
  const feeds: Record<string, HostTensor> = {};
  for (const input of json.inputs as unknown[]) {
    if (!isObject(input) || typeof input.name !== 'string') throw bad('every input needs a "name"');
    const name = input.name;
    if (Object.hasOwn(feeds, name)) throw bad(`input '${name}' is given twice`);
    const { type, shape, count } = tensorHead(name, input.datatype, input.shape);
    const size = isObject(input.parameters) ? input.parameters.binary_data_size : undefined;
    let data: HostTensor['data'];
    if (size !== undefined) {
      if (!Number.isSafeInteger(size) || (size as number) < 0) throw bad(`input '${name}': bad binary_data_size`);
      const n = size as number;
      if (n !== count * bytesPerElement(type))
        throw bad(
          `input '${name}': binary_data_size ${n} is not ${count} x ${bytesPerElement(type)} bytes for shape [${shape.join(', ')}]`,
        );
      if (offset + n > binary.length)
        throw bad(`input '${name}': ${n} bytes of binary data asked for, ${binary.length - offset} left in the body`);
      data = tensorFromBytes(name, type, binary.subarray(offset, offset + n), count);
      offset += n;
    } else {
      if (input.data === undefined) throw bad(`input '${name}' has no "data" (nor binary_data_size)`);
      data = fromJson(type, input.data, name, count, shape);
    }
    feeds[name] = { type, data, dims: shape };
  }
  if (offset !== binary.length) throw bad(`${binary.length - offset} bytes of binary data after the last binary input`);
  const params = isObject(json.parameters) ? json.parameters : {};
  const outputs = requestedOutputs({ json, binary });
  const id = typeof json.id === 'string' ? json.id : undefined;
  return { id, feeds, outputs, binaryOutput: params.binary_data_output === true };
}

/** An infer body decoded in one step: its tensors' declared bytes, and the request unless they exceed the limit. */
export interface DecodedInferBody {
  readonly declaredBytes: number;
  /** The outputs asked for (undefined: all), read before anything else. */
  readonly outputs?: readonly RequestedOutput[];
  /** Absent when the declared bytes exceed `maxTensorBytes`: nothing was walked. */
  readonly request?: InferRequest;
}

/**
 * Splits, parses and decodes an infer body in one step, for a task worker: a large JSON body costs milliseconds to
 * parse and walk (6 ms for one 3 x 48 x 192 float tensor), which must not hold up the event loop. The output list is
 * checked first, then the tensors' declared size, both before any tensor data is walked.
 */
export function decodeInferBody(a: {
  readonly body: Uint8Array;
  readonly headerLength?: number;
  readonly maxTensorBytes: number;
}): DecodedInferBody {
  const body = parseInferBody(Buffer.from(a.body.buffer, a.body.byteOffset, a.body.byteLength), a.headerLength);
  const outputs = requestedOutputs(body);
  const declaredBytes = declaredTensorBytes(body);
  if (declaredBytes > a.maxTensorBytes) return { declaredBytes, outputs };
  return { declaredBytes, outputs, request: decodeInferRequest(body) };
}

/**
 * Refuses requested outputs the graph does not have, before anything runs (names are compared as strings, so
 * `__proto__` or `toString` are unknown outputs like any other). Each output is asked for at most once (checked by
 * the decoder), so a response is never larger than the graph's outputs.
 */
export function checkRequestedOutputs(
  outputs: readonly RequestedOutput[] | undefined,
  graphOutputs: readonly TensorInfo[],
): void {
  for (const { name, classes } of outputs ?? []) {
    const info = graphOutputs.find((o) => o.name === name);
    if (!info) throw bad(`unknown output '${name}' (outputs: ${graphOutputs.map((o) => o.name).join(', ')})`);
    if (classes !== undefined) checkClassCount(name, info);
  }
}

/** One output of the response: JSON data, or binary data appended after the JSON header. */
export interface EncodedResponse {
  /** The JSON part. */
  readonly json: Record<string, unknown>;
  /** Binary data of the binary outputs, in order; empty when the response is plain JSON. */
  readonly binary: Buffer[];
}

/** What answering needs of a request: not its input tensors. */
export type AnswerRequest = Pick<InferRequest, 'id' | 'outputs' | 'binaryOutput'>;

/** The model as its answer names it (`labels` name classification results). */
export interface AnswerModel {
  readonly name: string;
  readonly version: string;
  readonly labels?: readonly string[];
  readonly batchedOnAxis0?: boolean;
}

/** Builds the response body of an infer request from the model's outputs (`labels` name classification results). */
export function encodeInferResponse(
  model: AnswerModel,
  request: AnswerRequest,
  outputs: Record<string, HostTensor>,
): EncodedResponse {
  const wanted = wantedOutputs(request, outputs);
  const binary: Buffer[] = [];
  const list = wanted.map(({ name, binary: asBinary, classes }) => {
    const t = Object.hasOwn(outputs, name) ? outputs[name] : undefined;
    if (!t) throw bad(`unknown output '${name}' (outputs: ${Object.keys(outputs).join(', ')})`);
    if (classes !== undefined)
      return classifiedOutput(
        name,
        t,
        classes,
        model.labels ?? [],
        model.batchedOnAxis0 ?? true,
        asBinary ? binary : undefined,
      );
    const head = { name, datatype: datatypeOf[t.type], shape: [...t.dims] };
    if (!asBinary && firstNonFinite(t.type, t.data) >= 0)
      throw bad(
        `output '${name}' holds NaN or infinite values, which JSON cannot carry: ask for it as binary data ("parameters": {"binary_data": true})`,
      );
    if (asBinary) {
      const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      binary.push(bytes);
      return { ...head, parameters: { binary_data_size: bytes.length } };
    }
    return { ...head, data: toJson(t) };
  });
  return {
    json: {
      model_name: model.name,
      model_version: model.version,
      ...(request.id !== undefined ? { id: request.id } : {}),
      outputs: list,
    },
    binary,
  };
}

/** The outputs an answer sends, in order: those asked for, or all of them in the request's form. */
const wantedOutputs = (request: AnswerRequest, outputs: Record<string, HostTensor>): readonly RequestedOutput[] =>
  request.outputs ?? Object.keys(outputs).map((name) => ({ name, binary: request.binaryOutput }));

/** Elements the answer writes as JSON numbers (the outputs not sent as binary data). */
export function jsonElements(request: AnswerRequest, outputs: Record<string, HostTensor>): number {
  return wantedOutputs(request, outputs).reduce(
    (n, o) => n + (o.binary || !Object.hasOwn(outputs, o.name) ? 0 : outputs[o.name].data.length),
    0,
  );
}

/** The outputs the answer sends, by name (what a task worker that writes it needs of them). */
export const sentOutputs = (request: AnswerRequest, outputs: Record<string, HostTensor>): Record<string, HostTensor> =>
  Object.fromEntries(
    wantedOutputs(request, outputs)
      .filter((o) => Object.hasOwn(outputs, o.name))
      .map((o) => [o.name, outputs[o.name]]),
  );

/**
 * The response body of an infer request: its JSON header, then the binary outputs, if any (`headerLength`: the
 * header's bytes, for `Inference-Header-Content-Length`; undefined when the body is plain JSON).
 */
export function encodeInferBody(
  model: AnswerModel,
  request: AnswerRequest,
  outputs: Record<string, HostTensor>,
): { body: Uint8Array; headerLength?: number } {
  const { json, binary } = encodeInferResponse(model, request, outputs);
  const head = Buffer.from(JSON.stringify(json));
  if (binary.length === 0) return { body: head };
  return { body: Buffer.concat([head, ...binary]), headerLength: head.length };
}

function toJson(t: HostTensor): (number | boolean)[] {
  switch (t.type) {
    case 'int64':
      return Array.from(t.data as BigInt64Array, Number); // exact up to 2^53, as JSON numbers are
    case 'float16':
      return Array.from(t.data as Uint16Array, halfToFloat);
    case 'bool':
      return Array.from(t.data as Uint8Array, (v) => v !== 0);
    default:
      return Array.from(t.data as ArrayLike<number>);
  }
}
