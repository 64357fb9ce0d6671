import ort from 'onnxruntime-node';
import { median } from './stats.js';
import { repeatTimed, type Budget, type Timed } from './timing.js';
import { runOnce, type BenchModel } from './model.js';

/** `session.run` at one batch size. */
export interface RawResult {
  readonly batchSize: number;
  readonly iterations: number;
  /** Median milliseconds per `session.run` call (the whole batch). */
  readonly medianMs: number;
  /** Median milliseconds per call divided by the batch size. */
  readonly medianMsPerItem: number;
  /** Items (batch rows) per second over the timed loops. */
  readonly itemsPerSec: number;
}

/** Distinct random inputs cycled through, so no run sees the exact buffer of the previous one. */
const TENSORS_PER_SIZE = 4;

/** A float32 batch of uniform noise in [-1, 1), the range of the manifest's normalization. */
function randomBatch(model: BenchModel, batchSize: number): ort.Tensor {
  const dims = [batchSize, ...model.rowDims];
  const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
  return new ort.Tensor('float32', data, dims);
}

/** Times back-to-back `session.run` calls on pre-made tensors of one batch size. */
export async function timeRawBatch(
  session: ort.InferenceSession,
  model: BenchModel,
  batchSize: number,
  budget: Budget,
): Promise<Timed> {
  const inputs = Array.from({ length: TENSORS_PER_SIZE }, () => randomBatch(model, batchSize));
  let next = 0;
  return repeatTimed(async () => [await runOnce(session, model, inputs[next++ % inputs.length])], budget);
}

/** Latency and throughput of one batch size from its timed loops. */
export function rawResult(batchSize: number, loops: readonly Timed[]): RawResult {
  const iterations = loops.reduce((sum, t) => sum + t.iterations, 0);
  const elapsedMs = loops.reduce((sum, t) => sum + t.elapsedMs, 0);
  const medianMs = median(loops.flatMap((t) => t.phases[0]));
  return {
    batchSize,
    iterations,
    medianMs,
    medianMsPerItem: medianMs / batchSize,
    itemsPerSec: (batchSize * iterations * 1000) / elapsedMs,
  };
}
