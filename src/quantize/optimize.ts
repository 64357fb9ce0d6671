import type { ModelProto } from '../onnx/model.js';
import { ortOptimizedModel } from './ort-optimize.js';

/**
 * Runs onnxruntime's 'basic' graph optimizations on a model and returns the optimized graph: constant folding (which
 * also turns Constant nodes into initializers), Conv + BatchNormalization / Add / Mul fusion, redundant node removal.
 * ORT's quantizer expects this pre-processing (`quant_pre_process`), because a BatchNormalization after a Conv cannot
 * be fused into QLinearConv and would cost an extra requantization.
 *
 * Only the 'basic' level is used on purpose: 'extended' and higher emit com.microsoft fused ops (FusedConv, ...) that
 * the quantizer does not know and that are specific to one execution provider.
 *
 * @param bytes a serialized model (no external data)
 * @returns the optimized model, decoded; its raw_data does not alias a file (the temporary file is deleted)
 */
export async function optimizeForQuantization(bytes: Uint8Array): Promise<ModelProto> {
  return ortOptimizedModel(bytes, 'basic', 'muon-optimize-');
}
