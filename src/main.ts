import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { ConfigError, loadConfig, type Config } from './config.js';
import { Metrics } from './metrics.js';
import { ModelRepository } from './models/repository.js';
import { configureImageDecoder } from './preprocess/image.js';
import { GrpcEndpoint } from './grpc/server.js';
import { createLogger } from './logger.js';
import { buildApp, createMemoryBudget } from './server/app.js';

// Wiring only: read the config, listen first (so liveness answers while models load), load every model, then
// report ready. SIGTERM/SIGINT drain: stop accepting, answer what was admitted, free the sessions, exit 0.

let config: Config;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  pino({ name: 'muon' }).fatal(err.message); // a bad setting, named, before anything starts
  process.exit(2);
}
const logger = createLogger(config.logLevel);
configureImageDecoder(config.preprocessThreads);

const metrics = new Metrics();
const repository = new ModelRepository(config, metrics, logger);
// one memory budget for both protocols: a gRPC call and an HTTP request are admitted against the same bytes
const budget = createMemoryBudget(config, metrics);
const app = buildApp({ config, metrics, repository, logger, budget });
let grpc: GrpcEndpoint | undefined;

/** The one shutdown path: stop accepting, answer admitted requests (they wait on their batches), free sessions. */
async function drain(): Promise<void> {
  // gRPC stops taking calls and lets its admitted ones finish, within what is left of the shutdown timeout
  const grpcDrainMs = Math.max(1_000, config.shutdownTimeoutMs - config.shutdownGraceMs - 1_000);
  await Promise.all([app.close(), grpc?.close(grpcDrainMs)]);
  await repository.close();
  logger.info('stopped');
}

// SIGTERM: readiness turns 503 at once; new requests are still served for MUON_SHUTDOWN_GRACE_MS (load balancers
// and Kubernetes endpoints take a moment to notice), then refused with 503 while admitted ones finish; all within
// MUON_SHUTDOWN_TIMEOUT_MS, or close-with-grace exits 1.
closeWithGrace({ delay: config.shutdownTimeoutMs, logger }, async ({ signal, err }) => {
  repository.beginDrain();
  if (err) logger.error({ err }, 'shutting down after an error');
  else {
    logger.info({ signal, graceMs: config.shutdownGraceMs }, 'draining: not ready, still serving');
    await new Promise((r) => setTimeout(r, config.shutdownGraceMs));
  }
  await drain();
});

await app.listen({ host: config.host, port: config.port });
if (config.grpc) {
  grpc = await GrpcEndpoint.start({ config, metrics, repository, budget, logger });
  logger.info({ host: config.host, port: grpc.port, tls: config.tls !== undefined }, 'gRPC listening');
}
logger.info(
  { repository: config.modelRepository, executionProvider: config.executionProvider, cpus: config.cpuCount },
  'loading models',
);
const failures = await repository.loadAll();
if (failures.length > 0) {
  logger.fatal({ failures }, 'some models failed to load; not ready');
  await drain();
  // exit now: with the event loop empty, close-with-grace would take beforeExit as a signal and exit 0
  process.exit(1);
} else {
  const models = repository
    .list()
    .map((s) => (s.state === 'READY' ? `${s.name}@${s.model.version} on ${s.model.session.provider}` : s.name));
  logger.info({ models }, 'ready');
}
