import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { Metrics } from '../../src/metrics.js';
import { ModelRepository } from '../../src/models/repository.js';
import { buildApp } from '../../src/server/app.js';
import { LoopWatchdog } from '../../src/server/loop-watchdog.js';
import { metricValue, startApp } from '../helpers/app.js';

// A process that wedges is restarted: liveness fails after its event loop was blocked longer than the limit.

t.test('LoopWatchdog reports a block over the limit for its window', async (t) => {
  let now = 0;
  const dog = new LoopWatchdog(1000, 60_000, 10, () => now);
  t.teardown(() => dog.stop());
  const tick = () => new Promise((r) => setTimeout(r, 30));
  now = 500; // a late tick, under the limit
  await tick();
  t.equal(dog.stalled(), undefined);
  now += 3000; // blocked about 3 s
  await tick();
  t.same(dog.stalled(), { blockedMs: 2990, agoMs: 0 });
  now += 59_000;
  t.match(dog.stalled(), { blockedMs: 2990 });
  now += 2000; // past the window
  t.equal(dog.stalled(), undefined);
});

t.test('liveness answers 503 with the reason after a long block, 200 before', async (t) => {
  const ctx = await startApp({ MUON_LIVENESS_MAX_BLOCK_MS: '300' });
  t.teardown(() => ctx.close());
  const live = () => ctx.app.inject({ url: '/v2/health/live' });
  t.equal((await live()).statusCode, 200);
  await new Promise((r) => setTimeout(r, 250)); // a tick or two first
  const end = performance.now() + 800;
  while (performance.now() < end); // a wedged loop
  await new Promise((r) => setTimeout(r, 250)); // the watchdog's next tick sees it
  const res = await live();
  t.equal(res.statusCode, 503);
  t.equal(res.json().live, false);
  t.match(res.json().reason, /the event loop was blocked \d+ ms \(limit 300 ms\)/);
});

// A model whose session workers die: an input that kills workers is refused after its second death without taking
// the model down; a model that breaks anyway is reloaded from its folder in the background.
t.test('poisoned inputs and a broken model', async (t) => {
  const root = path.resolve(import.meta.dirname, '../..');
  const repo = mkdtempSync(path.join(tmpdir(), 'muon-heal-'));
  t.teardown(() => rmSync(repo, { recursive: true, force: true }));
  cpSync(path.join(root, 'models/text-orientation'), path.join(repo, 'text-orientation'), { recursive: true });
  const config = loadConfig({
    MUON_EXECUTION_PROVIDER: 'cpu',
    MUON_MODEL_REPOSITORY: repo,
    MUON_RELOAD_BACKOFF_MS: '300',
  });
  const metrics = new Metrics(false);
  const logger = pino({ level: 'silent' });
  // the real worker, except that a run whose first value is 666 kills its thread
  const workerEntry = new URL('../helpers/crashing-session-worker.ts', import.meta.url);
  const repository = new ModelRepository(config, metrics, logger, { workerEntry });
  t.same(await repository.loadAll(), []);
  const app = buildApp({ config, metrics, repository, logger });
  t.teardown(async () => {
    await app.close();
    await repository.close();
  });
  const infer = (first: number, second = 0) => {
    const data = new Array<number>(3 * 48 * 192).fill(0);
    data[0] = first;
    data[1] = second;
    return app.inject({
      method: 'POST',
      url: '/v2/models/text-orientation/infer',
      payload: { inputs: [{ name: 'x', shape: [1, 3, 48, 192], datatype: 'FP32', data }] },
    });
  };
  const restarts = () => metricValue(metrics, 'muon_session_restarts_total', { model: 'text-orientation' });

  // the same poisoned input, again and again: two deaths, then refused without running; the model keeps serving
  for (let i = 0; i < 5; i++) {
    const res = await infer(666);
    t.equal(res.statusCode, 500, `poisoned request ${i + 1}`);
    t.equal(res.json().code, 'MUON_ERR_INFERENCE_FAILED');
  }
  t.equal(await restarts(), 2, 'only two workers died');
  t.equal((await infer(0.5)).statusCode, 200, 'the model still serves');
  t.equal((await app.inject({ url: '/v2/health/ready' })).statusCode, 200);

  // four different inputs that each kill a worker: the model breaks, and comes back on its own
  for (let k = 1; k <= 4; k++) t.equal((await infer(666, k)).statusCode, 500);
  t.equal((await app.inject({ url: '/v2/health/ready' })).statusCode, 503, 'broken: not ready');
  const failed = (await app.inject({ url: '/v1/models/text-orientation' })).json();
  t.match(failed, { state: 'FAILED', reason: /replacements in a row died too/, reload: { attempts: 0 } });
  // what the MuonModelNotReady alert reads (deploy/prometheus): 1 for the state the model is in, 0 for the others
  const modelState = (state: string) => metricValue(metrics, 'muon_model_state', { model: 'text-orientation', state });
  t.same([await modelState('FAILED'), await modelState('READY')], [1, 0], 'muon_model_state says FAILED');
  t.equal(await metricValue(metrics, 'muon_queue_capacity', { model: 'text-orientation' }), 0, 'no queue while broken');
  let state = failed.state;
  for (let i = 0; i < 100 && state !== 'READY'; i++) {
    await new Promise((r) => setTimeout(r, 200));
    state = (await app.inject({ url: '/v1/models/text-orientation' })).json().state;
  }
  t.equal(state, 'READY', 'reloaded in the background');
  t.same([await modelState('FAILED'), await modelState('READY')], [0, 1], 'muon_model_state says READY again');
  t.ok((await metricValue(metrics, 'muon_queue_capacity', { model: 'text-orientation' })) > 0, 'its queue is back');
  t.equal(await metricValue(metrics, 'muon_model_reloads_total', { model: 'text-orientation', outcome: 'ready' }), 1);
  t.equal((await infer(0.5)).statusCode, 200, 'and serving');
  t.equal((await app.inject({ url: '/v2/health/ready' })).statusCode, 200);
});
