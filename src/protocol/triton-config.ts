// placeholder: replaced by the triton-http branch
// (the gRPC ModelConfig RPC calls modelConfigJson; the triton-http branch gives the full protocol-neutral version)
import type { LoadedModel } from '../models/repository.js';
import { datatypeOfGraphType } from './v2-codec.js';

/** A model's Triton configuration as proto3 JSON of `inference.ModelConfig` (placeholder: name, platform, tensors). */
export function modelConfigJson(model: LoadedModel): Record<string, unknown> {
  const maxBatchSize = model.batcher.options.maxBatchSize;
  const tensors = (list: LoadedModel['session']['inputs']) =>
    list.map((t) => {
      const shape = t.shape.map((d) => (typeof d === 'number' ? d : -1));
      // with batching, Triton's dims leave out the batch dimension
      return {
        name: t.name,
        data_type: `TYPE_${datatypeOfGraphType(t.type)}`,
        dims: maxBatchSize > 0 && shape.length > 0 ? shape.slice(1) : shape,
      };
    });
  return {
    name: model.name,
    platform: 'onnxruntime_onnx',
    max_batch_size: maxBatchSize,
    input: tensors(model.session.inputs),
    output: tensors(model.session.outputs),
  };
}
