import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { loadConfig, packageRoot } from '../../src/config.js';
import { Metrics } from '../../src/metrics.js';
import { ModelRepository } from '../../src/models/repository.js';
import { buildApp, type App } from '../../src/server/app.js';

/** A real app on a real repository (default: the project's models/), with silent logs. */
export interface TestApp {
  app: App;
  repository: ModelRepository;
  metrics: Metrics;
  failures: { name: string; error: string }[];
  close(): Promise<void>;
}

/**
 * Builds and loads an app from environment-style settings, as `main.ts` would, without listening. `POST /predict`
 * without a model goes to `text-orientation` unless `env` says otherwise (`MUON_DEFAULT_MODEL: ''` gives the
 * shipped default, `ocr`).
 */
export async function startApp(env: Record<string, string> = {}): Promise<TestApp> {
  const config = loadConfig({ MUON_EXECUTION_PROVIDER: 'cpu', MUON_DEFAULT_MODEL: 'text-orientation', ...env });
  const metrics = new Metrics(false);
  const logger = pino({ level: 'silent' });
  const repository = new ModelRepository(config, metrics, logger);
  const failures = await repository.loadAll();
  const app = buildApp({ config, metrics, repository, logger });
  await app.ready();
  return {
    app,
    repository,
    metrics,
    failures,
    async close() {
      await app.close();
      await repository.close();
    },
  };
}

/** A multipart/form-data body with the given parts, for `inject()`; `close: false` leaves out the final boundary. */
export function multipart(
  parts: { name: string; filename?: string; type?: string; data: Buffer | string }[],
  { close = true } = {},
): {
  payload: Buffer;
  headers: Record<string, string>;
} {
  const boundary = '----muon-test-boundary';
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disposition = `form-data; name="${p.name}"${p.filename ? `; filename="${p.filename}"` : ''}`;
    const head = `--${boundary}\r\nContent-Disposition: ${disposition}\r\n${p.type ? `Content-Type: ${p.type}\r\n` : ''}\r\n`;
    chunks.push(Buffer.from(head), Buffer.from(p.data), Buffer.from('\r\n'));
  }
  if (close) chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(chunks), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

/** Reads one sample value of a metric from the Prometheus text (`name{labels} value`), or 0. */
export async function metricValue(
  metrics: Metrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await metrics.render();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (want.every((w) => line.includes(w))) return Number(line.split(' ').at(-1));
  }
  return 0;
}

/**
 * Copies shipped model folders into a temporary repository (removed at exit) with the batch settings their
 * manifests give for CUDA: on a CPU some models batch no rows (measured best there), and the tests of batching
 * behaviour need them to.
 */
export function cudaBatchingCopy(names: readonly string[]): string {
  const repo = mkdtempSync(path.join(tmpdir(), 'muon-cuda-batching-'));
  process.once('exit', () => rmSync(repo, { recursive: true, force: true }));
  for (const name of names) {
    cpSync(path.join(packageRoot, 'models', name), path.join(repo, name), { recursive: true });
    const file = path.join(repo, name, 'manifest.json');
    const manifest = JSON.parse(readFileSync(file, 'utf8'));
    manifest.batching = { ...manifest.batching, ...manifest.batching.cuda, maxInFlightBatches: 1 };
    writeFileSync(file, JSON.stringify(manifest));
  }
  return repo;
}
