import type { AppDeps, App } from '../app.js';

/** `GET /metrics`: Prometheus text exposition of every metric in src/metrics.ts. */
export async function metricsRoutes(app: App, { metrics }: AppDeps): Promise<void> {
  app.get('/metrics', { logLevel: 'warn' }, async (_req, reply) => {
    const text = await metrics.render();
    return reply.type(metrics.contentType).send(text);
  });
}
