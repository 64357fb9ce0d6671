// placeholder: replaced by the triton-http branch
// (the gRPC ModelStatistics RPC calls modelStatisticsJson; the triton-http branch gives the real counts)
import { Errors } from '../errors.js';
import type { ModelRepository } from '../models/repository.js';

/**
 * Proto3 JSON of `inference.ModelStatisticsResponse` for one model (every version it serves, or `version`), or for
 * every ready model when `name` is empty (placeholder: names and versions, zero counts).
 */
export function modelStatisticsJson(repository: ModelRepository, name = '', version = ''): Record<string, unknown> {
  const names = name === '' ? repository.list().flatMap((s) => (s.state === 'READY' ? [s.name] : [])) : [name];
  const models = names.flatMap((n) => {
    const m = repository.readyModel(n, version === '' ? undefined : version); // unknown: 404, not ready: 503
    const versions = version === '' ? repository.versions(n) : [m.version];
    return versions.map((v) => ({ name: n, version: v, last_inference: 0, inference_count: 0, execution_count: 0 }));
  });
  if (name !== '' && models.length === 0) throw new Errors.MODEL_NOT_FOUND(name);
  return { model_stats: models };
}
