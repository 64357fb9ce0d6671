import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { loadConfig, packageRoot } from '../../src/config.js';
import { Metrics } from '../../src/metrics.js';
import { ModelRepository } from '../../src/models/repository.js';
import { cudaProviderPath } from '../../src/models/session.js';
import { TaskWorkers } from '../../src/workers/task-workers.js';
import { metricValue } from '../helpers/app.js';

// The repository core without HTTP: states, the index, load, swap and unload, and what a caller gets for each
// state, on a repository of real models through real onnxruntime.

function repositoryOf(folders: string[]): { root: string; repository: ModelRepository; metrics: Metrics } {
  const root = mkdtempSync(path.join(tmpdir(), 'muon-repo-core-'));
  for (const f of folders) cpSync(path.join(packageRoot, 'models', f), path.join(root, f), { recursive: true });
  const config = loadConfig({
    MUON_EXECUTION_PROVIDER: 'cpu',
    MUON_MODEL_REPOSITORY: root,
    MUON_DEFAULT_MODEL: folders[0],
    MUON_TASK_THREADS: '0',
  });
  const metrics = new Metrics(false);
  return { root, metrics, repository: new ModelRepository(config, metrics, pino({ level: 'silent' })) };
}

t.test('loadAll: every folder READY, then served; a broken folder FAILED alone, with its reason', async (t) => {
  const { root, repository } = repositoryOf(['language-id', 'text-orientation']);
  mkdirSync(path.join(root, 'broken'));
  writeFileSync(path.join(root, 'broken', 'manifest.json'), '{"task": "no-such-task"}');
  t.teardown(async () => {
    await repository.close();
    rmSync(root, { recursive: true, force: true });
  });
  const failures = await repository.loadAll();
  t.same(
    failures.map((f) => f.name),
    ['broken'],
  );
  t.match(failures[0].error, /\/task must be one of: image-classification, language-id/);
  t.notOk(repository.ready, 'not ready while a folder failed');
  t.same(
    repository.list().map((s) => [s.name, s.state]),
    [
      ['broken', 'FAILED'],
      ['language-id', 'READY'],
      ['text-orientation', 'READY'],
    ],
  );
  t.notMatch(JSON.stringify(await repository.index()), root, 'the index shows no absolute paths');

  const model = repository.readyModel('language-id');
  const answer = (await model.infer(
    { kind: 'text', text: 'Der schnelle braune Fuchs springt über den faulen Hund.' },
    { deadline: performance.now() + 10_000, timeoutMs: 10_000 },
  )) as { predictions: { label: string }[] };
  t.equal(answer.predictions[0].label, 'deu', 'answers through its batcher, without HTTP');

  t.throws(() => repository.readyModel('nope'), { code: 'MUON_ERR_MODEL_NOT_FOUND' });
  t.throws(() => repository.readyModel('broken'), { code: 'MUON_ERR_MODEL_NOT_READY' });
  t.throws(() => repository.readyModel('language-id', '9'), { code: 'MUON_ERR_VERSION_NOT_FOUND' });
});

t.test('unload, then load again: UNAVAILABLE answers 503, a reload serves the folder as it now is', async (t) => {
  const { root, repository } = repositoryOf(['text-orientation']);
  t.teardown(async () => {
    await repository.close();
    rmSync(root, { recursive: true, force: true });
  });
  t.same(await repository.loadAll(), []);
  t.ok(repository.ready);
  await repository.unloadModel('text-orientation');
  t.equal(repository.status('text-orientation')?.state, 'UNAVAILABLE');
  t.throws(() => repository.readyModel('text-orientation'), { code: 'MUON_ERR_MODEL_NOT_READY' });
  t.same(repository.versions('text-orientation'), []);

  const manifest = path.join(root, 'text-orientation', 'manifest.json');
  const m = JSON.parse(readFileSync(manifest, 'utf8')) as { topK: number };
  writeFileSync(manifest, JSON.stringify({ ...m, topK: 1 }));
  const loaded = await repository.loadModel('text-orientation');
  t.equal(repository.status('text-orientation')?.state, 'READY');
  t.equal(repository.readyModel('text-orientation'), loaded);
  t.equal(loaded.manifest.topK, 1, 'the folder is read again');

  await t.rejects(repository.loadModel('nope'), { code: 'MUON_ERR_MODEL_NOT_FOUND' });
  await t.rejects(repository.unloadModel('nope'), { code: 'MUON_ERR_MODEL_NOT_FOUND' });
});

t.test(
  'a full model refuses clients at once; stage requests wait for a place, and an unload answers them first',
  async (t) => {
    const { root, repository, metrics } = repositoryOf(['language-id']);
    // every request given a place is counted in progress (a lone one is prepared inline) until it ends, whatever
    // its end; a refused one never is
    const counted = { started: 0, ended: 0 };
    const { requestStarted, requestEnded } = TaskWorkers.prototype;
    TaskWorkers.prototype.requestStarted = function () {
      counted.started++;
      requestStarted.call(this);
    };
    TaskWorkers.prototype.requestEnded = function () {
      counted.ended++;
      requestEnded.call(this);
    };
    t.teardown(async () => {
      Object.assign(TaskWorkers.prototype, { requestStarted, requestEnded });
      await repository.close();
      rmSync(root, { recursive: true, force: true });
    });
    const manifest = path.join(root, 'language-id', 'manifest.json');
    const m = JSON.parse(readFileSync(manifest, 'utf8')) as { batching: object };
    // two requests in progress at most: one computing, one queued
    writeFileSync(
      manifest,
      JSON.stringify({ ...m, batching: { ...m.batching, maxBatchSize: 1, maxQueueSize: 1, maxInFlightBatches: 1 } }),
    );
    await repository.loadAll();
    const model = repository.readyModel('language-id');
    const text = { kind: 'text' as const, text: 'Der schnelle braune Fuchs springt über den faulen Hund.' };
    const opts = (admitted: boolean) => ({ deadline: performance.now() + 10_000, timeoutMs: 10_000, admitted });
    type Answer = { predictions: { label: string }[] };

    const before = counted.started; // (loading may run a request of its own)
    const clients = await Promise.allSettled(Array.from({ length: 8 }, () => model.infer(text, opts(false))));
    const refused = clients.filter((c) => c.status === 'rejected');
    t.ok(refused.length >= 6, `${refused.length} of 8 clients refused`);
    for (const c of refused) t.match(c.reason, { code: 'MUON_ERR_QUEUE_FULL' });
    // (one given a place may still be refused by the batcher's own queue, with the same code)
    t.equal(counted.started - before, 2, 'only the two given a place were in progress, the others never');
    t.equal(counted.ended, counted.started, 'and are no longer, once answered');

    const stage = await Promise.all(Array.from({ length: 8 }, () => model.infer(text, opts(true)) as Promise<Answer>));
    t.same(
      stage.map((a) => a.predictions[0].label),
      Array(8).fill('deu'),
      'every stage request answered, in turn',
    );

    const waiting = Promise.allSettled(Array.from({ length: 8 }, () => model.infer(text, opts(true))));
    await repository.unloadModel('language-id');
    const ended = await waiting;
    t.same(
      ended.map((e) => e.status),
      Array(8).fill('fulfilled'),
      'requests handed to the version before its unload are answered by it; the unload waited for them',
    );

    await repository.loadModel('language-id');
    const late = { deadline: performance.now() - 1, timeoutMs: 5, admitted: true };
    await t.rejects(
      repository.readyModel('language-id').infer(text, late),
      { code: 'MUON_ERR_DEADLINE_EXCEEDED' },
      'a step past its deadline is not prepared',
    );
    t.equal(
      await metricValue(metrics, 'muon_requests_dropped_total', { model: 'language-id', reason: 'deadline' }),
      1,
      'and counted as dropped',
    );
    t.equal(counted.ended, counted.started, 'every request given a place, whatever its end, is no longer in progress');
  },
);

t.test('a swap that fails keeps the serving version', async (t) => {
  const { root, repository } = repositoryOf(['text-orientation']);
  t.teardown(async () => {
    await repository.close();
    rmSync(root, { recursive: true, force: true });
  });
  await repository.loadAll();
  const serving = repository.readyModel('text-orientation');
  writeFileSync(path.join(root, 'text-orientation', 'manifest.json'), '{ not json');
  await t.rejects(repository.loadModel('text-orientation'), /not valid JSON/);
  t.equal(repository.status('text-orientation')?.state, 'READY', 'still serving');
  t.equal(repository.readyModel('text-orientation'), serving, 'the same loaded version');
});

const noCuda = existsSync(cudaProviderPath()) ? 'the CUDA provider is installed here: nothing falls back' : false;
t.test(
  'without a CUDA provider, one info line names each model on the CPU and why, and no warning',
  { skip: noCuda },
  async (t) => {
    const root = mkdtempSync(path.join(tmpdir(), 'muon-repo-fallback-'));
    // voice-activity has two sessions (its file's graph and the graph its pipeline runs), text-orientation-fp32 two
    // session workers
    for (const f of ['voice-activity', 'text-orientation-fp32'])
      cpSync(path.join(packageRoot, 'models', f), path.join(root, f), { recursive: true });
    const lines: { level: number; msg?: string; [k: string]: unknown }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const config = loadConfig({
      MUON_EXECUTION_PROVIDER: 'auto',
      MUON_MODEL_REPOSITORY: root,
      MUON_DEFAULT_MODEL: 'voice-activity',
    });
    const metrics = new Metrics(false);
    const repository = new ModelRepository(config, metrics, logger);
    t.teardown(async () => {
      await repository.close();
      rmSync(root, { recursive: true, force: true });
    });
    t.same(await repository.loadAll(), []);
    t.same(
      lines.filter((l) => l.level >= 40),
      [],
      'no warning',
    );
    const providers = lines.filter((l) => l.msg === 'execution providers');
    t.equal(providers.length, 1, 'one line');
    t.match(providers[0], {
      level: 30,
      requested: 'auto',
      providers: { 'text-orientation-fp32': 'cpu', 'voice-activity': 'cpu' },
      cpuReason: /^CUDA provider not installed \(.*libonnxruntime_providers_cuda\.so is missing\)$/,
    });
    for (const model of ['text-orientation-fp32', 'voice-activity'])
      t.ok((await metricValue(metrics, 'muon_execution_provider_fallbacks_total', { model })) >= 1, `${model} counted`);
  },
);

t.test('MUON_EXECUTION_PROVIDER=cpu: the line says so, and nothing falls back', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'muon-repo-cpu-'));
  cpSync(path.join(packageRoot, 'models', 'language-id'), path.join(root, 'language-id'), { recursive: true });
  const lines: { level: number; msg?: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const config = loadConfig({ MUON_EXECUTION_PROVIDER: 'cpu', MUON_MODEL_REPOSITORY: root });
  const metrics = new Metrics(false);
  const repository = new ModelRepository(config, metrics, logger);
  t.teardown(async () => {
    await repository.close();
    rmSync(root, { recursive: true, force: true });
  });
  t.same(await repository.loadAll(), []);
  const line = lines.filter((l) => l.msg === 'execution providers');
  t.equal(line.length, 1, 'one line');
  t.match(line[0], {
    level: 30,
    requested: 'cpu',
    providers: { 'language-id': 'cpu' },
    cpuReason: 'MUON_EXECUTION_PROVIDER=cpu',
  });
  t.equal(await metricValue(metrics, 'muon_execution_provider_fallbacks_total', { model: 'language-id' }), 0);
});
