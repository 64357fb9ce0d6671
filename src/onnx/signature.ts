import type { Dim } from './model.js';
import type { ModelProto, TensorProto_DataType, ValueInfoProto } from './proto/onnx_pb.js';

// A plain-JS view of a graph's inputs and outputs: names, element types and declared shapes (see model.ts, which
// re-exports these).

/** A plain-JS description of a tensor value's declared type and shape. */
export interface ValueDescription {
  /** Value name. */
  name: string;
  /** Element type, or `undefined` if the value is not a tensor (sequence, map, ...). */
  elemType: TensorProto_DataType | undefined;
  /**
   * Declared shape: numbers for fixed sizes, strings for symbolic dims, `null` for
   * unknown ones; `undefined` when the rank itself is unknown.
   */
  dims: Dim[] | undefined;
}

/**
 * Describe a value's declared type and shape. Fixed dims become `number`s (real
 * tensor dims are far below 2^53).
 *
 * @param vi - a graph input/output/value_info entry
 * @returns name, element type and dims
 */
export function describeValueInfo(vi: ValueInfoProto): ValueDescription {
  const t = vi.type?.value.case === 'tensorType' ? vi.type.value.value : undefined;
  const dims = t?.shape?.dim.map((d): Dim => {
    if (d.value.case === 'dimValue') return Number(d.value.value);
    if (d.value.case === 'dimParam') return d.value.value;
    return null;
  });
  return { name: vi.name, elemType: t?.elemType, dims };
}

/**
 * The inputs a caller must feed: graph inputs minus initializers. Models with
 * IR < 4 (e.g. older Paddle/Caffe2 exports) also list every weight as a graph input;
 * those are filtered out here.
 *
 * @param model - a decoded model
 * @returns descriptions of the runtime inputs, in graph order
 */
export function graphInputs(model: ModelProto): ValueDescription[] {
  const graph = model.graph;
  if (!graph) return [];
  const weights = new Set(graph.initializer.map((t) => t.name));
  return graph.input.filter((vi) => !weights.has(vi.name)).map(describeValueInfo);
}

/**
 * The graph's outputs.
 *
 * @param model - a decoded model
 * @returns descriptions of the outputs, in graph order
 */
export function graphOutputs(model: ModelProto): ValueDescription[] {
  return (model.graph?.output ?? []).map(describeValueInfo);
}
