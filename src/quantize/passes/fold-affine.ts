import { attr, node, tensor, type ModelProto, type NodeProto, type TensorProto } from '../../onnx/model.js';
import { cloneModel, dimsOf, elementCount, GraphIndex, readFloats } from '../graph.js';

/** What {@link foldAffine} rewrote. */
export interface FoldStats {
  /** `Mul`/`Add`/`Sub`/`Div` by a per-channel constant right after a Conv, now in that Conv's weights and bias. */
  readonly intoProducer: number;
  /** `Mul` (any Conv) or `Add`/`Sub` (a Conv without padding) by a per-channel constant before Convs, now in them. */
  readonly intoConsumer: number;
  /** `x * Clip(x + 3, 0, 6) / 6`, now `x * HardSigmoid(x)` (one pass over the tensor instead of four). */
  readonly hardSwish: number;
}

/**
 * Folds the elementwise affine steps that exporters leave between convolutions into the convolutions' own weights
 * and bias, and rewrites the decomposed hard-swish into the two ops onnxruntime runs it as. PaddlePaddle's
 * PP-LCNetV3 (the PP-OCRv4 recognizer and detector) puts a learnable scalar scale and shift after every
 * convolution and every activation, and onnxruntime's own Conv+Mul/Add fusion does not take them: with the
 * decomposed hard-swish, about half of those models' time went to passes over activations that compute nothing a
 * convolution could not. What changes is float rounding only (products are formed in another order); pruning and
 * quantization then see fewer nodes.
 *
 * - Conv then `Mul`/`Div` by c: weights and bias of output channel o scaled by c[o]; then `Add`/`Sub` c: bias += c[o].
 * - `Mul` by c then Convs (every reader a Conv reading it as its input): input channel i's weights scaled by c[i]
 *   (exact with zero padding: a scaled zero is zero).
 * - `Add`/`Sub` c then Convs without padding: bias[o] += sum of W[o, i, ...] * c[i]. With padding the padded border
 *   would read c instead of zero, so it is left.
 *
 * c is a constant that broadcasts along the channel axis only (a scalar, `[C]`-like `[1, C, 1, 1]`); the folded node
 * must not be a graph output, and a Conv whose weights other nodes share gets its own copy.
 */
export function foldAffine(model: ModelProto): { model: ModelProto; stats: FoldStats } {
  const out = cloneModel(model);
  const g = new GraphIndex(out);
  const hardSwish = fuseHardSwish(g);
  let intoProducer = 0;
  let intoConsumer = 0;
  for (let changed = true; changed;) {
    changed = false;
    for (const n of [...g.graph.node]) {
      // a node folded away earlier in this sweep (into the Conv before it) is gone
      if (!g.graph.node.includes(n)) continue;
      if (n.opType === 'Conv' && (n.domain ?? '') === '' && foldIntoProducer(g, n)) {
        intoProducer++;
        changed = true;
      } else if (AFFINE.has(n.opType) && (n.domain ?? '') === '' && foldIntoConsumers(g, n)) {
        intoConsumer++;
        changed = true;
      }
    }
  }
  g.pruneUnusedInitializers();
  // shapes recorded for tensors no node writes any more
  const written = new Set(g.graph.node.flatMap((n) => n.output));
  g.graph.valueInfo = g.graph.valueInfo.filter((v) => written.has(v.name));
  return { model: out, stats: { intoProducer, intoConsumer, hardSwish } };
}

const AFFINE = new Set(['Mul', 'Div', 'Add', 'Sub']);

/** The one node reading `name`, when exactly one does and it is not a graph output. */
function soleReader(g: GraphIndex, name: string): NodeProto | undefined {
  const readers = g.consumers.get(name) ?? [];
  return readers.length === 1 && !g.graph.output.some((o) => o.name === name) ? readers[0] : undefined;
}

/** The affine node's variable input and its per-channel constant (`channels` values), if it has that form. */
function affineOf(g: GraphIndex, n: NodeProto, channels: number, rank: number) {
  const [a, b] = n.input;
  // Sub and Div are affine only with the constant second
  const order = n.opType === 'Mul' || n.opType === 'Add' ? [[a, b] as const, [b, a] as const] : [[a, b] as const];
  for (const [x, c] of order) {
    const values = g.initializers.has(x) ? undefined : channelValues(g.initializers.get(c), channels, rank);
    if (!values) continue;
    const scale = n.opType === 'Mul' ? values : n.opType === 'Div' ? values.map((v) => 1 / v) : undefined;
    if (scale?.some((v) => !Number.isFinite(v))) return undefined;
    const shift = n.opType === 'Add' ? values : n.opType === 'Sub' ? values.map((v) => -v) : undefined;
    return { x, scale, shift };
  }
  return undefined;
}

/**
 * A float constant's value per channel of an NCHW-like tensor of `rank` dims with `channels` channels, when it
 * varies along that axis only and broadcasting it does not change the tensor's shape.
 */
function channelValues(t: TensorProto | undefined, channels: number, rank: number): Float32Array | undefined {
  if (!t || t.dataType !== 1) return undefined;
  const dims = dimsOf(t);
  if (dims.length > rank) return undefined;
  const channelAxis = 1 - (rank - dims.length);
  if (dims.some((d, k) => d !== 1 && !(k === channelAxis && d === channels))) return undefined;
  const values = readFloats(t);
  if (values.some((v) => !Number.isFinite(v))) return undefined;
  return values.length === channels ? values : new Float32Array(channels).fill(values[0]);
}

function foldIntoProducer(g: GraphIndex, conv: NodeProto): boolean {
  const next = soleReader(g, conv.output[0]);
  if (!next || !AFFINE.has(next.opType) || (next.domain ?? '') !== '') return false;
  const weights = g.initializers.get(conv.input[1]);
  if (!weights || weights.dataType !== 1 || (conv.input[2] && !g.initializers.has(conv.input[2]))) return false;
  const dims = dimsOf(weights);
  const affine = affineOf(g, next, dims[0], dims.length);
  if (!affine || affine.x !== conv.output[0]) return false;
  const w = readFloats(weights).slice();
  const bias = conv.input[2] ? readFloats(g.initializers.get(conv.input[2])!).slice() : new Float32Array(dims[0]);
  const perOutput = w.length / dims[0];
  for (let o = 0; o < dims[0]; o++) {
    const s = affine.scale?.[o] ?? 1;
    for (let k = 0; k < perOutput; k++) w[o * perOutput + k] *= s;
    bias[o] = bias[o] * s + (affine.shift?.[o] ?? 0);
  }
  setParams(g, conv, w, dims, bias);
  // the Conv now writes what the folded node wrote
  conv.output[0] = next.output[0];
  g.producers.set(next.output[0], conv);
  remove(g, next);
  return true;
}

function foldIntoConsumers(g: GraphIndex, n: NodeProto): boolean {
  if (g.graph.output.some((o) => o.name === n.output[0])) return false;
  const readers = g.consumers.get(n.output[0]) ?? [];
  if (readers.length === 0 || readers.some((r) => r.opType !== 'Conv' || r.input[0] !== n.output[0])) return false;
  const shapes = readers.map((r) => g.initializers.get(r.input[1]));
  if (
    shapes.some((w, i) => !w || w.dataType !== 1 || (readers[i].input[2] && !g.initializers.has(readers[i].input[2])))
  )
    return false;
  const groups = readers.map((r) => Number(r.attribute.find((a) => a.name === 'group')?.i ?? 1n));
  const inputChannels = dimsOf(shapes[0]!)[1] * groups[0];
  if (shapes.some((w, i) => dimsOf(w!)[1] * groups[i] !== inputChannels)) return false;
  const affine = affineOf(g, n, inputChannels, dimsOf(shapes[0]!).length);
  if (!affine) return false;
  // a constant that varies by channel could have widened x to that many channels (a 1-channel image divided by a
  // 3-channel std): fold it only where x is known to have them
  const constant = g.initializers.get(n.input.find((i) => i !== affine.x)!)!;
  if (elementCount(constant) > 1 && channelsOf(g, affine.x) !== inputChannels) return false;
  if (affine.shift && readers.some((r) => padded(r))) return false;
  for (const [i, conv] of readers.entries()) {
    const dims = dimsOf(shapes[i]!);
    const w = readFloats(shapes[i]!).slice();
    const bias = conv.input[2] ? readFloats(g.initializers.get(conv.input[2])!).slice() : new Float32Array(dims[0]);
    const [outC, inPerGroup] = dims;
    const kernel = w.length / (outC * inPerGroup);
    const outPerGroup = outC / groups[i];
    for (let o = 0; o < outC; o++) {
      const first = Math.floor(o / outPerGroup) * inPerGroup;
      for (let c = 0; c < inPerGroup; c++) {
        const at = (o * inPerGroup + c) * kernel;
        let sum = 0;
        for (let k = 0; k < kernel; k++) sum += w[at + k];
        // x' = scale x + shift: W x' = (W scale) x + W shift
        bias[o] += sum * (affine.shift?.[first + c] ?? 0);
        const s = affine.scale?.[first + c] ?? 1;
        for (let k = 0; k < kernel; k++) w[at + k] *= s;
      }
    }
    setParams(g, conv, w, dims, bias);
    conv.input[0] = affine.x;
    g.consumers.set(affine.x, [...(g.consumers.get(affine.x) ?? []).filter((r) => r !== n), conv]);
  }
  remove(g, n);
  return true;
}

/** The channel count of a tensor, where a Conv or a BatchNormalization writes it, through elementwise steps. */
function channelsOf(g: GraphIndex, name: string, depth = 0): number | undefined {
  const p = g.producers.get(name);
  if (!p || depth > 16) return undefined;
  if (p.opType === 'Conv') {
    const w = g.initializers.get(p.input[1]);
    return w ? dimsOf(w)[0] : undefined;
  }
  if (p.opType === 'BatchNormalization') {
    const scale = g.initializers.get(p.input[1]);
    return scale ? elementCount(scale) : undefined;
  }
  if (!ELEMENTWISE.has(p.opType)) return undefined;
  // an elementwise step keeps the channels its variable inputs agree on (constants are not followed: unknown)
  const known = p.input.filter((i) => i && !g.initializers.has(i)).map((i) => channelsOf(g, i, depth + 1));
  return known.length > 0 && known.every((c) => c !== undefined && c === known[0]) ? known[0] : undefined;
}

const ELEMENTWISE = new Set([
  'Mul',
  'Add',
  'Sub',
  'Div',
  'HardSigmoid',
  'HardSwish',
  'Relu',
  'Clip',
  'Sigmoid',
  'Tanh',
]);

/** Whether a Conv pads its input (explicit pads, or an auto_pad that pads). */
function padded(conv: NodeProto): boolean {
  const auto = conv.attribute.find((a) => a.name === 'auto_pad')?.s;
  const mode = auto ? new TextDecoder().decode(auto) : 'NOTSET';
  if (mode !== 'NOTSET' && mode !== 'VALID') return true;
  return conv.attribute.find((a) => a.name === 'pads')?.ints.some((p) => p !== 0n) ?? false;
}

/** Gives a Conv new weights and bias of its own (fresh initializers: the old ones may be shared). */
function setParams(g: GraphIndex, conv: NodeProto, w: Float32Array, dims: number[], bias: Float32Array): void {
  const wName = g.freshName(`${conv.input[1]}_folded`);
  g.setInitializer(tensor(wName, dims, w));
  const bName = g.freshName(`${conv.input[2] || conv.name || conv.output[0]}_bias_folded`);
  g.setInitializer(tensor(bName, [dims[0]], bias));
  for (const old of [conv.input[1], conv.input[2]]) {
    if (old)
      g.consumers.set(
        old,
        (g.consumers.get(old) ?? []).filter((r) => r !== conv),
      );
  }
  conv.input[1] = wName;
  conv.input[2] = bName;
  g.consumers.set(wName, [conv]);
  g.consumers.set(bName, [conv]);
}

function remove(g: GraphIndex, n: NodeProto): void {
  g.graph.node.splice(g.graph.node.indexOf(n), 1);
  for (const i of n.input)
    g.consumers.set(
      i,
      (g.consumers.get(i) ?? []).filter((r) => r !== n),
    );
}

/** Rewrites each `x * Clip(x + 3, 0, 6) / 6` (or `* (1/6)`) into `x * HardSigmoid(x, 1/6, 1/2)`. */
function fuseHardSwish(g: GraphIndex): number {
  const scalar = (name: string | undefined) => {
    const t = name ? g.initializers.get(name) : undefined;
    // rank 0 or 1 only: a [1, 1, 1, 1] constant would add axes to a lower-rank tensor, which the fused form does not
    return t && t.dataType === 1 && elementCount(t) === 1 && t.dims.length <= 1 ? readFloats(t)[0] : undefined;
  };
  const clipBounds = (clip: NodeProto): [number | undefined, number | undefined] => {
    const fromAttr = (name: string) => clip.attribute.find((a) => a.name === name)?.f;
    return clip.input.length > 1 ? [scalar(clip.input[1]), scalar(clip.input[2])] : [fromAttr('min'), fromAttr('max')];
  };
  let fused = 0;
  for (const add of [...g.graph.node]) {
    if (add.opType !== 'Add' || (add.domain ?? '') !== '') continue;
    const x = scalar(add.input[1]) === 3 ? add.input[0] : scalar(add.input[0]) === 3 ? add.input[1] : undefined;
    if (x === undefined || g.initializers.has(x)) continue;
    const clip = soleReader(g, add.output[0]);
    if (clip?.opType !== 'Clip' || clipBounds(clip).join() !== '0,6') continue;
    const mul = soleReader(g, clip.output[0]);
    if (mul?.opType !== 'Mul' || !mul.input.includes(x) || !mul.input.includes(clip.output[0])) continue;
    const div = soleReader(g, mul.output[0]);
    const by = scalar(div?.input[1]);
    const isSixth =
      (div?.opType === 'Div' && by === 6) || (div?.opType === 'Mul' && by !== undefined && Math.abs(by * 6 - 1) < 1e-6);
    if (!div || !isSixth || div.input[0] !== mul.output[0]) continue;
    const gate = g.freshName(`${div.output[0]}_gate`);
    const fusedNodes = [
      node(
        'HardSigmoid',
        [x],
        [gate],
        { alpha: attr.float(1 / 6), beta: attr.float(0.5) },
        {
          name: g.freshName(`${add.name || gate}_hardsigmoid`),
        },
      ),
      node('Mul', [x, gate], [...div.output], {}, { name: g.freshName(`${div.name || gate}_hardswish`) }),
    ];
    g.insertBefore(add, ...fusedNodes);
    for (const old of [add, clip, mul, div]) remove(g, old);
    g.producers.set(div.output[0], fusedNodes[1]);
    fused++;
  }
  return fused;
}
