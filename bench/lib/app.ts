import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { Metrics } from '../../src/metrics.js';
import { ModelRepository } from '../../src/models/repository.js';
import { buildApp, type App } from '../../src/server/app.js';

/**
 * The real app on CPU, every model of its repository loaded, logging warnings only, for benches that send requests
 * with `app.inject` (answers as the server gives them, no HTTP). `env` adds environment-style settings.
 */
export async function injectableApp(env: Record<string, string> = {}): Promise<{ app: App; close(): Promise<void> }> {
  const config = loadConfig({ MUON_EXECUTION_PROVIDER: 'cpu', MUON_LOG_LEVEL: 'warn', ...env });
  const metrics = new Metrics(false);
  const log = pino({ level: 'warn' });
  const repository = new ModelRepository(config, metrics, log);
  await repository.loadAll();
  const app = buildApp({ config, metrics, repository, logger: log });
  await app.ready();
  return {
    app,
    async close() {
      await app.close();
      await repository.close();
    },
  };
}
