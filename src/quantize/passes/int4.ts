import { create } from '@bufbuild/protobuf';
import { DataType, node, tensor, type ModelProto, type NodeProto } from '../../onnx/model.js';
import { OperatorSetIdProtoSchema } from '../../onnx/proto/onnx_pb.js';
import { cloneModel, dimsOf, GraphIndex, readFloats } from '../graph.js';

/** Options of {@link quantizeInt4}. */
export interface Int4Options {
  /** Weights per scale along K: a power of two >= 16. Default 128, as ORT's `MatMul4BitsQuantizer`. */
  blockSize?: number;
  /** Symmetric blocks (zero point 8, no zero-point input) instead of min/max ones. Default false, as ORT. */
  symmetric?: boolean;
  /** Node names to leave in float. */
  excludeNodes?: string[];
  /** MatMulNBits `accuracy_level` (0: unset, 4: int8 compute on CPU). Written only when non-zero, as ORT does. */
  accuracyLevel?: number;
}

/** What {@link quantizeInt4WithStats} did. */
export interface Int4Stats {
  /** Names (or `op#index`) of the MatMuls replaced by MatMulNBits. */
  quantized: string[];
  /** Candidate nodes left in float, with why. */
  skipped: { node: string; reason: string }[];
}

/** A [K, N] weight in MatMulNBits layout. */
export interface Int4Weight {
  /** [N, kBlocks, blockSize / 2]: per column, per block, two 4-bit values a byte, the lower K index in the low nibble. */
  packed: Uint8Array;
  /** [N * kBlocks] float32 scales, column-major by block. */
  scales: Float32Array;
  /** [N * ceil(kBlocks / 2)] packed 4-bit zero points (low nibble first), or undefined when symmetric. */
  zeroPoints: Uint8Array | undefined;
  kBlocks: number;
}

/**
 * Weight-only 4-bit block quantization: each MatMul whose second input is a 2-D float32 initializer [K, N] becomes a
 * `com.microsoft.MatMulNBits` (bits=4), with the weight packed per output column in blocks of `blockSize` along K,
 * one float32 scale per block and (asymmetric) one packed 4-bit zero point per block. Activations stay float32; the
 * dequantization happens inside the kernel (CPU and CUDA both have it). This is ORT's `MatMul4BitsQuantizer` in its
 * default QOperator format with the default (RTN) algorithm. Gemm is not converted.
 *
 * @param model - a float32 model
 * @param opts - see {@link Int4Options}
 * @returns a new model; the input is not changed
 */
export function quantizeInt4(model: ModelProto, opts: Int4Options = {}): ModelProto {
  return quantizeInt4WithStats(model, opts).model;
}

/** {@link quantizeInt4}, also returning what was quantized and what was skipped, for the CLI's report. */
export function quantizeInt4WithStats(
  model: ModelProto,
  opts: Int4Options = {},
): { model: ModelProto; stats: Int4Stats } {
  const blockSize = opts.blockSize ?? 128;
  if (blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) {
    throw new RangeError(`blockSize must be a power of two >= 16, not ${blockSize}`);
  }
  const symmetric = opts.symmetric ?? false;
  const out = cloneModel(model);
  const g = new GraphIndex(out);
  const exclude = new Set(opts.excludeNodes ?? []);
  const stats: Int4Stats = { quantized: [], skipped: [] };
  const done = new Map<string, { b: string; scales: string; zp?: string; k: number; n: number }>();

  g.graph.node = g.graph.node.map((n, index): NodeProto => {
    if ((n.domain ?? '') !== '' || n.opType !== 'MatMul') return n;
    const label = n.name || `${n.opType}#${index}`;
    const skip = (reason: string) => {
      stats.skipped.push({ node: label, reason });
      return n;
    };
    if (exclude.has(n.name)) return skip('excluded');
    const t = g.initializers.get(n.input[1]);
    if (!t || t.dataType !== DataType.FLOAT || g.graph.input.some((i) => i.name === t.name)) {
      return skip('weight is not a float32 initializer');
    }
    const dims = dimsOf(t);
    if (dims.length !== 2) return skip(`weight has rank ${dims.length}, not 2`);
    let w = done.get(t.name);
    if (!w) {
      const [k, cols] = dims;
      const q = quantizeInt4Weight(readFloats(t), k, cols, blockSize, symmetric);
      w = { b: g.freshName(`${t.name}_Q4`), scales: g.freshName(`${t.name}_scales`), k, n: cols };
      g.setInitializer(tensor(w.b, [cols, q.kBlocks, blockSize / 2], q.packed));
      g.setInitializer(tensor(w.scales, [cols * q.kBlocks], q.scales));
      if (q.zeroPoints) {
        w.zp = g.freshName(`${t.name}_zero_points`);
        g.setInitializer(tensor(w.zp, [q.zeroPoints.length], q.zeroPoints));
      }
      done.set(t.name, w);
    }
    const attrs: Record<string, number> = { K: w.k, N: w.n, bits: 4, block_size: blockSize };
    if (opts.accuracyLevel) attrs.accuracy_level = opts.accuracyLevel;
    const inputs = [n.input[0], w.b, w.scales, ...(w.zp ? [w.zp] : [])];
    stats.quantized.push(label);
    return node('MatMulNBits', inputs, [n.output[0]], attrs, {
      name: g.freshName(n.name ? `${n.name}_Q4` : `MatMulNBits_${index}`),
      domain: 'com.microsoft',
    });
  });

  if (stats.quantized.length > 0 && !out.opsetImport.some((o) => o.domain === 'com.microsoft')) {
    out.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: 'com.microsoft', version: 1n }));
  }
  g.pruneUnusedInitializers();
  return { model: out, stats };
}

/** Round half away from zero in float32, as C's roundf. */
function roundf(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}

/**
 * Quantizes a [K, N] row-major float32 weight to 4-bit blocks in MatMulNBits layout, with the arithmetic of
 * onnxruntime's MLAS `MlasQuantizeBlockwise` (float32, roundf). Symmetric: scale = (the value of largest magnitude)
 * / -8, zero point 8. Asymmetric: range widened to contain 0, scale = (max - min) / 15, zero point round(-min /
 * scale). Positions past K in the last block hold 0 (the kernel never reads them against real activations).
 */
export function quantizeInt4Weight(
  w: Float32Array,
  k: number,
  n: number,
  blockSize: number,
  symmetric: boolean,
): Int4Weight {
  const f = Math.fround;
  const kBlocks = Math.ceil(k / blockSize);
  const blob = blockSize / 2;
  const packed = new Uint8Array(n * kBlocks * blob);
  const scales = new Float32Array(n * kBlocks);
  const zpBytes = Math.ceil(kBlocks / 2);
  // Unused nibbles hold 8 and padded K positions 0, byte for byte what ORT's quantizer writes.
  const zeroPoints = symmetric ? undefined : new Uint8Array(n * zpBytes).fill(0x88);
  const q = new Uint8Array(blockSize);
  for (let col = 0; col < n; col++) {
    for (let b = 0; b < kBlocks; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(k, k0 + blockSize);
      let min = Infinity;
      let max = -Infinity;
      for (let r = k0; r < k1; r++) {
        const v = w[r * n + col];
        if (v < min) min = v;
        if (v > max) max = v;
      }
      let scale: number;
      let zp: number;
      if (symmetric) {
        scale = f((Math.abs(max) > Math.abs(min) ? max : min) / -8);
        zp = 8;
      } else {
        min = Math.min(min, 0);
        max = Math.max(max, 0);
        scale = f(f(max - min) / 15);
        const zpf = scale !== 0 ? f(0 - f(min / scale)) : min;
        zp = zpf < 0 ? 0 : zpf > 15 ? 15 : roundf(zpf);
      }
      const rs = scale !== 0 ? f(1 / scale) : 0;
      q.fill(0);
      for (let r = k0; r < k1; r++) q[r - k0] = Math.min(15, Math.max(0, roundf(f(f(w[r * n + col] * rs) + zp))));
      const base = (col * kBlocks + b) * blob;
      for (let i = 0; i < blob; i++) packed[base + i] = q[2 * i] | (q[2 * i + 1] << 4);
      scales[col * kBlocks + b] = scale;
      if (zeroPoints) {
        const at = col * zpBytes + (b >> 1);
        const shift = (b & 1) * 4;
        zeroPoints[at] = (zeroPoints[at] & ~(0xf << shift)) | (zp << shift);
      }
    }
  }
  return { packed, scales, zeroPoints, kBlocks };
}
