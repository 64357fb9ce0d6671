import {
  DataType,
  describeValueInfo,
  tensor,
  type GraphProto,
  type ModelProto,
  type TensorData,
} from '../../onnx/model.js';
import { cloneModel, GraphIndex } from '../graph.js';

/** Element types an input can be pinned to, and how a number is stored in each. */
const typed: Partial<Record<DataType, (v: number) => TensorData>> = {
  [DataType.FLOAT]: (v) => new Float32Array([v]),
  [DataType.INT64]: (v) => new BigInt64Array([BigInt(v)]),
  [DataType.INT32]: (v) => new Int32Array([v]),
};

/**
 * Pins graph inputs that the server always feeds the same value to constants, so onnxruntime's constant folding can
 * remove what depends on them. Silero VAD feeds its sample rate `sr` (always 16000 for a 16 kHz manifest) into an
 * `If` that picks the 16 kHz or the 8 kHz network; once `sr` is a constant the optimizer inlines the branch taken,
 * and the quantization passes (which do not descend into subgraphs) reach its Convs and MatMuls. The input stays
 * declared, unused, so callers feed it as before; the model then answers for that value only.
 *
 * @param values input name to the scalar it is pinned to (the input must be a scalar or have fixed dims of size 1)
 * @throws when an input does not exist, has another shape, or an element type other than float32/int32/int64
 */
export function fixInputs(model: ModelProto, values: Readonly<Record<string, number>>): ModelProto {
  const out = cloneModel(model);
  const g = new GraphIndex(out);
  for (const [name, value] of Object.entries(values)) {
    const vi = g.graph.input.find((i) => i.name === name && !g.initializers.has(name));
    if (!vi) throw new Error(`--fix-input: the model has no input '${name}' (inputs: ${g.inputNames.join(', ')})`);
    const { elemType, dims } = describeValueInfo(vi);
    const make = elemType === undefined ? undefined : typed[elemType];
    if (!make || !dims || dims.some((d) => d !== 1)) {
      throw new Error(`--fix-input: input '${name}' is not a float32/int32/int64 scalar`);
    }
    const constant = g.freshName(`${name}_fixed`);
    g.setInitializer(tensor(constant, dims as number[], make(value)));
    rename(g.graph, name, constant);
  }
  return out;
}

/** Points every use of `from` at `to`, in the graph and in the subgraphs of its nodes (which see outer names). */
function rename(graph: GraphProto, from: string, to: string): void {
  for (const n of graph.node) {
    n.input = n.input.map((i) => (i === from ? to : i));
    for (const a of n.attribute) {
      if (a.g) rename(a.g, from, to);
      for (const sub of a.graphs) rename(sub, from, to);
    }
  }
}
