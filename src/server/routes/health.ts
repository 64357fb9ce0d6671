import { Type } from 'typebox';
import type { AppDeps, App } from '../app.js';
import { LoopWatchdog } from '../loop-watchdog.js';

/**
 * `GET /v2/health/live` and `GET /v2/health/ready` (KServe v2 / Open Inference Protocol health).
 * Live answers as soon as the process serves HTTP (503 for a minute after its event loop was blocked longer than
 * `MUON_LIVENESS_MAX_BLOCK_MS`); ready waits until every model loaded and ran a warm-up batch,
 * so a load balancer never sends traffic to a model that is still loading.
 */
const Live = Type.Object({
  live: Type.Boolean(),
  reason: Type.Optional(Type.String({ description: 'why not: the event loop was blocked too long, recently' })),
});
const Ready = Type.Object({
  ready: Type.Boolean(),
  draining: Type.Optional(Type.Boolean()),
  models: Type.Array(Type.Object({ name: Type.String(), state: Type.String(), reason: Type.Optional(Type.String()) })),
});

export async function healthRoutes(app: App, { repository, config }: AppDeps): Promise<void> {
  // a process whose event loop was blocked longer than the limit is wedged: liveness fails (for a minute after the
  // block), so the orchestrator restarts it
  const watchdog = new LoopWatchdog(config.livenessMaxBlockMs);
  app.addHook('onClose', async () => watchdog.stop());
  app.get(
    '/v2/health/live',
    {
      schema: {
        tags: ['health'],
        summary: 'Liveness: the process serves HTTP and its event loop was not blocked too long lately',
        response: { 200: Live, 503: Live },
      },
    },
    async (_req, reply) => {
      const stall = watchdog.stalled();
      if (!stall) return { live: true };
      const reason = `the event loop was blocked ${stall.blockedMs} ms (limit ${watchdog.limitMs} ms), ${Math.round(stall.agoMs / 1000)} s ago`;
      return reply.code(503).send({ live: false, reason });
    },
  );
  app.get(
    '/v2/health/ready',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: every model loaded and warmed up (503 while loading, draining or after a failure)',
        response: { 200: Ready, 503: Ready },
      },
    },
    async (_req, reply) => {
      const ready = repository.ready;
      const models = repository
        .list()
        .map((s) => ({ name: s.name, state: s.state, ...(s.state === 'FAILED' ? { reason: s.error } : {}) }));
      return reply.code(ready ? 200 : 503).send({ ready, ...(repository.draining ? { draining: true } : {}), models });
    },
  );
}
