import { encodeModel, type ModelProto } from '../onnx/model.js';
import type { CompressOptions } from './compress.js';
import type { Sample } from './dataset.js';
import { upgradeOpset } from './opset.js';
import { convertFp16WithStats } from './passes/fp16.js';
import { quantizeInt4WithStats } from './passes/int4.js';
import { pruneChannels, pruneMagnitude } from './passes/prune.js';
import { quantizeDynamicWithStats } from './passes/quantize-dynamic.js';
import { quantizeStatic } from './passes/quantize-static.js';
import { inputStats } from './prune-energy.js';
import type { InputStats } from './passes/prune-structured.js';
import { refitSinks } from './refit-sinks.js';

// One candidate of a compression run: the passes applied to a copy of the optimized model, in order (prune, refit
// the pruned layers, then quantize), and what each did. compress.ts measures and judges it.

/** A candidate model and the steps that made it. */
export interface Attempt {
  bytes: Uint8Array;
  steps: { step: string; detail: unknown }[];
}

/** The calibration data pruned layers are refit on, or why they are not refit. */
export type RefitData = { readonly data: readonly Sample[] } | { readonly skipped: string };

/** An option names a node the model does not have (a usage error: exit 2). */
export class UnknownNodeError extends Error {
  override name = 'UnknownNodeError';
}

/**
 * The nodes kept in float: `--exclude`'s, and with `--exclude-from`, that node and every node after it in the
 * graph's order (a model's head: the transformer neck of a CNN-then-attention recognizer, say).
 */
export function excludedNodes(base: ModelProto, o: Pick<CompressOptions, 'excludeNodes' | 'excludeFrom'>): string[] {
  if (!o.excludeFrom) return [...o.excludeNodes];
  const names = base.graph!.node.map((n) => n.name);
  const at = names.indexOf(o.excludeFrom);
  if (at < 0) throw new UnknownNodeError(`--exclude-from ${o.excludeFrom}: the model has no node of that name`);
  return [...new Set([...o.excludeNodes, ...names.slice(at).filter(Boolean)])];
}

// --prune-importance activation | reconstruction measures the base model once per run (every candidate of a search
// prunes the same one)
type Stats = Promise<Map<string, InputStats>>;
const statsCache = new WeakMap<ModelProto, WeakMap<readonly Sample[], Map<boolean, Stats>>>();
function statsOf(base: ModelProto, calibration: readonly Sample[], gram: boolean): Stats {
  if (calibration.length === 0)
    throw new RangeError('--prune-importance activation or reconstruction needs calibration data (--calibration)');
  let byData = statsCache.get(base);
  if (!byData) statsCache.set(base, (byData = new WeakMap()));
  let byGram = byData.get(calibration);
  if (!byGram) byData.set(calibration, (byGram = new Map()));
  let s = byGram.get(gram);
  if (!s) byGram.set(gram, (s = inputStats(base, calibration, { gram })));
  return s;
}

/** Prune, then quantize: pure graph passes on a copy of the optimized model. */
export async function buildModel(
  base: ModelProto,
  ranges: Map<string, { min: number; max: number }> | undefined,
  o: CompressOptions,
  refit: RefitData = { skipped: 'not asked' },
  calibration: readonly Sample[] = [],
): Promise<Attempt> {
  const steps: Attempt['steps'] = [];
  let model = base;
  const exclude = excludedNodes(base, o);
  if (o.pruneRatio || Object.keys(o.pruneLayers).length > 0) {
    const r = pruneChannels(model, {
      ratio: o.pruneRatio ?? 0,
      perLayer: { ...o.pruneLayers },
      importance: o.pruneImportance,
      excludeNodes: exclude,
      ...(o.pruneImportance === 'activation' || o.pruneImportance === 'reconstruction'
        ? { inputStats: await statsOf(base, calibration, o.pruneImportance === 'reconstruction') }
        : {}),
    });
    model = r.model;
    steps.push({ step: 'prune-channels', detail: { pruned: r.layers, skipped: r.skipped } });
    if (r.sinks.length > 0)
      steps.push({
        step: 'prune-refit',
        detail: 'data' in refit ? await refitSinks(base, r, refit.data) : refit.skipped,
      });
  }
  if (o.sparsity) {
    const r = pruneMagnitude(model, { sparsity: o.sparsity, excludeNodes: exclude });
    model = r.model;
    steps.push({ step: 'prune-magnitude', detail: { sparsity: r.sparsity, layers: r.layers.length } });
  }
  switch (o.mode) {
    case 'int8-static':
      model = quantizeStatic(model, ranges!, {
        perChannel: o.perChannel,
        reduceRange: o.reduceRange,
        excludeNodes: exclude,
      });
      break;
    case 'int8-dynamic': {
      // DynamicQuantizeLinear needs opset 11; old exports (Paddle writes opset 9) are upgraded like for int8-static
      const r = quantizeDynamicWithStats(upgradeOpset(model, 13), {
        reduceRange: o.reduceRange,
        perChannel: o.perChannel,
        excludeNodes: exclude,
      });
      model = r.model;
      steps.push({ step: 'int8-dynamic', detail: r.stats });
      break;
    }
    case 'int4-weight': {
      const r = quantizeInt4WithStats(model, { blockSize: o.blockSize, excludeNodes: exclude });
      model = r.model;
      steps.push({ step: 'int4-weight', detail: r.stats });
      break;
    }
    case 'fp16': {
      const r = convertFp16WithStats(model, { excludeNodes: exclude });
      model = r.model;
      steps.push({ step: 'fp16', detail: r.stats });
      break;
    }
    case 'none':
      break;
  }
  if (exclude.length) steps.push({ step: 'kept in float', detail: exclude });
  return { bytes: encodeModel(model), steps };
}
