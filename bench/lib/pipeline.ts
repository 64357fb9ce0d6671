import ort from 'onnxruntime-node';
import { imageToTensor } from '../../src/preprocess/image.js';
import { stackRows } from '../../src/models/tasks/common/buffers.js';
import { defaults } from '../../src/config.js';
import { median } from './stats.js';
import { repeatTimed, type Budget } from './timing.js';
import { runOnce, type BenchModel } from './model.js';

/** One request's work without HTTP or batching: decode + preprocess, then `session.run` at batch 1. */
export interface PipelineResult {
  readonly iterations: number;
  /** Median milliseconds of `imageToTensor` (sharp decode, resize, normalize into a tensor row). */
  readonly preprocessMedianMs: number;
  /** Median milliseconds of stacking the row and `session.run` at batch 1. */
  readonly runMedianMs: number;
  /** Median milliseconds of both, one request end to end. */
  readonly totalMedianMs: number;
  /** Requests per second done one after another: the batch-1 ceiling of a single in-order worker. */
  readonly itemsPerSec: number;
}

/**
 * Times the server's per-request code path in process, with the server's own functions (`imageToTensor`,
 * `stackRows`) and image decoder settings. The caller must have called `configureImageDecoder` as the server does.
 */
export async function benchPipeline(
  session: ort.InferenceSession,
  model: BenchModel,
  image: Uint8Array,
  budget: Budget,
): Promise<PipelineResult> {
  const step = async () => {
    const t0 = performance.now();
    const row = await imageToTensor(image, model.spec, defaults.MUON_MAX_IMAGE_PIXELS);
    const t1 = performance.now();
    const batch = stackRows([row.data], model.rowDims);
    await runOnce(session, model, new ort.Tensor('float32', batch.data as Float32Array, batch.dims));
    const t2 = performance.now();
    return [t1 - t0, t2 - t1, t2 - t0];
  };
  const { iterations, elapsedMs, phases } = await repeatTimed(step, budget);
  return {
    iterations,
    preprocessMedianMs: median(phases[0]),
    runMedianMs: median(phases[1]),
    totalMedianMs: median(phases[2]),
    itemsPerSec: (iterations * 1000) / elapsedMs,
  };
}
