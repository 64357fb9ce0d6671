import type { AppDeps, App } from '../app.js';

/** `GET /metrics`: Prometheus text exposition of every metric in src/metrics.ts. */
export async function metricsRoutes(app: App, { metrics }: AppDeps): Promise<void> {
  const schema = {
    tags: ['metrics'],
    summary: 'Prometheus metrics (text exposition format)',
    response: {
      200: {
        description: 'Prometheus text exposition format',
        content: { 'text/plain': { schema: { type: 'string' } } },
      },
    },
  };
  app.get('/metrics', { logLevel: 'warn', schema }, async (_req, reply) => {
    const text = await metrics.render();
    return reply.type(metrics.contentType).send(text);
  });
}
