import type { ModelProto, NodeProto } from '../onnx/model.js';
import { tensor } from '../onnx/tensor.js';
import type { HostTensor, ModelSession } from '../models/session.js';
import { exposedSession } from './calibrate.js';
import type { Sample } from './dataset.js';
import { dimsOf, GraphIndex, readFloats, topologicalOrder } from './graph.js';
import { intAttr } from './passes/channel-groups.js';
import type { PrunedSink, PruneChannelsResult } from './passes/prune-structured.js';
import {
  channelsOf,
  ConvFit,
  POINTWISE,
  RefitSkipped,
  type ConvGeometry,
  type FeatureMap,
  type RefitResult,
} from './passes/refit.js';

// Channel pruning with reconstruction: after pruneChannels removed a group's channels, every layer that read them
// (a group=1 Conv, a Gemm or MatMul after a global pool) gets weights refit by least squares (passes/refit.ts) so
// that, on calibration inputs, it computes what the original layer computed. In graph order, each layer is fit on
// its input in the pruned model as refit so far (the errors of the layers before it included, as ThiNet and He et
// al. do), to its output in the original model.

/**
 * Calibration inputs the refit needs (compress.ts refits only with that many): fit to 15 text lines, the pruned
 * orientation classifier agreed with the original on fewer held-out lines than without the refit; fit to 214, on
 * far more.
 */
export const REFIT_MIN_SAMPLES = 32;

/** What happened to one layer. */
export interface RefitLayer {
  readonly node: string;
  /** Relative output error on held-out calibration data: pruning alone, and after the refit (see RefitResult). */
  readonly pruned?: number;
  readonly refit?: number;
  /** Why it was left as pruning left it. */
  readonly skipped?: string;
}

/**
 * Refits every sink of a pruning in place (`pruned.model` is edited), from `original` (the model pruneChannels was
 * given) and calibration samples. Returns what each layer gained, or why it was left alone.
 */
export async function refitSinks(
  original: ModelProto,
  pruned: PruneChannelsResult,
  calibration: readonly Sample[],
): Promise<RefitLayer[]> {
  const after = new GraphIndex(pruned.model);
  const order = new Map(topologicalOrder(after.graph).map((n, i) => [n, i]));
  const sinks = [...pruned.sinks].sort((a, b) => order.get(a.node)! - order.get(b.node)!);
  // the original's outputs of every sink: one session, each fetched when its layer is fit
  const targets = await exposedSession(
    original,
    sinks.map((s) => s.node.output[0]),
  );
  const report: RefitLayer[] = [];
  try {
    for (const sink of sinks) {
      const n = sink.node;
      const name = n.name || `${n.opType} on ${n.input[0]}`;
      const layer = asConv(sink, after);
      if (typeof layer === 'string') {
        report.push({ node: name, skipped: layer });
        continue;
      }
      let fit: RefitResult;
      try {
        fit = await fitSink(sink, layer, pruned.model, targets, calibration);
      } catch (err) {
        if (!(err instanceof RefitSkipped)) throw err;
        report.push({ node: name, skipped: err.message });
        continue;
      }
      if (!(fit.error.refit < fit.error.pruned)) {
        report.push({
          node: name,
          pruned: fit.error.pruned,
          refit: fit.error.refit,
          skipped: 'no better on held-out data',
        });
        continue;
      }
      layer.write(fit.weight, n.opType === 'MatMul' ? undefined : fit.bias);
      report.push({ node: name, pruned: fit.error.pruned, refit: fit.error.refit });
    }
  } finally {
    await targets.release();
  }
  after.pruneUnusedInitializers();
  return report;
}

/**
 * Fits one sink: its input in `model` (the pruned model as refit so far) and its output in the original (`targets`,
 * a session of it with every sink's output exposed), one calibration sample at a time, so that only one sample's
 * activations are held at once.
 */
async function fitSink(
  sink: PrunedSink,
  layer: Exclude<ReturnType<typeof asConv>, string>,
  model: ModelProto,
  targets: ModelSession,
  samples: readonly Sample[],
): Promise<RefitResult> {
  const n = sink.node;
  const inputs = await exposedSession(model, [n.input[0]]);
  try {
    const channels = sink.keptInputs.length;
    const fit = new ConvFit(layer.geometry, layer.start, channels, samples.length, { fitBias: n.opType !== 'MatMul' });
    for (const sample of samples) {
      const x = featureMaps((await inputs.run(sample.feeds, [n.input[0]]))[n.input[0]]);
      const y = featureMaps((await targets.run(sample.feeds, [n.output[0]]))[n.output[0]]);
      if (x.length === 0 || x.length !== y.length) throw new RefitSkipped('no float activations recorded');
      x.forEach((map, i) => fit.add(map, sink.keptOutputs ? channelsOf(y[i], sink.keptOutputs) : y[i]));
    }
    return fit.solve();
  } finally {
    await inputs.release();
  }
}

/** A float tensor [N, C, H, W] or [N, K] as N maps. */
function featureMaps(t: HostTensor): FeatureMap[] {
  if (!(t.data instanceof Float32Array)) return [];
  const [n, c, h = 1, w = 1] = t.dims;
  if (t.dims.length !== 2 && t.dims.length !== 4) return [];
  const size = c * h * w;
  const data = t.data;
  return Array.from({ length: n }, (_, i) => ({
    data: data.subarray(i * size, (i + 1) * size),
    channels: c,
    height: h,
    width: w,
  }));
}

/**
 * A sink of the pruned model as a convolution: its geometry, its weight now as [M, C, kh, kw] with its bias (the
 * start of the fit), and how to write fit weights back in its own layout.
 */
function asConv(
  sink: PrunedSink,
  g: GraphIndex,
):
  | string
  | {
      geometry: ConvGeometry;
      start: { weight: Float32Array; bias: Float32Array };
      write(weight: Float32Array, bias: Float32Array | undefined): void;
    } {
  const n = sink.node;
  const w = g.initializers.get(n.input[1]);
  if (!w) return 'its weight is not a constant';
  const dims = dimsOf(w);
  const values = readFloats(w);
  const biasTensor = n.input[2] ? g.initializers.get(n.input[2]) : undefined;
  if (n.input[2] && !biasTensor) return 'its bias is not a constant';
  if (n.opType === 'Conv') {
    if (dims.length !== 4) return 'only 2-D convolutions are refit';
    const autoPad = n.attribute.find((a) => a.name === 'auto_pad');
    if (autoPad && autoPad.s.length > 0 && new TextDecoder().decode(autoPad.s) !== 'NOTSET')
      return 'auto_pad is not refit';
    const ints = (name: string, dflt: number[]) => {
      const a = n.attribute.find((x) => x.name === name);
      return a ? a.ints.map(Number) : dflt;
    };
    const [sh, sw] = ints('strides', [1, 1]);
    const [pt, pl, pb, pr] = ints('pads', [0, 0, 0, 0]);
    const [dh, dw] = ints('dilations', [1, 1]);
    const bias = biasTensor ? readFloats(biasTensor) : new Float32Array(dims[0]);
    if (bias.length !== dims[0]) return `its bias has ${bias.length} values for ${dims[0]} outputs`;
    return {
      geometry: { kernel: [dims[2], dims[3]], strides: [sh, sw], pads: [pt, pl, pb, pr], dilations: [dh, dw] },
      start: { weight: values, bias },
      write: (weight, newBias) => {
        g.setInitializer(tensor(n.input[1], dims, weight));
        if (newBias) setBias(g, n, 2, newBias);
      },
    };
  }
  // Gemm (A [batch, K] x B, transB: B is [N, K]) or MatMul (B [K, N]): a 1 x 1 convolution of weight [N, K]
  if (dims.length !== 2) return `its weight has ${dims.length} dimensions`;
  if (n.opType === 'Gemm' && intAttr(n, 'transA', 0) !== 0) return 'transA is not refit';
  if (n.opType === 'Gemm') {
    const scale = (name: string) => n.attribute.find((a) => a.name === name)?.f ?? 1;
    if (scale('alpha') !== 1 || scale('beta') !== 1) return 'alpha or beta is not 1';
  }
  const transposed = n.opType === 'Gemm' && intAttr(n, 'transB', 0) === 1;
  const [K, N] = transposed ? [dims[1], dims[0]] : dims;
  const bias = biasTensor ? readFloats(biasTensor) : new Float32Array(N);
  if (bias.length !== N) return `its bias has ${bias.length} values for ${N} outputs (broadcast biases are not refit)`;
  return {
    geometry: POINTWISE,
    start: { weight: transposed ? values : transpose(values, K, N), bias },
    write: (weight, newBias) => {
      g.setInitializer(tensor(n.input[1], dims, transposed ? weight : transpose(weight, N, K)));
      if (newBias && n.opType === 'Gemm') setBias(g, n, 2, newBias);
    },
  };
}

/** [rows, cols] -> [cols, rows] */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/** Sets input `at` of `n` to a new float initializer `values` (a fresh name: the old one may be shared). */
function setBias(g: GraphIndex, n: NodeProto, at: number, values: Float32Array): void {
  const name = g.addFloats(`${n.input[at] || `${n.name || n.output[0]}_bias`}_refit`, [values.length], values);
  while (n.input.length < at) n.input.push('');
  n.input[at] = name;
}
