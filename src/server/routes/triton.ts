import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { App, RouteDeps } from '../app.js';
import { errorHandler } from '../error-mapping.js';
import { modelConfig, modelStatistics } from '../v2-service.js';
import { Named, Versioned, type Params } from './v2.js';

// Triton's model configuration and statistics extensions over HTTP (what tritonclient's get_model_config and
// get_inference_statistics call). The answers are built protocol-neutral in src/protocol/.

const Duration = Type.Object({ count: Type.Integer(), ns: Type.Integer() });
const ModelStats = Type.Object({
  name: Type.String(),
  version: Type.String(),
  last_inference: Type.Integer({ description: 'ms since the epoch of the last batch cut, 0 before any' }),
  inference_count: Type.Integer({ description: 'rows computed' }),
  execution_count: Type.Integer({ description: 'batches computed' }),
  inference_stats: Type.Object({
    success: Duration,
    fail: Duration,
    queue: Duration,
    compute_input: Duration,
    compute_infer: Duration,
    compute_output: Duration,
  }),
  batch_stats: Type.Array(
    Type.Object({
      batch_size: Type.Integer(),
      compute_input: Duration,
      compute_infer: Duration,
      compute_output: Duration,
    }),
  ),
});
const StatsResponse = Type.Object({ model_stats: Type.Array(ModelStats) });

export async function tritonRoutes(app: App, { repository, metrics }: RouteDeps): Promise<void> {
  app.setErrorHandler(errorHandler('v2')); // the protocol's error body, with our code

  const config = async (req: FastifyRequest<{ Params: Params }>) =>
    modelConfig(repository, req.params.name, req.params.version);
  const configSchema = (summary: string, params: typeof Named | typeof Versioned) => ({
    schema: {
      tags: ['v2'],
      summary,
      params,
      // Triton's configuration has many optional fields: passed as built, not filtered by a schema
      response: { 200: Type.Object({}, { additionalProperties: true }) },
    },
  });
  app.get('/v2/models/:name/config', configSchema("A model's configuration, as Triton's ModelConfig", Named), config);
  app.get(
    '/v2/models/:name/versions/:version/config',
    configSchema("One model version's configuration, as Triton's ModelConfig", Versioned),
    config,
  );

  // a model (in one version, or all it serves), or every served model
  const stats = async (req: FastifyRequest<{ Params: Partial<Params> }>) =>
    modelStatistics(repository, metrics, req.params.name, req.params.version);
  const statsSchema = (summary: string, params?: typeof Named | typeof Versioned) => ({
    schema: { tags: ['v2'], summary, ...(params ? { params } : {}), response: { 200: StatsResponse } },
  });
  app.get('/v2/models/stats', statsSchema('Inference statistics of every served model (Triton)'), stats);
  app.get(
    '/v2/models/:name/stats',
    statsSchema("A model's inference statistics, all its versions (Triton)", Named),
    stats,
  );
  app.get(
    '/v2/models/:name/versions/:version/stats',
    statsSchema("One model version's inference statistics (Triton)", Versioned),
    stats,
  );
}
