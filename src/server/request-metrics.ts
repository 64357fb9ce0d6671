import type { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Errors } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { App } from './app.js';

/** Label used for requests whose model is not in the repository, so labels stay bounded. */
const UNKNOWN_MODEL = '_unknown';

/** What a route plugin's handlers tell the request metrics, and read back. */
export interface RequestTracker {
  /** Names the model (and the version serving it) a request is for, once it is known to exist. */
  model(req: FastifyRequest, name: string, version?: string): void;
  /** When the request arrived (`performance.now()`), for deadlines that count the upload. */
  arrival(req: FastifyRequest): number;
}

/**
 * Counts and times the requests of a route plugin by model (`muon_requests_total{model,code}`,
 * `muon_request_duration_seconds{model}`), whatever their outcome. Requests no handler attributed to a model count
 * as `_unknown` when `unattributed` is true (a predict call for a missing model), else not at all (metadata reads).
 */
export function trackRequests(app: App, metrics: Metrics, unattributed = true): RequestTracker {
  app.addHook('onResponse', (req, reply, done) => {
    if (unattributed || req.servedModel !== null) {
      const model = req.servedModel ?? UNKNOWN_MODEL;
      metrics.requests.inc({ model, code: String(reply.statusCode) });
      // (0 only for a request that failed before the app's first onRequest hook set it)
      const seconds = req.arrivedAt > 0 ? (performance.now() - req.arrivedAt) / 1000 : 0;
      if (req.arrivedAt > 0) metrics.requestDuration.observe({ model }, seconds);
      // Triton's statistics, per version, counted with the same values
      if (req.servedModel !== null && req.servedVersion !== null)
        metrics.statistics.answered(req.servedModel, req.servedVersion, reply.statusCode, seconds);
    }
    done();
  });
  return {
    model: (req, name, version) => {
      req.servedModel = name;
      req.servedVersion = version ?? null;
    },
    arrival: (req) => (req.arrivedAt > 0 ? req.arrivedAt : performance.now()),
  };
}

declare module 'fastify' {
  interface FastifyRequest {
    /** When the request arrived (`performance.now()`; set for every request, in onRequest). */
    arrivedAt: number;
    /** The model a request is for, once a handler named it (see {@link trackRequests}). */
    servedModel: string | null;
    /** The version of {@link servedModel} that serves the request, once known. */
    servedVersion: string | null;
  }
}

/** The signal of each connection that asked for one: it aborts when the connection closes. */
const hangUps = new WeakMap<Socket, AbortSignal>();

/**
 * A signal that aborts when the client hangs up before the answer: its queued work must not cost compute.
 * It is the connection's (made once per connection, not per request: an AbortSignal costs about as much as the rest
 * of a small request's bookkeeping): an HTTP/1 connection carries one request at a time, or pipelined ones, which are
 * all lost when it closes. The request's socket, not the response's: a pipelined request's response gets the socket
 * only once the answers before it are written.
 */
export function abortOnClose(reply: FastifyReply): AbortSignal {
  const socket = reply.request.raw.socket as Socket | null;
  if (socket === null || socket.destroyed === true) return AbortSignal.abort();
  let signal = hangUps.get(socket);
  if (signal === undefined) {
    const gone = new AbortController();
    socket.once('close', () => gone.abort());
    signal = gone.signal;
    hangUps.set(socket, signal);
  }
  return signal;
}

/** The header a client sets its deadline with (milliseconds, queue and compute); `?timeout_ms=` does the same. */
export const TIMEOUT_HEADER = 'x-muon-timeout-ms';

/**
 * A request's deadline budget: what the client asked for (the query's `timeout_ms`, else the `x-muon-timeout-ms`
 * header), capped by the model's `batching.maxTimeoutMs`, or the model's default. Counted from arrival.
 */
export function requestTimeoutMs(
  req: FastifyRequest,
  model: { readonly timeoutMs: number; readonly maxTimeoutMs: number },
  fromQuery?: number,
): number {
  const raw = req.headers[TIMEOUT_HEADER];
  let asked = fromQuery;
  if (asked === undefined && raw !== undefined) {
    asked = Number(raw);
    if (!Number.isSafeInteger(asked) || asked < 1)
      throw new Errors.BAD_REQUEST(`${TIMEOUT_HEADER} must be a positive integer (milliseconds), got '${String(raw)}'`);
  }
  return asked === undefined ? model.timeoutMs : Math.min(asked, model.maxTimeoutMs);
}
