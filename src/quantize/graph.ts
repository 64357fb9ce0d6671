import { clone, create } from '@bufbuild/protobuf';
import { DataType, tensor, type GraphProto, type ModelProto, type NodeProto, type TensorProto } from '../onnx/model.js';
import { ModelProtoSchema, TensorProtoSchema } from '../onnx/proto/onnx_pb.js';
import { halfToFloat } from '../onnx/float16.js';

export { floatToHalf, halfToFloat } from '../onnx/float16.js';

// Shared graph plumbing for the compression passes. Passes are pure: they take a ModelProto and return a new one
// (use `cloneModel` first), never touching files; the CLI does the IO.

/** A deep copy, so a pass can edit freely without changing its input. */
export function cloneModel(model: ModelProto): ModelProto {
  return clone(ModelProtoSchema, model);
}

/** Element count of a tensor from its dims. */
export function elementCount(t: TensorProto): number {
  return t.dims.reduce((a, d) => a * Number(d), 1);
}

/** Dims as plain numbers. */
export function dimsOf(t: TensorProto): number[] {
  return t.dims.map(Number);
}

/**
 * Reads an initializer's values as float32, from `raw_data` or the typed fields, for FLOAT, FLOAT16 and DOUBLE.
 * External data must be inlined before (`loadModelFile` in src/onnx/external-data.ts). Throws for other types.
 */
export function readFloats(t: TensorProto): Float32Array {
  const n = elementCount(t);
  if (t.externalData.length > 0 && t.rawData.length === 0) {
    throw new Error(`initializer '${t.name}' is stored as external data; read the model with loadModelFile`);
  }
  const raw = t.rawData.length > 0 ? copyBytes(t.rawData) : undefined; // an aligned copy, not a view of the file
  switch (t.dataType) {
    case DataType.FLOAT:
      return raw ? new Float32Array(raw.buffer, 0, n) : Float32Array.from(t.floatData);
    case DataType.DOUBLE:
      return Float32Array.from(raw ? new Float64Array(raw.buffer, 0, n) : t.doubleData);
    case DataType.FLOAT16: {
      const bits = raw ? new Uint16Array(raw.buffer, 0, n) : Uint16Array.from(t.int32Data);
      return Float32Array.from(bits, halfToFloat);
    }
    default:
      throw new Error(`initializer '${t.name}' has type ${DataType[t.dataType]}, not a float type`);
  }
}

/** Reads an integer initializer (INT8/UINT8/INT32/INT64) as numbers. */
export function readInts(t: TensorProto): number[] {
  const n = elementCount(t);
  const raw = t.rawData.length > 0 ? copyBytes(t.rawData) : undefined;
  switch (t.dataType) {
    case DataType.INT8:
      return raw ? [...new Int8Array(raw.buffer, 0, n)] : [...t.int32Data];
    case DataType.UINT8:
      return raw ? [...new Uint8Array(raw.buffer, 0, n)] : [...t.int32Data];
    case DataType.INT32:
      return raw ? [...new Int32Array(raw.buffer, 0, n)] : [...t.int32Data];
    case DataType.INT64:
      return raw ? [...new BigInt64Array(raw.buffer, 0, n)].map(Number) : t.int64Data.map(Number);
    default:
      throw new Error(`initializer '${t.name}' has type ${DataType[t.dataType]}, not an integer type`);
  }
}

// A real copy at offset 0. Not `bytes.slice()`: models decoded from `readFileSync` output hold Node Buffers, whose
// `slice` is a view sharing the file's (pooled) ArrayBuffer, so `new Float32Array(copy.buffer)` would read other bytes.
function copyBytes(bytes: Uint8Array): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes);
}

/**
 * An index over one graph: producers, consumers and initializers by tensor name, and fresh names. Build it again
 * after structural edits (it is cheap), or keep it current with the mutating helpers here.
 */
export class GraphIndex {
  readonly graph: GraphProto;
  readonly initializers = new Map<string, TensorProto>();
  readonly producers = new Map<string, NodeProto>();
  readonly consumers = new Map<string, NodeProto[]>();
  readonly #names = new Set<string>();

  /** @param model indexed in place: the helpers below edit `model.graph` */
  constructor(readonly model: ModelProto) {
    if (!model.graph) throw new Error('the model has no graph');
    this.graph = model.graph;
    for (const t of this.graph.initializer) {
      this.initializers.set(t.name, t);
      this.#names.add(t.name);
    }
    for (const v of [...this.graph.input, ...this.graph.output, ...this.graph.valueInfo]) this.#names.add(v.name);
    for (const n of this.graph.node) this.#indexNode(n);
  }

  #indexNode(n: NodeProto): void {
    if (n.name) this.#names.add(n.name);
    for (const o of n.output) {
      this.producers.set(o, n);
      this.#names.add(o);
    }
    // a node also consumes the outer tensors its subgraphs (If/Loop/Scan bodies) read implicitly
    for (const i of new Set([...n.input, ...implicitInputs(n)])) {
      if (!i) continue;
      const list = this.consumers.get(i) ?? [];
      list.push(n);
      this.consumers.set(i, list);
    }
  }

  /** The default-domain opset version the model imports. */
  get opset(): number {
    const o = this.model.opsetImport.find((x) => (x.domain ?? '') === '' || x.domain === 'ai.onnx');
    return o ? Number(o.version) : 0;
  }

  /** Names of the graph's real inputs (not initializers listed as inputs, as old exporters did). */
  get inputNames(): string[] {
    return this.graph.input.map((i) => i.name).filter((n) => !this.initializers.has(n));
  }

  /** A tensor or node name not used anywhere in the graph yet, derived from `base`. */
  freshName(base: string): string {
    let name = base;
    for (let i = 1; this.#names.has(name); i++) name = `${base}_${i}`;
    this.#names.add(name);
    return name;
  }

  /** Adds (or replaces, by name) an initializer. */
  setInitializer(t: TensorProto): void {
    const old = this.initializers.get(t.name);
    if (old) this.graph.initializer[this.graph.initializer.indexOf(old)] = t;
    else this.graph.initializer.push(t);
    this.initializers.set(t.name, t);
    this.#names.add(t.name);
  }

  /** Adds a float32 initializer with a fresh name derived from `base`; returns the name. */
  addFloats(base: string, dims: readonly number[], data: Float32Array): string {
    const name = this.freshName(base);
    this.setInitializer(tensor(name, dims, data));
    return name;
  }

  /** Inserts nodes right before `anchor` in node order (or at the end), keeping the index current. */
  insertBefore(anchor: NodeProto | undefined, ...nodes: NodeProto[]): void {
    const at = anchor ? this.graph.node.indexOf(anchor) : -1;
    if (at < 0) this.graph.node.push(...nodes);
    else this.graph.node.splice(at, 0, ...nodes);
    for (const n of nodes) this.#indexNode(n);
  }

  /** Removes initializers no node and no graph output uses any more. */
  pruneUnusedInitializers(): void {
    const used = new Set(this.graph.node.flatMap((n) => [...n.input, ...implicitInputs(n)]));
    for (const o of this.graph.output) used.add(o.name);
    const dropped = new Set([...this.initializers.keys()].filter((name) => !used.has(name)));
    this.graph.initializer = this.graph.initializer.filter((t) => !dropped.has(t.name));
    for (const name of dropped) this.initializers.delete(name);
    // old exports list initializers as graph inputs too: a dropped one must not stay behind as a real input
    this.graph.input = this.graph.input.filter((i) => !dropped.has(i.name));
  }
}

/**
 * Names read by the nodes inside a node's subgraphs (If/Loop/Scan bodies, nested ones included): a subgraph may use
 * outer tensors without listing them as inputs. Includes names the subgraph defines itself; callers intersect.
 */
export function implicitInputs(n: NodeProto, into = new Set<string>()): Set<string> {
  for (const a of n.attribute) {
    for (const sub of [...(a.g ? [a.g] : []), ...a.graphs]) {
      for (const m of sub.node) {
        for (const i of m.input) into.add(i);
        implicitInputs(m, into);
      }
    }
  }
  return into;
}

/**
 * Nodes in an order where every input is produced before it is consumed (Kahn's algorithm, stable), counting the
 * outer tensors a node's subgraphs read.
 */
export function topologicalOrder(graph: GraphProto): NodeProto[] {
  const available = new Set<string>([...graph.input.map((i) => i.name), ...graph.initializer.map((t) => t.name), '']);
  const defined = new Set([...available, ...graph.node.flatMap((n) => n.output)]);
  const needs = new Map(
    graph.node.map((n) => [n, [...n.input, ...[...implicitInputs(n)].filter((x) => defined.has(x))]] as const),
  );
  const pending = [...graph.node];
  const ordered: NodeProto[] = [];
  while (pending.length > 0) {
    const i = pending.findIndex((n) => needs.get(n)!.every((x) => available.has(x)));
    if (i < 0) throw new Error(`the graph has a cycle or a missing input near node '${pending[0].name}'`);
    const [n] = pending.splice(i, 1);
    ordered.push(n);
    for (const o of n.output) available.add(o);
  }
  return ordered;
}

/** Node display names: the name, or `OpType#index` for unnamed nodes (indices in graph order). */
export function nodeNames(graph: GraphProto): Map<NodeProto, string> {
  return new Map(graph.node.map((n, i) => [n, n.name || `${n.opType}#${i}`]));
}

/**
 * Turns `Constant` nodes holding a tensor (`value` attribute) into initializers of the same name, in place, as
 * onnxruntime does on load: exporters such as paddle2onnx store every weight that way, and the pruning passes read
 * and rewrite weights as initializers. Subgraphs are left as they are.
 *
 * @param model - edited in place (pass a clone)
 */
export function liftConstants(model: ModelProto): void {
  const graph = model.graph!;
  const kept: NodeProto[] = [];
  for (const n of graph.node) {
    const value = n.attribute.find((a) => a.name === 'value')?.t;
    if (n.opType === 'Constant' && (n.domain ?? '') === '' && n.attribute.length === 1 && value) {
      graph.initializer.push(create(TensorProtoSchema, { ...value, name: n.output[0] }));
    } else {
      kept.push(n);
    }
  }
  graph.node = kept;
}
