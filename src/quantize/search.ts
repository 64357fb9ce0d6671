import type { Attempt } from './build.js';
import type { CompressOptions, Mode } from './compress.js';
import type { Fidelity } from './evaluate.js';
import { LATENCY_TOLERANCE, slowerAt, type BatchLatency, type Objective, type Unmeasured } from './latency.js';

/** One model `--search` built, measured and judged. */
export interface Tried {
  readonly options: CompressOptions;
  readonly attempt: Attempt;
  readonly fidelity: Fidelity;
  readonly latency: { readonly measured: BatchLatency[]; readonly unmeasured: Unmeasured[] };
}

/** A candidate as the report shows it. */
export interface SearchCandidate {
  readonly method: string;
  /** Layers kept in float beyond those asked for (`--exclude`, `--exclude-from`). */
  readonly keptInFloat: number;
  readonly sizeBytes: number;
  /** 1 - the gate metric. */
  readonly loss: number;
  readonly withinBudget: boolean;
  /** Geometric mean over the measured batch sizes of original / compressed median latency. */
  readonly speedUp: number;
  /** Slower than the original beyond the tolerance at some batch size measured. */
  readonly slower: boolean;
  /** Not beaten on size, speed and loss at once by another candidate. */
  readonly pareto: boolean;
}

/** What the search hands back to `compress`: every candidate, and the one chosen (if any meets budget and objective). */
export interface SearchResult {
  readonly candidates: SearchCandidate[];
  readonly chosen?: Tried & { readonly index: number };
  /** The model the options asked for, as built (first in `candidates`). */
  readonly asked: Tried;
}

/** What the search needs from the compressor: building and judging one set of options. */
export interface SearchContext {
  /** Builds the model for these options and measures its fidelity (no latency). */
  build(o: CompressOptions): Promise<Omit<Tried, 'latency'>>;
  /** Latency against the original at the served batch sizes. */
  latency(bytes: Uint8Array): Promise<Tried['latency']>;
  loss(f: Fidelity): number;
  withinBudget(f: Fidelity): boolean;
  /** The Conv/MatMul/Gemm layers that may be kept in float (not already kept by the options). */
  layers(o: CompressOptions): Promise<string[]>;
  methodName(o: CompressOptions): string;
  /** Whether the manifest serves batches of more than one row (int8-dynamic is then not tried). */
  readonly batched: boolean;
  /** Whether int8-static can be tried (calibration data was given). */
  readonly canCalibrate: boolean;
  readonly objective: Objective;
  note(step: string, detail: unknown): void;
}

/** Why int8-dynamic does not suit a model served in batches. */
export const DYNAMIC_IN_BATCHES =
  "DynamicQuantizeLinear takes one activation scale over the whole batch, so a row's answer would depend on the rows batched with it";

/** The prune ratio tried when none was asked for: a quarter of each prunable Conv's channels (refit where it can). */
export const SEARCH_PRUNE_RATIO = 0.25;

/**
 * Explores quantization mode x prune ratio x layers kept in float, and chooses by the objective among the candidates
 * within the fidelity budget (and, for `latency`, not slower than the original at any batch size served): the
 * fastest, or the smallest. Modes: the one asked, int8-static (with calibration data), int8-dynamic (unless the
 * manifest batches: {@link DYNAMIC_IN_BATCHES}), and no quantization (`fp16` only when asked: it is for GPUs, and CPU latency would mislead); prune ratios: the one asked,
 * half of it and none (without one asked: none and {@link SEARCH_PRUNE_RATIO}). When no candidate of the asked mode
 * meets the budget, each layer gets a sensitivity (the loss when only it is quantized) and the most sensitive are kept
 * in float in growing groups (1, 2, 4, ...) until one does.
 */
export async function search(ctx: SearchContext, opts: CompressOptions): Promise<SearchResult> {
  const tried: Tried[] = [];
  const kept: number[] = [];
  const tryWith = async (o: CompressOptions, keptInFloat = 0) => {
    const built = await ctx.build(o);
    const t: Tried = { ...built, latency: await ctx.latency(built.attempt.bytes) };
    tried.push(t);
    kept.push(keptInFloat);
    ctx.note('search: candidate', {
      method: ctx.methodName(t.options),
      keptInFloat,
      sizeBytes: t.attempt.bytes.length,
      loss: ctx.loss(t.fidelity),
      speedUp: speedUp(t.latency.measured),
    });
    return t;
  };
  const modes: Mode[] = [opts.mode];
  for (const m of ['int8-static', 'int8-dynamic', 'none'] as const)
    if (!modes.includes(m) && (m !== 'int8-static' || ctx.canCalibrate) && (m !== 'int8-dynamic' || !ctx.batched))
      modes.push(m);
  if (ctx.batched && opts.mode !== 'int8-dynamic') ctx.note('search: int8-dynamic not tried', DYNAMIC_IN_BATCHES);
  const asked = { pruneRatio: opts.pruneRatio, pruneLayers: opts.pruneLayers };
  const halve = (r: number) => r / 2;
  const pruned = Boolean(opts.pruneRatio) || Object.keys(opts.pruneLayers).length > 0;
  const prunes = pruned
    ? [
        asked,
        { pruneRatio: opts.pruneRatio && halve(opts.pruneRatio), pruneLayers: mapValues(opts.pruneLayers, halve) },
      ]
    : [{ pruneRatio: SEARCH_PRUNE_RATIO, pruneLayers: {} }];
  prunes.push({ pruneRatio: undefined, pruneLayers: {} });
  const first = await tryWith(opts);
  for (const mode of modes)
    for (const p of prunes) {
      const o = { ...opts, mode, ...p };
      if (mode === opts.mode && sameLayers(p, asked)) continue; // the asked model, built first
      await tryWith(o);
    }
  const askedMode = tried.filter((t) => t.options.mode === opts.mode);
  if (opts.mode !== 'none' && !askedMode.some((t) => ctx.withinBudget(t.fidelity))) {
    const o = { ...opts, pruneRatio: undefined, pruneLayers: {} };
    const layers = await ctx.layers(o);
    const sensitivity: { node: string; loss: number }[] = [];
    for (const node of layers) {
      const r = await ctx.build({
        ...o,
        sparsity: undefined,
        excludeNodes: [...o.excludeNodes, ...without(layers, node)],
      });
      sensitivity.push({ node, loss: ctx.loss(r.fidelity) });
    }
    sensitivity.sort((a, b) => b.loss - a.loss);
    ctx.note('search: per-layer sensitivity (loss when only this layer is quantized)', sensitivity);
    for (const k of groupSizes(sensitivity.length)) {
      const keep = sensitivity.slice(0, k).map((s) => s.node);
      const r = await tryWith({ ...o, excludeNodes: [...o.excludeNodes, ...keep] }, k);
      if (ctx.withinBudget(r.fidelity)) break;
    }
  }
  const candidates = paretoMarked(
    tried.map((t, i) => ({
      method: ctx.methodName(t.options),
      keptInFloat: kept[i],
      sizeBytes: t.attempt.bytes.length,
      loss: ctx.loss(t.fidelity),
      withinBudget: ctx.withinBudget(t.fidelity),
      speedUp: speedUp(t.latency.measured),
      slower: slowerAt(t.latency.measured).length > 0,
      pareto: false,
    })),
  );
  const index = choose(candidates, ctx.objective);
  return { candidates, asked: first, ...(index !== undefined ? { chosen: { ...tried[index], index } } : {}) };
}

/**
 * The candidate the objective picks among those within budget (and not slower, for `latency`): the fastest, or the
 * smallest. Speed-ups within the latency tolerance of each other are a tie (timing noise must not buy loss), broken by
 * the lower loss, then the other axis, then the earlier candidate.
 */
export function choose(candidates: readonly SearchCandidate[], objective: Objective): number | undefined {
  const faster = (a: SearchCandidate, b: SearchCandidate) => a.speedUp > b.speedUp * (1 + LATENCY_TOLERANCE);
  const better = (c: SearchCandidate, b: SearchCandidate): boolean => {
    if (objective === 'latency' && (faster(c, b) || faster(b, c))) return faster(c, b);
    if (objective === 'size' && c.sizeBytes !== b.sizeBytes) return c.sizeBytes < b.sizeBytes;
    if (c.loss !== b.loss) return c.loss < b.loss;
    return objective === 'latency' ? c.sizeBytes < b.sizeBytes : faster(c, b);
  };
  let best: number | undefined;
  candidates.forEach((c, i) => {
    if (!c.withinBudget || (objective === 'latency' && c.slower)) return;
    if (best === undefined || better(c, candidates[best])) best = i;
  });
  return best;
}

/** Marks the candidates no other beats on size, speed-up and loss at once (the Pareto front). */
export function paretoMarked(cs: readonly SearchCandidate[]): SearchCandidate[] {
  // speed-ups within the latency tolerance of each other are a tie: timing noise must not split the front
  const faster = (a: number, b: number) => a > b * (1 + LATENCY_TOLERANCE);
  const noSlower = (a: number, b: number) => !faster(b, a);
  const dominates = (a: SearchCandidate, b: SearchCandidate) =>
    a.sizeBytes <= b.sizeBytes &&
    noSlower(a.speedUp, b.speedUp) &&
    a.loss <= b.loss &&
    (a.sizeBytes < b.sizeBytes || faster(a.speedUp, b.speedUp) || a.loss < b.loss);
  return cs.map((c) => ({ ...c, pareto: !cs.some((o) => o !== c && dominates(o, c)) }));
}

/** Geometric mean of the speed-ups over the measured batch sizes. */
export function speedUp(measured: readonly BatchLatency[]): number {
  if (measured.length === 0) return 1;
  return Math.exp(measured.reduce((s, l) => s + Math.log(l.before / l.after), 0) / measured.length);
}

/** 1, 2, 4, ... and, last, n. */
function groupSizes(n: number): number[] {
  const sizes: number[] = [];
  for (let k = 1; k < n; k *= 2) sizes.push(k);
  return n > 0 ? [...sizes, n] : sizes;
}

const mapValues = (r: Readonly<Record<string, number>>, f: (v: number) => number) =>
  Object.fromEntries(Object.entries(r).map(([k, v]) => [k, f(v)]));
const without = (xs: readonly string[], x: string) => xs.filter((y) => y !== x);
const sameLayers = (
  a: { pruneRatio?: number; pruneLayers: Readonly<Record<string, number>> },
  b: { pruneRatio?: number; pruneLayers: Readonly<Record<string, number>> },
) => a.pruneRatio === b.pruneRatio && JSON.stringify(a.pruneLayers) === JSON.stringify(b.pruneLayers);
