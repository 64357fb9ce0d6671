/**
 * Minimal ONNX model reader/writer and graph builder.
 *
 * The heavy lifting (wire format) is done by protobuf-es code generated from the
 * official `onnx.proto` (see `src/onnx/proto/` and `scripts/gen-onnx-proto.sh`).
 * This module only adds:
 *
 * - `decodeModel` / `encodeModel`: lossless parse/serialize of `.onnx` bytes, so the
 *   server can inspect (and, if ever needed, patch) models without a Python toolchain.
 * - a tiny builder (`tensor`, `node`, `valueInfo`, `makeGraph`, `makeModel`, plus
 *   `attr.*` for explicitly typed attributes) used to create small, real test models
 *   with hand-set weights.
 * - `describeValueInfo` / `graphInputs` / `graphOutputs`: a plain-JS view of a
 *   graph's I/O signature.
 *
 * All ONNX int64 fields (dims, `ir_version`, `dim_value`, INT/INTS attributes, ...)
 * are `bigint` in the generated types, because protobuf-es maps int64 to `bigint`.
 * The builder accepts plain `number`s for convenience and converts them, refusing
 * values that are not safe integers rather than silently rounding.
 *
 * @module
 */
import { clone, create, fromBinary, isMessage, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './proto/onnx_pb.js';
import { toInt64 } from './tensor.js';

/** The generated message types most callers need, re-exported for convenience. */
export type {
  AttributeProto,
  GraphProto,
  ModelProto,
  NodeProto,
  TensorProto,
  ValueInfoProto,
} from './proto/onnx_pb.js';

/**
 * ONNX tensor element types (`TensorProto.DataType`), re-exported under a short name
 * because it is needed by nearly every builder call (`DataType.FLOAT`, ...).
 */
export { TensorProto_DataType as DataType } from './proto/onnx_pb.js';

// Tensors (`tensor`, `dataTypeOf`) and the plain-JS view of a graph's inputs and outputs live in their own files;
// this module is the toolkit's one entry point.
export { dataTypeOf, tensor, type TensorData } from './tensor.js';
export { describeValueInfo, graphInputs, graphOutputs, type ValueDescription } from './signature.js';

/**
 * Default operator-set version of the default (`ai.onnx`, domain `""`) domain used by
 * {@link makeModel}. Opset 17 has every operator our test models need (e.g.
 * Softmax with the opset-13 "single axis" semantics) and is supported by every
 * onnxruntime release since 1.12, including the pinned 1.29.
 */
export const DEFAULT_OPSET = 17;

/**
 * Default `ir_version` written by {@link makeModel}. IR 8 is the IR version that
 * shipped together with opset 17 (onnx 1.12). onnxruntime 1.29 loads IR versions up
 * to 13 (and default-domain opsets up to 26), so 8 is comfortably inside what it
 * accepts while staying readable by older tools as well.
 */
export const DEFAULT_IR_VERSION = 8;

/**
 * Parse serialized ONNX model bytes (the content of a `.onnx` file).
 *
 * Unknown fields (e.g. written by a newer ONNX than our vendored schema) are kept
 * on the messages so that {@link encodeModel} writes them back unchanged.
 * Tensors stored as external data are not resolved: only their
 * `external_data` references are decoded.
 *
 * Bytes fields (notably tensor `raw_data`) are zero-copy views into `bytes`, which
 * keeps decoding a large model cheap; the flip side is that mutating `bytes`
 * afterwards changes the model, and a view's `.buffer` is the whole file (copy with
 * `new Uint8Array(rawData)` before reinterpreting it as a typed array: when `bytes` is
 * a Node Buffer, `rawData.slice()` is still a view).
 *
 * @param bytes - serialized `onnx.ModelProto`
 * @returns the decoded model
 * @throws if the bytes are not a valid protobuf encoding of `ModelProto`
 */
export function decodeModel(bytes: Uint8Array): ModelProto {
  // readUnknownFields is the protobuf-es default; spelled out because losslessness
  // is the contract of this module.
  return fromBinary(ModelProtoSchema, bytes, { readUnknownFields: true });
}

/**
 * Serialize a model to ONNX bytes, suitable for writing to a `.onnx` file or passing
 * straight to `InferenceSession.create(bytes)`.
 *
 * Unknown fields captured by {@link decodeModel} are written back, so
 * `encodeModel(decodeModel(b))` preserves everything in `b`.
 *
 * @param model - the model to serialize
 * @returns serialized `onnx.ModelProto`
 */
export function encodeModel(model: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, model, { writeUnknownFields: true });
}

/**
 * An attribute value for {@link node}. Plain JS values are mapped the way
 * `onnx.helper.make_attribute` maps Python values:
 *
 * - integer `number` or `bigint` -> INT; non-integer `number` -> FLOAT
 * - `string` -> STRING (UTF-8), `Uint8Array` -> STRING (raw bytes)
 * - arrays: all-integer numbers / bigints -> INTS, numbers with a fraction -> FLOATS,
 *   strings -> STRINGS (an empty array is INTS)
 * - `TensorProto` -> TENSOR, `GraphProto` -> GRAPH
 * - an `AttributeProto` (e.g. from {@link attr}) is used as is (its name is set).
 *
 * Because JS has a single number type, a float attribute that happens to be
 * integer-valued (Gemm `alpha: 1`) must be written `attr.float(1)`; onnxruntime
 * rejects attributes of the wrong type.
 */
export type AttrValue =
  | number
  | bigint
  | string
  | Uint8Array
  | readonly number[]
  | readonly bigint[]
  | readonly string[]
  | TensorProto
  | GraphProto
  | AttributeProto;

const utf8 = new TextEncoder();
const AT = AttributeProto_AttributeType;

/**
 * Explicitly typed attribute constructors, for when the inference rules of
 * {@link AttrValue} would pick the wrong ONNX type (integer-valued floats).
 * The returned protos have no name; {@link node} fills it in.
 */
export const attr = {
  /** FLOAT attribute, even for integer values such as `1`. */
  float: (value: number): AttributeProto => create(AttributeProtoSchema, { type: AT.FLOAT, f: value }),
  /** FLOATS attribute, even if every value is integer-valued. */
  floats: (values: readonly number[]): AttributeProto =>
    create(AttributeProtoSchema, { type: AT.FLOATS, floats: [...values] }),
  /** INT attribute (int64). */
  int: (value: number | bigint): AttributeProto => create(AttributeProtoSchema, { type: AT.INT, i: toInt64(value) }),
  /** INTS attribute (int64), e.g. an explicitly empty list. */
  ints: (values: readonly (number | bigint)[]): AttributeProto =>
    create(AttributeProtoSchema, { type: AT.INTS, ints: values.map(toInt64) }),
  /** STRINGS attribute, e.g. an explicitly empty list. */
  strings: (values: readonly string[]): AttributeProto =>
    create(AttributeProtoSchema, { type: AT.STRINGS, strings: values.map((s) => utf8.encode(s)) }),
} as const;

/**
 * Convert a JS value to an `AttributeProto` following the rules of {@link AttrValue}.
 *
 * @param name - attribute name, e.g. `"axis"`
 * @param value - attribute value
 * @returns the attribute
 */
export function attribute(name: string, value: AttrValue): AttributeProto {
  let a: AttributeProto;
  if (isMessage(value, AttributeProtoSchema)) {
    // Clone: we set the name below, and one attr.float(...) may be shared by nodes.
    a = clone(AttributeProtoSchema, value);
  } else if (isMessage(value, TensorProtoSchema)) {
    a = create(AttributeProtoSchema, { type: AT.TENSOR, t: value });
  } else if (isMessage(value, GraphProtoSchema)) {
    a = create(AttributeProtoSchema, { type: AT.GRAPH, g: value });
  } else if (typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value))) {
    a = attr.int(value);
  } else if (typeof value === 'number') {
    a = attr.float(value);
  } else if (typeof value === 'string') {
    a = create(AttributeProtoSchema, { type: AT.STRING, s: utf8.encode(value) });
  } else if (value instanceof Uint8Array) {
    a = create(AttributeProtoSchema, { type: AT.STRING, s: value });
  } else if (value.every((v) => typeof v === 'string')) {
    // Checked before the numeric cases so that [] falls through to INTS below.
    a = value.length > 0 ? attr.strings(value as readonly string[]) : attr.ints([]);
  } else if (value.every((v) => typeof v === 'bigint' || Number.isInteger(v))) {
    a = attr.ints(value as readonly (number | bigint)[]);
  } else if (value.every((v) => typeof v === 'number')) {
    a = attr.floats(value as readonly number[]);
  } else {
    throw new TypeError(`attribute ${name}: unsupported mix of element types`);
  }
  a.name = name;
  return a;
}

/** Optional, less common fields of a {@link node}. */
export interface NodeOptions {
  /** Node name; handy in onnxruntime error messages and profiles. */
  name?: string;
  /** Operator domain; omit for the default `ai.onnx` domain. */
  domain?: string;
}

/**
 * Build a graph node (one operator application).
 *
 * @param opType - operator name, e.g. `"Gemm"`
 * @param inputs - input value names, in operator order (`""` for a skipped optional)
 * @param outputs - output value names
 * @param attrs - attributes by name, see {@link AttrValue} for the type mapping
 * @param options - node name / domain
 * @returns a `NodeProto`
 */
export function node(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  attrs: Readonly<Record<string, AttrValue>> = {},
  options: NodeOptions = {},
): NodeProto {
  const n = create(NodeProtoSchema, {
    opType,
    input: [...inputs],
    output: [...outputs],
    attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
  });
  // Only set optional proto2 fields that were given: protobuf-es tracks presence,
  // and an explicitly set "" would be serialized.
  if (options.name !== undefined) n.name = options.name;
  if (options.domain !== undefined) n.domain = options.domain;
  return n;
}

/**
 * One dimension of a {@link valueInfo} shape: a fixed size, a symbolic name shared
 * between values (e.g. `"batch"`), or `null` for an unknown, unnamed size.
 */
export type Dim = number | bigint | string | null;

/**
 * Declare a typed tensor value (a graph input, output or intermediate).
 *
 * @param name - value name
 * @param elemType - element type, e.g. `DataType.FLOAT`
 * @param dims - shape; strings are symbolic dims (`dim_param`), so
 *   `["batch", 3, 32, 32]` accepts any batch size. Omit for unknown rank.
 * @returns a `ValueInfoProto`
 */
export function valueInfo(name: string, elemType: TensorProto_DataType, dims?: readonly Dim[]): ValueInfoProto {
  const tensorType: { elemType: TensorProto_DataType; shape?: { dim: ReturnType<typeof dimension>[] } } = {
    elemType,
  };
  if (dims !== undefined) tensorType.shape = { dim: dims.map(dimension) };
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, { value: { case: 'tensorType', value: tensorType } }),
  });
}

function dimension(d: Dim) {
  if (d === null) return create(TensorShapeProto_DimensionSchema, {});
  if (typeof d === 'string') return create(TensorShapeProto_DimensionSchema, { value: { case: 'dimParam', value: d } });
  return create(TensorShapeProto_DimensionSchema, { value: { case: 'dimValue', value: toInt64(d) } });
}

/** Arguments of {@link makeGraph}. */
export interface GraphSpec {
  /** Graph name (required by the ONNX checker). */
  name: string;
  /** Nodes in topological order. */
  nodes: readonly NodeProto[];
  /** Graph inputs, without initializers (IR >= 4 does not need them listed). */
  inputs: readonly ValueInfoProto[];
  /** Graph outputs. */
  outputs: readonly ValueInfoProto[];
  /** Constant tensors (weights), referenced by name from node inputs. */
  initializers?: readonly TensorProto[];
  /** Optional type/shape annotations for intermediate values. */
  valueInfo?: readonly ValueInfoProto[];
  /** Human-readable description. */
  docString?: string;
}

/**
 * Assemble a graph from its parts.
 *
 * @param spec - graph contents
 * @returns a `GraphProto`
 */
export function makeGraph(spec: GraphSpec): GraphProto {
  const g = create(GraphProtoSchema, {
    name: spec.name,
    node: [...spec.nodes],
    input: [...spec.inputs],
    output: [...spec.outputs],
    initializer: [...(spec.initializers ?? [])],
    valueInfo: [...(spec.valueInfo ?? [])],
  });
  if (spec.docString !== undefined) g.docString = spec.docString;
  return g;
}

/** Arguments of {@link makeModel}. */
export interface ModelSpec {
  /** The main graph. */
  graph: GraphProto;
  /** Version of the default `ai.onnx` opset; default {@link DEFAULT_OPSET}. */
  opset?: number;
  /** Extra operator sets, e.g. `{ "com.microsoft": 1 }`. */
  extraOpsets?: Readonly<Record<string, number>>;
  /** `ir_version`; default {@link DEFAULT_IR_VERSION}. */
  irVersion?: number;
  /** `producer_name`; default `"muon-serve"`. */
  producer?: string;
  /** `producer_version`. */
  producerVersion?: string;
  /** Human-readable description. */
  docString?: string;
  /** `metadata_props` (free-form key/value pairs, e.g. class labels). */
  metadata?: Readonly<Record<string, string>>;
}

/**
 * Wrap a graph into a complete, loadable model.
 *
 * @param spec - graph and model-level settings
 * @returns a `ModelProto`, ready for {@link encodeModel}
 */
export function makeModel(spec: ModelSpec): ModelProto {
  const opsets: [string, number][] = [['', spec.opset ?? DEFAULT_OPSET], ...Object.entries(spec.extraOpsets ?? {})];
  const m = create(ModelProtoSchema, {
    irVersion: toInt64(spec.irVersion ?? DEFAULT_IR_VERSION),
    producerName: spec.producer ?? 'muon-serve',
    // The ONNX spec requires an opset import for the default domain; the empty string
    // names it (as "ai.onnx" would not match nodes whose domain is left empty).
    opsetImport: opsets.map(([domain, version]) =>
      create(OperatorSetIdProtoSchema, { domain, version: toInt64(version) }),
    ),
    graph: spec.graph,
    metadataProps: Object.entries(spec.metadata ?? {}).map(([key, value]) =>
      create(StringStringEntryProtoSchema, { key, value }),
    ),
  });
  if (spec.producerVersion !== undefined) m.producerVersion = spec.producerVersion;
  if (spec.docString !== undefined) m.docString = spec.docString;
  return m;
}
