import path from 'node:path';
import { createHash } from 'node:crypto';
import { serverInfo } from '../config.js';
import type { Manifest } from '../models/manifest.js';
import { taskDefinition } from '../models/tasks/registry.js';
import type { ModelSession } from '../models/session.js';
import { decodeModel, encodeModel, type ModelProto } from '../onnx/model.js';
import { calibrate } from './calibrate.js';
import type { Sample } from './dataset.js';
import { compareModels, cpuSession, runtimeKernels, type Fidelity } from './evaluate.js';
import { compareLatency, servedBatchSizes, slowerAt, type Objective } from './latency.js';
import { optimizeForQuantization } from './optimize.js';
import { upgradeOpset } from './opset.js';
import { fixInputs } from './passes/fix-inputs.js';
import { quantizableTensors } from './passes/quantize-static.js';
import { compressedSize } from './passes/prune.js';
import { foldAffine } from './passes/fold-affine.js';
import { simplifyForQuantization } from './passes/simplify.js';
import { buildModel, type RefitData, excludedNodes } from './build.js';
import { REFIT_MIN_SAMPLES } from './refit-sinks.js';
import type { CompressionReport } from './report.js';
import { DYNAMIC_IN_BATCHES, search, type SearchResult, type Tried } from './search.js';

/** The compression methods; `none` only prunes (or only measures). */
export const modes = ['int8-static', 'int8-dynamic', 'int4-weight', 'fp16', 'none'] as const;
export type Mode = (typeof modes)[number];

/** Everything one compression run needs; the CLI fills it from its arguments. */
export interface CompressOptions {
  readonly mode: Mode;
  readonly calibrationMethod: 'minmax' | 'percentile';
  readonly percentile: number;
  readonly excludeNodes: readonly string[];
  /** Keep this node and every node after it in graph order in float. */
  readonly excludeFrom?: string;
  /** Scalar inputs pinned to constants before optimization (see {@link fixInputs}). */
  readonly fixInputs: Readonly<Record<string, number>>;
  readonly perChannel: boolean;
  readonly reduceRange: boolean;
  readonly blockSize: number;
  /** Structured channel pruning: fraction of output channels removed from each prunable Conv. */
  readonly pruneRatio?: number;
  readonly pruneImportance: 'l1' | 'bn-gamma' | 'activation' | 'reconstruction';
  readonly pruneLayers: Readonly<Record<string, number>>;
  /** Refit the layers that read pruned channels by least squares on the calibration data (see refit-sinks.ts). */
  readonly pruneRefit: boolean;
  /** Fold per-channel Mul/Add steps into the adjacent Convs and fuse hard-swish (passes/fold-affine.ts). */
  readonly fold: boolean;
  /** Magnitude pruning: fraction of weights zeroed. */
  readonly sparsity?: number;
  /** Allowed fidelity loss (1 - top-1 agreement for classifiers, 1 - mean cosine otherwise). */
  readonly maxFidelityLoss?: number;
  /** Search per-layer settings (float fallback for the most sensitive layers, lower prune ratio) to meet the budget. */
  readonly search: boolean;
  /** `latency`: a model slower than its original at a batch size the manifest serves is not shipped. */
  readonly objective: Objective;
  readonly runs: number;
  readonly threads: number;
}

/** A source model: bytes, where it came from, and its manifest when it is a model folder. */
export interface Source {
  readonly path: string;
  readonly bytes: Uint8Array;
  readonly manifest?: Manifest;
  /** The model folder, when the source is one. */
  readonly dir?: string;
}

/** Progress hooks for the CLI's bars. */
export interface Progress {
  phase(name: string, total: number): void;
  tick(): void;
}

/**
 * The compressed model and its report; it may be written when `report.passedGate` (the fidelity budget) and
 * `report.objective.met` (not slower, for the latency objective) both hold.
 */
export interface CompressResult {
  readonly bytes: Uint8Array;
  readonly report: CompressionReport;
}

const silent: Progress = { phase: () => {}, tick: () => {} };

/**
 * The data pruned layers are refit on (refit-sinks.ts), or why they are not: the calibration inputs, when there are
 * enough, and the evaluation is other data (the gate must not measure the fit on what it was fit to).
 */
function refitWith(o: CompressOptions, calibration: readonly Sample[], evaluation: readonly Sample[]): RefitData {
  if (!o.pruneRefit) return { skipped: 'off (--no-prune-refit)' };
  if (calibration.length < REFIT_MIN_SAMPLES)
    return {
      skipped: `not refit: it needs at least ${REFIT_MIN_SAMPLES} calibration inputs (fit to fewer, the layers matched them and read others worse)`,
    };
  if (evaluation === calibration)
    return {
      skipped:
        'not refit: it needs --eval data other than the calibration data, so that the gate measures it on data it was not fit to',
    };
  return { data: calibration };
}

/** Tool name and version written into manifests and reports. */
export const toolName = `muon-compress ${serverInfo.version}`;

/**
 * The gate metric: what the model's task measures (its definition's `gate`: top-1 agreement, agreement of a
 * thresholded decision, or mean output cosine), mean output cosine for a model without a manifest.
 */
export function gateMetric(f: Fidelity, manifest: Manifest | undefined): { metric: string; value: number } {
  const gate = manifest && taskDefinition(manifest.task)?.gate;
  if (!gate) return { metric: 'cosine-mean', value: f.cosineMean };
  const value =
    gate.measure === 'top1' ? f.top1Agreement : gate.measure === 'decision' ? (f.decisionAgreement ?? 1) : f.cosineMean;
  return { metric: gate.metric, value };
}

/** The decision threshold {@link compareModels} checks, for tasks that threshold a probability. */
function decisionThreshold(manifest: Manifest | undefined): number | undefined {
  const gate = manifest && taskDefinition(manifest.task)?.gate;
  return gate?.measure === 'decision' ? gate.threshold(manifest) : undefined;
}

/**
 * Compresses one model: onnxruntime 'basic' optimization (constant folding, BN folding), then pruning, then the
 * chosen quantization; evaluates it against the original on `evaluation`, measures latency and the kernels
 * onnxruntime runs, and checks the fidelity budget (searching per-layer settings when asked).
 */
export async function compress(
  source: Source,
  calibration: readonly Sample[],
  evaluation: readonly Sample[],
  asked: CompressOptions,
  progress: Progress = silent,
): Promise<CompressResult> {
  const steps: { step: string; detail: unknown }[] = [];
  const pinned = Object.keys(asked.fixInputs).length > 0;
  let base = await optimizeForQuantization(
    pinned ? encodeModel(fixInputs(decodeModel(source.bytes), asked.fixInputs)) : source.bytes,
  );
  if (pinned) steps.push({ step: 'fix inputs', detail: asked.fixInputs });
  steps.push({ step: 'optimize', detail: `onnxruntime basic optimization: ${base.graph?.node.length} nodes` });
  let foldedAny = false;
  if (asked.fold) {
    const folded = foldAffine(base);
    foldedAny = Object.values(folded.stats).some((n) => n > 0);
    base = folded.model;
    if (foldedAny) steps.push({ step: 'fold affine', detail: { ...folded.stats, nodes: base.graph?.node.length } });
  }
  // the method names a fold only where one happened
  const opts: CompressOptions = { ...asked, fold: foldedAny };
  // int8-static runs on a graph simplified for onnxruntime's int8 kernels, calibrated once (and only if tried)
  let forStatic: Promise<{ model: ModelProto; ranges: Awaited<ReturnType<typeof calibrate>> }> | undefined;
  const prepared = (mode: Mode) => {
    if (mode !== 'int8-static') return { model: base, ranges: undefined };
    return (forStatic ??= (async () => {
      const simplified = simplifyForQuantization(upgradeOpset(base, 13));
      steps.push({ step: 'simplify for int8 kernels', detail: simplified.stats });
      return { model: simplified.model, ranges: await calibrateRanges(simplified.model, calibration, opts, progress) };
    })());
  };
  const original = await cpuSession(source.bytes, opts.threads);
  const batches = servedBatchSizes(source.manifest);
  const threshold = decisionThreshold(source.manifest);
  const refitData = refitWith(opts, calibration, evaluation);
  const build = async (o: CompressOptions) => {
    const { model, ranges } = await prepared(o.mode);
    const attempt = await buildModel(model, ranges, o, refitData, calibration);
    return {
      options: o,
      attempt,
      fidelity: await evaluate(original, attempt.bytes, evaluation, o, progress, threshold),
    };
  };
  const latencyOf = (bytes: Uint8Array) => compareLatency(original, bytes, evaluation[0], batches, opts, progress);
  const within = (f: Fidelity) => withinBudget(f, source.manifest, opts.maxFidelityLoss);
  if (opts.mode === 'int8-dynamic' && batches.length > 1) steps.push({ step: 'warning', detail: DYNAMIC_IN_BATCHES });
  let result: Tried;
  let found: SearchResult | undefined;
  try {
    if (opts.search) {
      found = await search(
        {
          build,
          latency: latencyOf,
          loss: (f) => 1 - gateMetric(f, source.manifest).value,
          withinBudget: within,
          // layers kept in float anyway (--exclude, --exclude-from) are not candidates
          layers: async (o) => {
            const { model } = await prepared(o.mode);
            const kept = new Set(excludedNodes(model, o));
            return (model.graph?.node ?? [])
              .filter((n) => ['Conv', 'MatMul', 'Gemm'].includes(n.opType) && n.name && !kept.has(n.name))
              .map((n) => n.name!);
          },
          methodName,
          batched: batches.length > 1,
          canCalibrate: calibration.length > 0,
          objective: opts.objective,
          note: (step, detail) => steps.push({ step, detail }),
        },
        opts,
      );
      result = found.chosen ?? found.asked;
    } else {
      const built = await build(opts);
      result = { ...built, latency: await latencyOf(built.attempt.bytes) };
    }
  } finally {
    await original.release();
  }
  const { attempt, fidelity, latency, options: used } = result;
  const passed = within(fidelity);
  steps.push(...attempt.steps);
  const { before, after } = latency.measured[0];
  const slower = slowerAt(latency.measured);
  const gate = gateMetric(fidelity, source.manifest);
  const report: CompressionReport = {
    tool: toolName,
    createdAt: new Date().toISOString(),
    // relative to where the CLI ran, so a committed report does not carry the machine's paths
    source: { path: path.relative(process.cwd(), source.path) || source.path, sha256: sha256(source.bytes) },
    method: methodName(used),
    options: { ...used },
    sizeBytes: { before: source.bytes.length, after: attempt.bytes.length },
    ...(used.sparsity !== undefined
      ? { compressedSizeBytes: { before: compressedSize(source.bytes), after: compressedSize(attempt.bytes) } }
      : {}),
    latencyMs: {
      before,
      after,
      runs: opts.runs,
      threads: opts.threads,
      batches: latency.measured,
      unmeasured: latency.unmeasured,
    },
    objective: { name: opts.objective, met: opts.objective === 'size' || slower.length === 0, slowerAt: slower },
    fidelity: { ...fidelity, ...gate, ...(opts.maxFidelityLoss !== undefined ? { budget: opts.maxFidelityLoss } : {}) },
    kernels: { before: await runtimeKernels(source.bytes), after: await runtimeKernels(attempt.bytes) },
    steps,
    passedGate: passed,
    ...(found ? { search: { candidates: found.candidates, chosen: found.chosen?.index } } : {}),
  };
  return { bytes: attempt.bytes, report };
}

/** Lower-case hex SHA-256. */
export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** e.g. `prune-channels-0.25+int8-static`. */
export function methodName(
  o: Pick<CompressOptions, 'mode' | 'pruneRatio' | 'pruneLayers' | 'sparsity' | 'fold'>,
): string {
  const parts: string[] = o.fold ? ['fold'] : [];
  if (o.pruneRatio) parts.push(`prune-channels-${o.pruneRatio}`);
  else if (Object.keys(o.pruneLayers).length > 0) parts.push('prune-channels-per-layer');
  if (o.sparsity) parts.push(`prune-magnitude-${o.sparsity}`);
  // `none` is named only when nothing else was done (a model only folded is named `fold`)
  if (o.mode !== 'none' || parts.length === 0) parts.push(o.mode);
  return parts.join('+');
}

async function calibrateRanges(
  base: ModelProto,
  samples: readonly Sample[],
  opts: CompressOptions,
  progress: Progress,
) {
  if (samples.length === 0) throw new Error('int8-static needs calibration samples (--calibration <folder>)');
  progress.phase('calibration', samples.length);
  async function* feeds() {
    for (const s of samples) {
      yield s.feeds;
      progress.tick();
    }
  }
  return calibrate(base, feeds(), {
    method: opts.calibrationMethod,
    percentile: opts.percentile,
    tensors: quantizableTensors(base, { excludeNodes: excludedNodes(base, opts) }),
    intraOpThreads: opts.threads,
  });
}

async function evaluate(
  original: ModelSession,
  bytes: Uint8Array,
  samples: readonly Sample[],
  opts: CompressOptions,
  progress: Progress,
  threshold: number | undefined,
) {
  progress.phase('evaluation', samples.length);
  const compressed = await cpuSession(bytes, opts.threads);
  try {
    return await compareModels(original, compressed, samples, {
      threads: opts.threads,
      threshold,
      onSample: () => progress.tick(),
    });
  } finally {
    await compressed.release();
  }
}

function withinBudget(f: Fidelity, manifest: Manifest | undefined, budget: number | undefined): boolean {
  return budget === undefined || 1 - gateMetric(f, manifest).value <= budget + 1e-12;
}
