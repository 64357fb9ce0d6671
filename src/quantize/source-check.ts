import { DataType, type ModelProto, type NodeProto } from '../onnx/model.js';
import { tensors } from '../onnx/tensor-slots.js';
import type { Manifest } from '../models/manifest.js';

/**
 * Ops a quantizer leaves in a graph (ours, onnxruntime's, and onnxruntime's contrib ops for quantized and 4-bit
 * kernels): a graph with any of them was compressed already.
 */
const QUANTIZED_OPS = new Set([
  'QuantizeLinear',
  'DequantizeLinear',
  'DynamicQuantizeLinear',
  'QLinearConv',
  'QLinearMatMul',
  'MatMulInteger',
  'ConvInteger',
  'MatMulNBits',
  'DynamicQuantizeMatMul',
  'MatMulIntegerToFloat',
  'QLinearAdd',
  'QLinearMul',
  'QLinearGlobalAveragePool',
  'QLinearSigmoid',
  'QLinearLeakyRelu',
  'QLinearConcat',
  'QGemm',
]);

/**
 * What shows that a source model was compressed already, in words (empty when nothing does): its manifest's
 * compression record, quantized ops in its graph (subgraphs included), float16 weights. Compressing it again stacks
 * the errors of both passes and measures "before" on a model that is not the original: the report's figures would
 * compare the wrong pair (an int8 model re-quantized reported 0.33 -> 0.65 MB as `[int8-static] [int8-static]`).
 */
export function compressedEvidence(model: ModelProto, manifest?: Manifest): string[] {
  const found: string[] = [];
  if (manifest?.compression) found.push(`its manifest records a compression (${manifest.compression.method})`);
  const ops = new Map<string, number>();
  const visit = (nodes: readonly NodeProto[]) => {
    for (const n of nodes) {
      if (QUANTIZED_OPS.has(n.opType)) ops.set(n.opType, (ops.get(n.opType) ?? 0) + 1);
      for (const a of n.attribute) for (const g of a.g ? [a.g, ...a.graphs] : a.graphs) visit(g.node);
    }
  };
  if (model.graph) visit(model.graph.node);
  for (const f of model.functions) visit(f.node);
  // initializers and attribute tensors (a Constant's value: some exporters keep weights there), everywhere
  let halfWeights = 0;
  for (const { tensor: t } of tensors(model))
    if (t.dataType === DataType.FLOAT16 || t.dataType === DataType.BFLOAT16) halfWeights++;
  if (ops.size > 0) {
    const list = [...ops].sort(([, a], [, b]) => b - a).map(([op, n]) => `${n} ${op}`);
    found.push(`its graph has quantized ops (${list.join(', ')})`);
  }
  if (halfWeights > 0) found.push(`${halfWeights} of its weights are 16-bit floats`);
  return found;
}
