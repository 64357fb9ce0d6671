import { Type } from 'typebox';
import type { AppDeps, App } from '../app.js';

/**
 * `GET /v2/health/live` and `GET /v2/health/ready` (KServe v2 / Open Inference Protocol health).
 * Live answers as soon as the process serves HTTP; ready waits until every model loaded and ran a warm-up batch,
 * so a load balancer never sends traffic to a model that is still loading.
 */
const Live = Type.Object({ live: Type.Boolean() });
const Ready = Type.Object({
  ready: Type.Boolean(),
  draining: Type.Optional(Type.Boolean()),
  models: Type.Array(Type.Object({ name: Type.String(), state: Type.String(), reason: Type.Optional(Type.String()) })),
});

export async function healthRoutes(app: App, { repository }: AppDeps): Promise<void> {
  app.get('/v2/health/live', { schema: { response: { 200: Live } } }, async () => ({ live: true }));
  app.get('/v2/health/ready', { schema: { response: { 200: Ready, 503: Ready } } }, async (_req, reply) => {
    const ready = repository.ready;
    const models = repository
      .list()
      .map((s) => ({ name: s.name, state: s.state, ...(s.state === 'FAILED' ? { reason: s.error } : {}) }));
    return reply.code(ready ? 200 : 503).send({ ready, ...(repository.draining ? { draining: true } : {}), models });
  });
}
