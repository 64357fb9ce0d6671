/**
 * Pruning passes: structured channel pruning (smaller, faster dense models) and unstructured magnitude pruning
 * (zeros that only pay off once the file is compressed). One import path for the CLI; the passes live in
 * `prune-structured.ts` and `prune-magnitude.ts`.
 *
 * @module
 */
export { checkConvShapes } from './check-conv-shapes.js';
export { liftConstants } from '../graph.js';
export {
  pruneChannels,
  type PruneChannelsOptions,
  type PruneChannelsResult,
  type PrunedLayer,
  type SkippedLayer,
} from './prune-structured.js';
export { sliceAxis } from './slice-tensor.js';
export {
  compressedSize,
  pruneMagnitude,
  type MagnitudeLayer,
  type PruneMagnitudeOptions,
  type PruneMagnitudeResult,
} from './prune-magnitude.js';
