import { node, tensor, type NodeProto } from '../../onnx/model.js';
import { dimsOf, type GraphIndex, readFloats, topologicalOrder } from '../graph.js';
import {
  activationQParams,
  quantizeBias,
  quantizeWeight,
  type QParams,
  type QuantizedWeight,
  type Range,
} from '../quant-math.js';

// The second half of static QDQ quantization (quantize-static.ts decides, this writes): what a plan says to
// quantize becomes QuantizeLinear / DequantizeLinear nodes and quantized initializers in the graph.

export interface ActivationPlan {
  /** Calibrated tensor whose range gives the qparams. */
  readonly rangeOf: string;
  /** Use the qparams of this (earlier) tensor instead of a range: outputs of DIRECT_8BIT ops. */
  readonly sameAs?: string;
}

export interface WeightPlan {
  readonly type: 'int8' | 'uint8';
  readonly symmetric: boolean;
  readonly axis?: number;
}

export interface BiasPlan {
  readonly input: string;
  readonly weight: string;
}

/** A Mul or Div by a positive scalar constant, done by the scale of a DequantizeLinear instead of an op. */
export interface RescalePlan {
  /** The quantized tensor the removed node read. */
  readonly input: string;
  /** What the node multiplied it by. */
  readonly factor: number;
}

export interface Plan {
  readonly activations: Map<string, ActivationPlan>;
  readonly weights: Map<string, WeightPlan>;
  readonly biases: Map<string, BiasPlan>;
  /** By output tensor: nodes removed because a dequantization scale does their work (a Mul or Div by a positive scalar). */
  readonly rescaled: Map<string, RescalePlan>;
  readonly removed: Set<NodeProto>;
}

/** Replaces `from` by `to` in the inputs of every node but `except`. */
function rewireConsumers(index: GraphIndex, from: string, to: string, except: NodeProto): void {
  for (const n of index.graph.node) {
    if (n === except) continue;
    for (let i = 0; i < n.input.length; i++) if (n.input[i] === from) n.input[i] = to;
  }
}

/**
 * Writes a plan into the graph: quantized initializers, Q/DQ nodes, int32 biases, the rescaling DequantizeLinears.
 *
 * @param reduceRange 7-bit int8 weights
 */
export function applyPlan(
  index: GraphIndex,
  plan: Plan,
  ranges: ReadonlyMap<string, Range>,
  reduceRange = false,
): void {
  const g = index.graph;
  g.node = g.node.filter((n) => !plan.removed.has(n));
  const added: NodeProto[] = [];
  const qparams = new Map<string, { params: QParams; scale: string; zeroPoint: string }>();
  const quantizedWeights = new Map<string, QuantizedWeight>();
  /** The uint8 tensor (QuantizeLinear output) of each quantized activation. */
  const quantizedAs = new Map<string, string>();
  const stillRead = (name: string) => (index.consumers.get(name) ?? []).some((n) => !plan.removed.has(n));

  for (const [name, p] of plan.weights) {
    const init = index.initializers.get(name);
    if (!init) throw new Error(`weight '${name}' is not an initializer: this is a bug`);
    const dims = dimsOf(init);
    const q = quantizeWeight(readFloats(init), dims, {
      type: p.type,
      symmetric: p.symmetric,
      reduceRange: p.type === 'int8' && reduceRange,
      axis: p.axis,
    });
    quantizedWeights.set(name, q);
    const qName = index.freshName(`${name}_quantized`);
    const sName = index.freshName(`${name}_scale`);
    const zName = index.freshName(`${name}_zero_point`);
    const perChannelDims = q.axis === undefined ? [] : [q.scales.length];
    index.setInitializer(tensor(qName, dims, q.data));
    index.setInitializer(tensor(sName, perChannelDims, q.scales));
    index.setInitializer(tensor(zName, perChannelDims, q.zeroPoints));
    const out = index.freshName(`${name}_DequantizeLinear_Output`);
    const dq = node('DequantizeLinear', [qName, sName, zName], [out], q.axis === undefined ? {} : { axis: q.axis }, {
      name: index.freshName(`${name}_DequantizeLinear`),
    });
    rewireConsumers(index, name, out, dq);
    added.push(dq);
  }

  const graphOutputs = new Set(g.output.map((v) => v.name));
  for (const [name, p] of plan.activations) {
    let scale: string;
    let zeroPoint: string;
    let params: QParams;
    const shared = p.sameAs ? qparams.get(p.sameAs) : undefined;
    if (shared) {
      ({ scale, zeroPoint, params } = shared);
    } else {
      const range = ranges.get(p.rangeOf);
      if (!range) throw new Error(`no range for '${p.rangeOf}': this is a bug`);
      params = activationQParams(range);
      scale = index.freshName(`${name}_scale`);
      zeroPoint = index.freshName(`${name}_zero_point`);
      index.setInitializer(tensor(scale, [], new Float32Array([params.scale])));
      index.setInitializer(tensor(zeroPoint, [], new Uint8Array([params.zeroPoint])));
    }
    qparams.set(name, { params, scale, zeroPoint });
    let qInput = name;
    let dqOutput: string;
    if (graphOutputs.has(name)) {
      // The graph output keeps its name (and stays float): the producer writes to a new name that feeds the Q.
      qInput = index.freshName(`${name}_QuantizeLinear_Input`);
      for (const n of g.node) for (let i = 0; i < n.output.length; i++) if (n.output[i] === name) n.output[i] = qInput;
      dqOutput = name;
    } else {
      dqOutput = index.freshName(`${name}_DequantizeLinear_Output`);
    }
    const qOut = index.freshName(`${name}_QuantizeLinear_Output`);
    const q = node(
      'QuantizeLinear',
      [qInput, scale, zeroPoint],
      [qOut],
      {},
      {
        name: index.freshName(`${name}_QuantizeLinear`),
      },
    );
    const dq = node(
      'DequantizeLinear',
      [qOut, scale, zeroPoint],
      [dqOutput],
      {},
      {
        name: index.freshName(`${name}_DequantizeLinear`),
      },
    );
    if (!graphOutputs.has(name)) rewireConsumers(index, name, dqOutput, q);
    // a tensor only rescaled (read by removed nodes alone) needs its uint8 values but no dequantization: a
    // DequantizeLinear nobody reads is not removed by onnxruntime, which converts it to NHWC like the rest
    added.push(q);
    if (graphOutputs.has(name) || stillRead(name)) added.push(dq);
    quantizedAs.set(name, qOut);
  }

  // the output of a removed Mul / Div by a scalar: its input's uint8 values with the scale times the factor
  for (const [name, r] of plan.rescaled) {
    // one only rescaled again needs no node of its own
    if (!stillRead(name)) continue;
    const input = qparams.get(r.input);
    const values = quantizedAs.get(r.input);
    if (!input || !values) throw new Error(`rescaled '${name}' lost its input '${r.input}': this is a bug`);
    const scale = index.freshName(`${name}_scale`);
    const params = { ...input.params, scale: Math.fround(input.params.scale * r.factor) };
    index.setInitializer(tensor(scale, [], new Float32Array([params.scale])));
    // (a Conv reading it quantizes its bias with this scale)
    qparams.set(name, { params, scale, zeroPoint: input.zeroPoint });
    added.push(
      node(
        'DequantizeLinear',
        [values, scale, input.zeroPoint],
        [name],
        {},
        {
          name: index.freshName(`${name}_DequantizeLinear`),
        },
      ),
    );
  }

  for (const [name, p] of plan.biases) {
    const init = index.initializers.get(name);
    const input = qparams.get(p.input);
    const w = quantizedWeights.get(p.weight);
    if (!init || !input || !w) throw new Error(`bias '${name}' lost its input or weight: this is a bug`);
    const q = quantizeBias(readFloats(init), input.params.scale, w.scales);
    const qName = index.freshName(`${name}_quantized`);
    const sName = index.freshName(`${name}_quantized_scale`);
    const zName = index.freshName(`${name}_quantized_zero_point`);
    const dims = w.axis === undefined ? [] : [q.scales.length];
    index.setInitializer(tensor(qName, dimsOf(init), q.data));
    index.setInitializer(tensor(sName, dims, q.scales));
    index.setInitializer(tensor(zName, dims, new Int32Array(q.scales.length)));
    // The DequantizeLinear takes over the bias's name, so the consuming node is unchanged.
    g.initializer = g.initializer.filter((t) => t !== init);
    g.input = g.input.filter((v) => v.name !== name); // old exporters list initializers as graph inputs too
    index.initializers.delete(name);
    added.push(
      node('DequantizeLinear', [qName, sName, zName], [name], w.axis === undefined ? {} : { axis: 0 }, {
        name: index.freshName(`${name}_DequantizeLinear`),
      }),
    );
  }

  g.node.push(...added);
  g.node = topologicalOrder(g);
  index.pruneUnusedInitializers();
}
