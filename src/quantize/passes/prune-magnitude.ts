import { create } from '@bufbuild/protobuf';
import { gzipSync } from 'node:zlib';
import type { ModelProto, NodeProto, TensorProto } from '../../onnx/model.js';
import { DataType } from '../../onnx/model.js';
import { TensorProtoSchema } from '../../onnx/proto/onnx_pb.js';
import { cloneModel, GraphIndex, liftConstants, readFloats } from '../graph.js';
import { elementBytes } from './slice-tensor.js';

/**
 * Unstructured magnitude pruning: the smallest-|w| weights are set to exactly 0.
 *
 * Dense onnxruntime kernels do the same work on zeros, so this buys no speed; what it buys is compressibility (runs
 * of zero bytes deflate well), which is why {@link compressedSize} exists: report size before and after gzip, not
 * latency. Only float weights (FLOAT, FLOAT16, DOUBLE) are pruned, and never biases.
 */
export interface PruneMagnitudeOptions {
  /** Fraction of the weights to zero, in [0, 1). */
  sparsity: number;
  /** Node names to leave alone. */
  excludeNodes?: string[];
  /** Operator types whose weight is pruned. Default Conv, MatMul, Gemm. */
  opTypes?: string[];
  /**
   * `layer` (default): every weight tensor gets exactly `floor(sparsity * size)` zeros, so no layer is emptied.
   * `global`: one magnitude threshold over all the selected weights (layers with small weights lose more).
   */
  scope?: 'layer' | 'global';
}

/** One pruned weight tensor. */
export interface MagnitudeLayer {
  /** The node that uses the weight (the first one, for a weight shared by several nodes). */
  node: string;
  /** Weight element count. */
  weights: number;
  /** Zeros in the weight after pruning (those already zero included). */
  zeroed: number;
}

/** What {@link pruneMagnitude} did. */
export interface PruneMagnitudeResult {
  /** The pruned model (a new ModelProto; the input is not modified). */
  model: ModelProto;
  /** Each pruned weight tensor. */
  layers: MagnitudeLayer[];
  /** Zeros / weights over all pruned tensors. */
  sparsity: number;
}

/** The weight input of a node, if it is a float initializer: Conv/Gemm input 1, MatMul whichever input is constant. */
function weightOf(n: NodeProto, g: GraphIndex): TensorProto | undefined {
  const candidates = n.opType === 'MatMul' ? [n.input[1], n.input[0]] : [n.input[1]];
  for (const name of candidates) {
    const t = name ? g.initializers.get(name) : undefined;
    if (t && [DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE].includes(t.dataType)) return t;
  }
  return undefined;
}

/**
 * Zeros the smallest-magnitude weights of Conv / MatMul / Gemm nodes (see {@link PruneMagnitudeOptions}). Ties at
 * the threshold are broken by position, so the zero count is exact and the result deterministic. `Constant` nodes
 * holding tensors are turned into initializers first (see `liftConstants`).
 *
 * @throws if `sparsity` is not in [0, 1)
 */
export function pruneMagnitude(model: ModelProto, opts: PruneMagnitudeOptions): PruneMagnitudeResult {
  const { sparsity } = opts;
  if (!(typeof sparsity === 'number' && sparsity >= 0 && sparsity < 1)) {
    throw new RangeError(`sparsity must be in [0, 1), got ${sparsity}`);
  }
  const scope = opts.scope ?? 'layer';
  if (scope !== 'layer' && scope !== 'global') throw new RangeError(`scope must be 'layer' or 'global', got ${scope}`);
  const opTypes = new Set(opts.opTypes ?? ['Conv', 'MatMul', 'Gemm']);
  const excluded = new Set(opts.excludeNodes ?? []);
  const out = cloneModel(model);
  liftConstants(out);
  const g = new GraphIndex(out);

  const picked: { node: string; t: TensorProto; w: Float32Array }[] = [];
  const seen = new Set<string>();
  g.graph.node.forEach((n, i) => {
    const name = n.name || `${n.opType}#${i}`;
    if (!opTypes.has(n.opType) || excluded.has(name)) return;
    const t = weightOf(n, g);
    if (!t || seen.has(t.name)) return;
    seen.add(t.name);
    picked.push({ node: name, t, w: readFloats(t) });
  });

  // Per layer, the k-th smallest |w| is the threshold; globally, the k-th smallest over all picked weights.
  const threshold = (values: Float32Array[], k: number): number => {
    if (k === 0) return -1;
    const all = new Float32Array(values.reduce((a, v) => a + v.length, 0));
    let at = 0;
    for (const v of values) for (let i = 0; i < v.length; i++) all[at++] = Math.abs(v[i]);
    return all.sort()[k - 1];
  };
  const total = picked.reduce((a, p) => a + p.w.length, 0);
  const globalK = Math.floor(sparsity * total + 1e-9);
  const globalT =
    scope === 'global'
      ? threshold(
          picked.map((p) => p.w),
          globalK,
        )
      : 0;
  // Global ties at the threshold are taken in graph order until the count is reached.
  let globalTies =
    scope === 'global'
      ? globalK -
        countBelow(
          picked.map((p) => p.w),
          globalT,
        )
      : 0;

  const layers: MagnitudeLayer[] = [];
  let zeros = 0;
  for (const p of picked) {
    const k = Math.floor(sparsity * p.w.length + 1e-9);
    const thr = scope === 'global' ? globalT : threshold([p.w], k);
    let ties = scope === 'global' ? globalTies : k - countBelow([p.w], thr);
    const drop: number[] = [];
    for (let i = 0; i < p.w.length; i++) {
      const a = Math.abs(p.w[i]);
      if (a < thr || (a === thr && ties-- > 0)) drop.push(i);
    }
    if (scope === 'global') globalTies = Math.max(ties, 0);
    if (drop.length > 0) g.setInitializer(zeroAt(p.t, drop));
    let z = 0;
    const after = drop.length > 0 ? readFloats(g.initializers.get(p.t.name)!) : p.w;
    for (const v of after) if (v === 0) z++;
    layers.push({ node: p.node, weights: p.w.length, zeroed: z });
    zeros += z;
  }
  return { model: out, layers, sparsity: total > 0 ? zeros / total : 0 };
}

function countBelow(values: Float32Array[], thr: number): number {
  let n = 0;
  for (const v of values) for (let i = 0; i < v.length; i++) if (Math.abs(v[i]) < thr) n++;
  return n;
}

/** A copy of `t` with the given elements set to +0, in its own element type. */
function zeroAt(t: TensorProto, indices: readonly number[]): TensorProto {
  const { bytes, width } = elementBytes(t);
  const raw = Uint8Array.prototype.slice.call(bytes); // a real copy, also for Node Buffers
  for (const i of indices) raw.fill(0, i * width, (i + 1) * width);
  return create(TensorProtoSchema, { name: t.name, dims: [...t.dims], dataType: t.dataType, rawData: raw });
}

/**
 * Size of `bytes` after gzip (zlib level 6, what `gzip` does by default): what a model costs to ship or store
 * compressed, the figure magnitude pruning improves.
 *
 * @param bytes - e.g. an encoded model
 * @returns the gzip-compressed length in bytes
 */
export function compressedSize(bytes: Uint8Array): number {
  return gzipSync(bytes, { level: 6 }).length;
}
