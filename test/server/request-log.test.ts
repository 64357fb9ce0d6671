/**
 * The request log (src/server/request-logger.ts, app.ts's onResponse hook): one `request` line per request with its
 * id, written without making the request's child logger; lines logged through `req.log` (a refusal) still carry the
 * request id.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import t from 'tap';
import { pino } from 'pino';
import { loadConfig, packageRoot } from '../../src/config.js';
import { Metrics } from '../../src/metrics.js';
import { ModelRepository } from '../../src/models/repository.js';
import { buildApp } from '../../src/server/app.js';
import { lazyRequestLoggers } from '../../src/server/request-logger.js';

async function appWithLog(level: string) {
  const repo = mkdtempSync(path.join(tmpdir(), 'muon-log-'));
  cpSync(path.join(packageRoot, 'models', 'language-id'), path.join(repo, 'language-id'), { recursive: true });
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  const logger = pino({ level }, sink);
  let children = 0;
  const child = logger.child.bind(logger);
  logger.child = ((...args: Parameters<typeof child>) => {
    children++;
    return child(...args);
  }) as typeof logger.child;
  const config = loadConfig({ MUON_MODEL_REPOSITORY: repo, MUON_DEFAULT_MODEL: 'language-id' });
  const metrics = new Metrics(false);
  const repository = new ModelRepository(config, metrics, pino({ level: 'silent' }));
  await repository.loadAll();
  const app = buildApp({ config, metrics, repository, logger });
  await app.ready();
  t.teardown(async () => {
    await app.close();
    await repository.close();
    rmSync(repo, { recursive: true, force: true });
  });
  return { app, lines, children: () => children };
}

t.test('a served request logs one line with its id, and makes no child logger', async (t) => {
  const { app, lines, children } = await appWithLog('info');
  const before = children();
  const res = await app.inject({
    method: 'POST',
    url: '/predict',
    headers: { 'content-type': 'text/plain', 'x-request-id': 'lid-1' },
    payload: 'Bonjour tout le monde',
  });
  t.equal(res.statusCode, 200);
  const mine = lines.filter((l) => l.reqId === 'lid-1');
  t.equal(mine.length, 1);
  t.match(mine[0], { level: 30, msg: 'request', method: 'POST', url: '/predict', statusCode: 200, ms: Number });
  t.equal(children() - before, 0, 'no pino child was made for it');
});

t.test('a refusal logged through req.log carries the request id', async (t) => {
  const { app, lines, children } = await appWithLog('info');
  const before = children();
  const res = await app.inject({
    method: 'POST',
    url: '/predict?model=nope',
    headers: { 'content-type': 'text/plain', 'x-request-id': 'lid-2' },
    payload: 'hello',
  });
  t.equal(res.statusCode, 404);
  t.same(
    lines.filter((l) => l.reqId === 'lid-2').map((l) => l.msg),
    ['request refused', 'request'],
  );
  t.match(
    lines.find((l) => l.msg === 'request refused'),
    { code: 'MUON_ERR_MODEL_NOT_FOUND' },
  );
  t.equal(children() - before, 1, 'the child is made when the request logs through it');
});

t.test('probes log at debug only', async (t) => {
  for (const level of ['info', 'debug']) {
    const { app, lines } = await appWithLog(level);
    await app.inject({ method: 'GET', url: '/v2/health/live', headers: { 'x-request-id': 'probe' } });
    t.equal(lines.filter((l) => l.reqId === 'probe').length, level === 'debug' ? 1 : 0, level);
  }
});

t.test('the lazy request logger behaves as a pino child', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  const root = pino({ level: 'info', base: { name: 'muon' } }, sink);
  const log = lazyRequestLoggers.call(null as never, root, { reqId: 'r1' }, {}, undefined as never);
  t.equal(log.level, 'info');
  t.same((log as unknown as { bindings(): object }).bindings(), { name: 'muon', reqId: 'r1' });
  log.debug('hidden');
  log.warn({ a: 1 }, 'shown');
  log.child({ step: 2 }).error('nested');
  t.match(lines, [
    { level: 40, name: 'muon', reqId: 'r1', a: 1, msg: 'shown' },
    { level: 50, name: 'muon', reqId: 'r1', step: 2, msg: 'nested' },
  ]);
  log.level = 'debug';
  log.debug('now shown');
  t.equal(lines.at(-1)?.msg, 'now shown');
  t.equal(root.level, 'info', 'the root logger keeps its level');
});
