import { node, type ModelProto } from '../../onnx/model.js';
import { cloneModel, elementCount, GraphIndex, readFloats } from '../graph.js';

/** What {@link simplifyForQuantization} rewrote. */
export interface SimplifyStats {
  /** `Div(x, c)` by a constant, now `Mul(x, 1/c)`. */
  readonly divToMul: number;
  /** `HardSigmoid(x)`, now `Clip(Add(Mul(x, alpha), beta), 0, 1)`. */
  readonly hardSigmoid: number;
}

/**
 * Rewrites float ops that onnxruntime has no quantized kernel for into equivalent ops it has (QLinearMul,
 * QLinearAdd, and a Clip folded into the preceding range), so a QDQ model does not drop back to float and
 * requantize around them. On MobileNetV3-style nets (hardswish = x * clip(x + 3, 0, 6) / 6, squeeze-excitation
 * with HardSigmoid) this removes a Q/DQ round trip per activation, which is what made int8 slower than float.
 * The results differ from the original only by float rounding (x / c against x * (1 / c)). Needs opset >= 13 for
 * Clip's min/max inputs; other models are returned unchanged.
 */
export function simplifyForQuantization(model: ModelProto): { model: ModelProto; stats: SimplifyStats } {
  const out = cloneModel(model);
  const g = new GraphIndex(out);
  if (g.opset < 13) return { model: out, stats: { divToMul: 0, hardSigmoid: 0 } };
  let divToMul = 0;
  let hardSigmoid = 0;
  const replaced: { old: (typeof g.graph.node)[number]; with: (typeof g.graph.node)[number][] }[] = [];
  for (const n of g.graph.node) {
    if (n.opType === 'Div' && (n.domain ?? '') === '') {
      const c = g.initializers.get(n.input[1]);
      if (!c || elementCount(c) !== 1 || readFloats(c)[0] === 0) continue;
      const reciprocal = g.addFloats(
        `${n.input[1]}_reciprocal`,
        c.dims.map(Number),
        new Float32Array([1 / readFloats(c)[0]]),
      );
      replaced.push({
        old: n,
        with: [node('Mul', [n.input[0], reciprocal], [...n.output], {}, { name: n.name || undefined })],
      });
      divToMul++;
    } else if (n.opType === 'HardSigmoid' && (n.domain ?? '') === '') {
      const get = (name: string, fallback: number) => n.attribute.find((a) => a.name === name)?.f ?? fallback;
      const base = n.name || n.output[0];
      const alpha = g.addFloats(`${base}_alpha`, [], new Float32Array([get('alpha', 0.2)]));
      const beta = g.addFloats(`${base}_beta`, [], new Float32Array([get('beta', 0.5)]));
      const lo = g.addFloats(`${base}_min`, [], new Float32Array([0]));
      const hi = g.addFloats(`${base}_max`, [], new Float32Array([1]));
      const scaled = g.freshName(`${base}_scaled`);
      const shifted = g.freshName(`${base}_shifted`);
      replaced.push({
        old: n,
        with: [
          node('Mul', [n.input[0], alpha], [scaled], {}, { name: g.freshName(`${base}_mul`) }),
          node('Add', [scaled, beta], [shifted], {}, { name: g.freshName(`${base}_add`) }),
          node('Clip', [shifted, lo, hi], [...n.output], {}, { name: n.name || undefined }),
        ],
      });
      hardSigmoid++;
    }
  }
  for (const r of replaced) g.graph.node.splice(g.graph.node.indexOf(r.old), 1, ...r.with);
  g.pruneUnusedInitializers();
  return { model: out, stats: { divToMul, hardSigmoid } };
}
