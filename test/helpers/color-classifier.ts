/**
 * A real, tiny ONNX image classifier with hand-set weights, for tests.
 *
 * It predicts the dominant color of an image as one of {@link COLOR_LABELS}:
 *
 *     pixel_values [batch, 3, 32, 32] float32 (NCHW, values in [0, 1])
 *       -> GlobalAveragePool -> [batch, 3, 1, 1]   mean R, G, B
 *       -> Flatten(axis=1)   -> [batch, 3]
 *       -> Gemm(W, b)        -> [batch, 3]         logits = 10 * mean (W = 10 * I)
 *       -> Softmax           -> probs [batch, 3]
 *
 * With a gain of 10, a saturated red image has logits [10, 0, 0] and P(red) =
 * e^10 / (e^10 + 2) ~= 0.9999, so tests can assert confident predictions while the
 * model still behaves like a real classifier (batching, dynamic batch dim, softmax
 * outputs that sum to 1). Being built in code, it needs no binary fixture and no
 * Python toolchain.
 *
 * The NHWC variant takes [batch, 32, 32, 3] (the layout of decoded image bytes from
 * sharp/canvas) and adds a Transpose to NCHW in front, so preprocessing for both
 * layouts can be tested against the same classifier.
 */
import { DataType, encodeModel, makeGraph, makeModel, node, tensor, valueInfo } from '../../src/onnx/model.js';

/** Class labels, in the order of the `probs` output columns. */
export const COLOR_LABELS = ['red', 'green', 'blue'] as const;

/** Input tensor name of the color classifier. */
export const COLOR_INPUT = 'pixel_values';

/** Output tensor name of the color classifier. */
export const COLOR_OUTPUT = 'probs';

/** Image side length, in pixels, expected by the color classifier. */
export const COLOR_IMAGE_SIZE = 32;

/** Options of {@link buildColorClassifier}. */
export interface ColorClassifierOptions {
  /** Input layout: `NCHW` (default, [batch, 3, 32, 32]) or `NHWC` ([batch, 32, 32, 3]). */
  layout?: 'NCHW' | 'NHWC';
  /** Logit gain; higher means more confident predictions. Default 10. */
  gain?: number;
  /** Batch dimension: symbolic `"batch"` (default) or a fixed size, like models exported with a static batch. */
  batch?: number | string;
}

/**
 * Build the color classifier.
 *
 * The labels are also stored in the model's `metadata_props` under `labels`
 * (comma-separated), so label-from-metadata code paths can be tested with it too.
 *
 * @param options - input layout and logit gain
 * @returns serialized ONNX model bytes, loadable by `InferenceSession.create(bytes)`
 */
export function buildColorClassifier(options: ColorClassifierOptions = {}): Uint8Array {
  const layout = options.layout ?? 'NCHW';
  const gain = options.gain ?? 10;
  const n = COLOR_LABELS.length;
  const size = COLOR_IMAGE_SIZE;

  // W is stored [out, in] like a PyTorch Linear layer, hence transB=1 on the Gemm.
  // Softmax is shift-invariant, so a diagonal gain is all that is needed: adding the
  // same constant to every logit (e.g. a "10*I - 5" matrix) would not change probs.
  const w = new Float32Array(n * n);
  for (let i = 0; i < n; i++) w[i * n + i] = gain;
  const b = new Float32Array(n);

  const nodes = [];
  let pixels = COLOR_INPUT;
  if (layout === 'NHWC') {
    nodes.push(node('Transpose', [COLOR_INPUT], ['nchw'], { perm: [0, 3, 1, 2] }, { name: 'to_nchw' }));
    pixels = 'nchw';
  }
  nodes.push(
    node('GlobalAveragePool', [pixels], ['mean_rgb'], {}, { name: 'pool' }),
    node('Flatten', ['mean_rgb'], ['features'], { axis: 1 }, { name: 'flatten' }),
    node('Gemm', ['features', 'W', 'b'], ['logits'], { transB: 1 }, { name: 'fc' }),
    node('Softmax', ['logits'], [COLOR_OUTPUT], { axis: -1 }, { name: 'softmax' }),
  );

  const batch = options.batch ?? 'batch';
  const inputDims = layout === 'NHWC' ? [batch, size, size, 3] : [batch, 3, size, size];
  const graph = makeGraph({
    name: `color_classifier_${layout.toLowerCase()}`,
    nodes,
    inputs: [valueInfo(COLOR_INPUT, DataType.FLOAT, inputDims)],
    outputs: [valueInfo(COLOR_OUTPUT, DataType.FLOAT, [batch, n])],
    initializers: [tensor('W', [n, n], w), tensor('b', [n], b)],
  });
  return encodeModel(
    makeModel({
      graph,
      producer: 'muon-serve-tests',
      docString: `Dominant-color classifier (${layout}), hand-set weights.`,
      metadata: { labels: COLOR_LABELS.join(',') },
    }),
  );
}
