import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Metrics } from '../metrics.js';
import type { App } from './app.js';

/** Label used for requests whose model is not in the repository, so labels stay bounded. */
const UNKNOWN_MODEL = '_unknown';

/** What a route plugin's handlers tell the request metrics, and read back. */
export interface RequestTracker {
  /** Names the model a request is for (once it is known to exist). */
  model(req: FastifyRequest, name: string): void;
  /** When the request arrived (`performance.now()`), for deadlines that count the upload. */
  arrival(req: FastifyRequest): number;
}

/**
 * Counts and times every request of a route plugin by model (`muon_requests_total{model,code}`,
 * `muon_request_duration_seconds{model}`), whatever its outcome.
 */
export function trackRequests(app: App, metrics: Metrics): RequestTracker {
  const modelOf = new WeakMap<FastifyRequest, string>();
  const started = new WeakMap<FastifyRequest, number>();
  app.addHook('onRequest', async (req) => {
    started.set(req, performance.now());
  });
  app.addHook('onResponse', async (req, reply) => {
    const model = modelOf.get(req) ?? UNKNOWN_MODEL;
    metrics.requests.inc({ model, code: String(reply.statusCode) });
    const t0 = started.get(req);
    if (t0 !== undefined) metrics.requestDuration.observe({ model }, (performance.now() - t0) / 1000);
  });
  return {
    model: (req, name) => modelOf.set(req, name),
    arrival: (req) => started.get(req) ?? performance.now(),
  };
}

/** A signal that aborts when the client hangs up before the answer: its queued work must not cost compute. */
export function abortOnClose(reply: FastifyReply): AbortSignal {
  const gone = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) gone.abort();
  });
  return gone.signal;
}
