import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { Errors } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { ModelRepository } from '../models/repository.js';
import { clientErrorHandler } from './client-errors.js';
import { carriesBody, declaredEncoding } from './content-encoding.js';
import { bodyReceived, HandlerWatchdog, isLargeAnswer, isStreamedBody, socketOf, timeAnswer } from './connection.js';
import { errorFormatOf, errorHandler, formatError, toClientError } from './error-mapping.js';
import { clientKey, ErrorPacer, isClientError } from './error-pacing.js';
import { swaggerOptions } from './openapi.js';
import { jsonBodies } from './json-body.js';
import { lazyRequestLoggers } from './request-logger.js';
import { type AdmissionBudget, BodyMeter, Holdings, largeInputLane, MemoryBudget } from './memory-budget.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { modelRoutes } from './routes/models.js';
import { playgroundRoutes } from './routes/playground.js';
import { predictRoutes } from './routes/predict.js';
import { tritonRoutes } from './routes/triton.js';
import { v2Routes } from './routes/v2.js';

/** What the app is built from; `main.ts` wires the real ones, tests their own. */
export interface AppDeps {
  readonly config: Config;
  readonly metrics: Metrics;
  readonly repository: ModelRepository;
  readonly logger: Logger;
  /** The memory budget requests are admitted against; built from the config when absent (the gRPC server shares it). */
  readonly budget?: MemoryBudget;
}

/** The process's memory budget, from the config, its admissions counted in the metrics. */
export function createMemoryBudget(config: Config, metrics: Metrics): MemoryBudget {
  return new MemoryBudget(config.memoryBudget.bytes, config.memoryBudget.source, config.memoryWaitMs, {
    onOutcome: (outcome) => metrics.memoryAdmissions.inc({ outcome }),
  });
}

/** What route plugins get: the app's dependencies and the memory budget the app admits requests against. */
export interface RouteDeps extends Omit<AppDeps, 'budget'> {
  readonly budget: MemoryBudget;
  /** Slots for large inputs (see {@link LARGE_INPUT_BYTES}). */
  readonly largeInputs: AdmissionBudget;
}

/** The app type routes are written against. */
export type App = FastifyInstance<any, any, any, Logger, TypeBoxTypeProvider>;

/**
 * Builds the HTTP app. Never listens: `main.ts` does, tests use `inject()`.
 */
export function buildApp(deps: AppDeps): App {
  const app = Fastify({
    ...(deps.config.tls ? { https: { cert: deps.config.tls.cert, key: deps.config.tls.key } } : {}),
    loggerInstance: deps.logger,
    bodyLimit: deps.config.maxBodyBytes,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    // slow or stalled clients cannot hold a connection for ever: a trickling upload is cut by requestTimeout, and a
    // socket idle for as long is closed (Node checks requestTimeout only every 30 s, so a stalled upload would
    // otherwise live about 90 s). The idle timeout is armed only while the server waits for the client: from the
    // connection to its first request, while a body is read (below), and between requests (keepAliveTimeout);
    // Fastify's connectionTimeout would keep it armed throughout, refreshed on every read and write.
    requestTimeout: deps.config.uploadTimeoutMs,
    keepAliveTimeout: deps.config.uploadTimeoutMs,
    // requests that arrive once close() began get our 503 (MUON_ERR_SHUTTING_DOWN, below), not Fastify's own body
    return503OnClosing: false,
    // one line per request (the onResponse hook below) instead of Fastify's two
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyRequestLoggers,
    // errors the router raises before any route or error handler (a malformed URL, a 10 KB path parameter) get our
    // error body and code too
    frameworkErrors: (err, req, reply) => {
      const { body, headers } = toClientError(err, req.id);
      // the reply is not typed for a route yet at this point
      (reply as FastifyReply)
        .code(body.statusCode)
        .headers(headers)
        .send(formatError(body, errorFormatOf(req.url ?? '')));
    },
    // requests Node's HTTP parser refuses get our error body and code too
    clientErrorHandler,
    // reject unknown query parameters (a typo like `topk` must not be silently ignored)
    ajv: { customOptions: { removeAdditional: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // JSON bodies are bounded in size and depth before they are parsed (the v2 infer routes read theirs themselves)
  jsonBodies(app as unknown as App);

  // Memory: what a request holds is admitted against the budget and held until its answer is done with and its
  // handler has returned (Holdings). A body is charged as it arrives (one that declares at most a step, before it is
  // read); one declared larger than the whole budget is refused before it is read.
  const { metrics } = deps;
  const budget = deps.budget ?? createMemoryBudget(deps.config, metrics);
  metrics.watchMemoryBudget(budget);
  app.decorateRequest('holdings', null as unknown as Holdings);
  app.decorateRequest('bodyMeter', null as unknown as BodyMeter);
  app.decorateRequest('arrivedAt', 0);
  app.decorateRequest('servedModel', null);
  app.decorateRequest('servedVersion', null);
  // While draining, answers to requests admitted before close() end their keep-alive connection, so the server
  // can close without waiting for idle sockets to time out.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  // The hooks every request passes are callback hooks, one per stage: a small request's whole answer costs less
  // than a few promise-returning hooks. A request that reads no body (GET, HEAD: health, metadata, metrics) holds
  // nothing of the budget, so it skips the holdings and the meter, which are most of that bookkeeping.
  app.addHook('onRequest', (req, reply, done) => {
    req.arrivedAt = performance.now();
    if (closing && !req.url.startsWith('/v2/health')) return done(new Errors.SHUTTING_DOWN());
    if (req.method === 'GET' || req.method === 'HEAD') return done();
    // only the v2 routes inflate a body (content-encoding.ts); elsewhere a compressed body would be read as it is
    const encoding = declaredEncoding(req);
    if (encoding !== undefined && carriesBody(req) && !req.url.startsWith('/v2/'))
      return done(
        new Errors.UNSUPPORTED_MEDIA_TYPE(
          `a body with Content-Encoding ${encoding} (only /v2 infer bodies may be gzip or deflate: send it as it is)`,
        ),
      );
    req.holdings = new Holdings(reply.raw);
    const declared = Number(req.headers['content-length']);
    // a body declared over the body limit is never read, so never charged (refused with 413 before it is read)
    const unread = declared > deps.config.maxBodyBytes;
    try {
      if (!unread && declared > 0) budget.refuseIfTooLarge(declared, 'the request body');
    } catch (err) {
      return done(err as Error);
    }
    req.bodyMeter = new BodyMeter(
      budget,
      req.holdings,
      unread ? 0 : Number.isSafeInteger(declared) ? declared : undefined,
    );
    // the upload is timed by the socket's idle timeout, until the body is in (bodyReceived)
    if (!unread) socketOf(req)?.setTimeout(deps.config.uploadTimeoutMs);
    done();
  });
  // a multipart body is read by its handler straight from the request, which meters it as it reads
  app.addHook('preParsing', (req, _reply, payload, done) => {
    if (req.bodyMeter === null || isStreamedBody(req)) return done(null, payload);
    const metered = req.bodyMeter.meter(payload, req.headers['transfer-encoding'] !== undefined);
    if (metered instanceof Promise) metered.then((p) => done(null, p), done);
    else done(null, metered);
  });
  // every handler that reads a body runs inside its request's holdings, so that grants outlive a client that left
  // mid-work
  app.addHook('onRoute', (route) => {
    if ([route.method].flat().every((m) => m === 'GET' || m === 'HEAD')) return;
    const handler = route.handler;
    route.handler = function (this: unknown, req, reply) {
      return req.holdings.during(() => handler.call(this as never, req, reply));
    };
  });
  // (for a TLS server, the socket HTTP is spoken on is the TLS one)
  app.server.on(deps.config.tls ? 'secureConnection' : 'connection', (socket: Socket) =>
    socket.setTimeout(deps.config.uploadTimeoutMs),
  );
  // Once the body is in (bodyReceived), a request may compute quietly until its deadline. A multipart body is read
  // by the handler, which says when it is in. Whatever a handler waits for, the watchdog answers a request it has
  // not answered in time.
  const watchdog = new HandlerWatchdog(deps.config.handlerTimeoutMs, (req, reply) => {
    req.log.warn({ url: req.url, ms: deps.config.handlerTimeoutMs }, 'request not answered in time');
    const { body, headers } = toClientError(new Errors.HANDLER_TIMEOUT(deps.config.handlerTimeoutMs), req.id);
    const answer = formatError(body, errorFormatOf(req.url));
    void reply.code(body.statusCode).headers(headers).header('connection', 'close').send(answer);
  });
  // one function for every request (see Holdings.whenAnswered)
  const forgetWatch = (reply: FastifyReply) => watchdog.forget(reply);
  app.addHook('onClose', (_app, done) => {
    watchdog.stop();
    done();
  });
  app.addHook('preHandler', (req, reply, done) => {
    watchdog.watch(req, reply);
    const { holdings } = req;
    // a bodiless request is forgotten once answered (onResponse), or by the sweep once its client is gone
    if (holdings === null) return done();
    if (!isStreamedBody(req)) bodyReceived(req);
    // a client gone before its handler starts needs no watching (and must not be held, with its body, until the
    // deadline)
    if (holdings.answered) watchdog.forget(reply);
    else holdings.whenAnswered(forgetWatch, reply);
    done();
  });
  // a client that keeps getting refused gets its further refusals later (server/error-pacing.ts)
  const pacer = deps.config.clientErrorRate > 0 ? new ErrorPacer({ rate: deps.config.clientErrorRate }) : undefined;
  app.addHook('onSend', (req, reply, payload, done) => {
    reply.header('x-request-id', req.id);
    if (closing) reply.header('connection', 'close');
    if (req.holdings !== null && isLargeAnswer(payload)) timeAnswer(req, reply, deps.config.uploadTimeoutMs);
    // a refusal nobody will read (its client is gone) is neither paced nor charged; a 429 is, once its client
    // retries before the Retry-After it was given
    if (pacer === undefined || reply.statusCode < 400 || reply.statusCode >= 500 || reply.raw.destroyed)
      return done(null, payload);
    const client = clientKey(req.ip);
    const charged =
      reply.statusCode === 429
        ? pacer.ignoredRetryAfter(client, req.arrivedAt, 1000 * (Number(reply.getHeader('retry-after')) || 1))
        : isClientError(reply.statusCode);
    if (!charged) return done(null, payload);
    const delay = pacer.delayFor(client);
    if (typeof delay !== 'number') {
      // too many refusals held (this client's, or everyone's): this one goes now, and ends its connection
      if (delay === 'too-many-waiting') reply.header('connection', 'close');
      return done(null, payload);
    }
    // while it waits the refusal holds only itself: not the watchdog's attention, not its memory grants, not its body
    watchdog.forget(reply);
    req.holdings?.settle();
    req.body = undefined;
    metrics.pacedRefusals.inc();
    metrics.pacedSeconds.inc(delay / 1000);
    setTimeout(() => {
      pacer.sent(client);
      if (closing) reply.header('connection', 'close');
      done(null, payload);
    }, delay);
  });
  app.addHook('onResponse', (req, reply, done) => {
    watchdog.forget(reply);
    const quiet = req.url === '/metrics' || req.url.startsWith('/v2/health');
    const level = quiet ? 'debug' : 'info';
    if (!deps.logger.isLevelEnabled(level)) return done();
    // the root logger with the request id: the line req.log would write, without making the request's child logger
    deps.logger[level](
      {
        reqId: req.id,
        method: req.method,
        url: req.url,
        statusCode: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 100) / 100,
      },
      'request',
    );
    done();
  });

  // our error body, but under /v2 the protocol's (a route or model a Triton client misses reads as such)
  app.setErrorHandler(errorHandler('by-url'));

  app.setNotFoundHandler((req) => {
    throw new Errors.NOT_FOUND(req.method, req.url.split('?')[0]);
  });

  // CORS only for the origins configured; without any, no CORS headers (browsers on other origins are refused)
  if (deps.config.corsOrigins.length > 0) {
    app.register(cors, {
      origin: [...deps.config.corsOrigins],
      methods: ['GET', 'POST'],
      exposedHeaders: ['x-request-id', 'retry-after', 'inference-header-content-length'],
    });
  }

  // OpenAPI is generated from the same schemas that validate requests and serialize responses
  app.register(swagger, swaggerOptions());
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } });
  const largeInputs = largeInputLane(deps.config.cpuCount, deps.config.memoryWaitMs, {
    onOutcome: (outcome) => metrics.largeInputAdmissions.inc({ outcome }),
  });
  const routeDeps: RouteDeps = { ...deps, budget, largeInputs };
  app.register(healthRoutes, routeDeps);
  app.register(metricsRoutes, routeDeps);
  app.register(modelRoutes, routeDeps);
  app.register(predictRoutes, routeDeps);
  app.register(v2Routes, routeDeps);
  app.register(tritonRoutes, routeDeps);
  app.register(playgroundRoutes, routeDeps);
  return app as unknown as App;
}
