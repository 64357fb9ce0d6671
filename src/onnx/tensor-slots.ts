// Every tensor an ONNX model holds, each with a way to replace it where it sits: initializers, sparse initializers
// and attribute tensors, in the main graph, its subgraphs and its functions (external-data.ts moves them in and out).
import type { GraphProto, ModelProto, TensorProto } from './model.js';
import type { AttributeProto, NodeProto, SparseTensorProto } from './proto/onnx_pb.js';

/** A tensor and a way to replace it in its parent. */
export interface TensorSlot {
  readonly tensor: TensorProto;
  replace(t: TensorProto): void;
}

/** Every tensor a model holds: initializers, sparse initializers and attribute tensors, in all graphs and functions. */
export function* tensors(model: ModelProto): Generator<TensorSlot> {
  if (model.graph) yield* graphTensors(model.graph, true);
  for (const f of model.functions) yield* nodeTensors(f.node, true);
}

/** Dense initializers only, in the main graph and subgraphs: what external-data.ts's saveModelFile moves out (as onnx does). */
export function* initializerSlots(model: ModelProto): Generator<TensorSlot> {
  if (model.graph) yield* graphTensors(model.graph, false);
}

function* graphTensors(g: GraphProto, all: boolean): Generator<TensorSlot> {
  yield* arraySlots(g.initializer);
  if (all) for (const s of g.sparseInitializer) yield* sparseSlots(s);
  yield* nodeTensors(g.node, all);
}

function* nodeTensors(nodes: readonly NodeProto[], all: boolean): Generator<TensorSlot> {
  for (const n of nodes) for (const a of n.attribute) yield* attributeTensors(a, all);
}

function* attributeTensors(a: AttributeProto, all: boolean): Generator<TensorSlot> {
  if (all) {
    const t = a.t;
    if (t) yield { tensor: t, replace: (x) => (a.t = x) };
    yield* arraySlots(a.tensors);
    if (a.sparseTensor) yield* sparseSlots(a.sparseTensor);
    for (const s of a.sparseTensors) yield* sparseSlots(s);
  }
  if (a.g) yield* graphTensors(a.g, all);
  for (const g of a.graphs) yield* graphTensors(g, all);
}

function* sparseSlots(s: SparseTensorProto): Generator<TensorSlot> {
  const { values, indices } = s;
  if (values) yield { tensor: values, replace: (x) => (s.values = x) };
  if (indices) yield { tensor: indices, replace: (x) => (s.indices = x) };
}

function* arraySlots(list: TensorProto[]): Generator<TensorSlot> {
  for (let i = 0; i < list.length; i++) yield { tensor: list[i], replace: (x) => (list[i] = x) };
}

/** Approximate bytes of tensor data in the model, to decide whether it fits in one protobuf. */
export function tensorBytes(model: ModelProto): number {
  let n = 0;
  for (const { tensor: t } of tensors(model)) {
    n +=
      t.rawData.length +
      4 * (t.floatData.length + t.int32Data.length) +
      8 * (t.int64Data.length + t.doubleData.length + t.uint64Data.length);
    for (const s of t.stringData) n += s.length;
  }
  return n;
}
