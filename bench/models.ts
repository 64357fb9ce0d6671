/**
 * Every default model, three ways, in one run on one machine: the raw `session.run` limit (pre-made feeds recorded
 * from the model's own pipeline on a real input, at batch 1 and at the model's largest batch where its graph stacks
 * on axis 0), the in-process pipeline limit (decode, preprocess, run, postprocess through `LoadedModel.infer`, no
 * HTTP), and the real server process over loopback at several concurrencies with batching on and off. The server's
 * default settings throughout: every model loaded, the cores split between them (intra-op threads per model).
 * Compressed defaults sit next to their fp32 originals, with the fidelity from their compression report.
 *
 * Usage: npm run build && npm run bench [-- --quick] [-- model ...]   (writes bench/results/models.{json,md} and the
 * plots; --quick: the compressed defaults only, 2 connection levels, shorter runs, results in models.quick.*)
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfig, packageRoot } from '../src/config.js';
import { Metrics } from '../src/metrics.js';
import { mediaInput, mediaKind } from '../src/models/media.js';
import { resolveFile } from '../src/models/folder.js';
import type { LoadedModel } from '../src/models/loaded-model.js';
import { threadsPerModel } from '../src/models/loader.js';
import { ModelRepository } from '../src/models/repository.js';
import { ModelSession, type HostTensor } from '../src/models/session.js';
import { batchesOnAxis0, runTensorRows, TensorRow } from '../src/models/tensors.js';
import { configureImageDecoder } from '../src/preprocess/image.js';
import { pipelineFeeds } from '../src/quantize/dataset.js';
import { poolLoad, runLoad, type LoadResult } from './lib/load.js';
import { taskInputs as inputs } from './lib/inputs.js';
import { log } from './lib/log.js';
import { describeMachine } from './lib/machine.js';
import { batchingStats, diffTotals, waitIdle } from './lib/metrics.js';
import { assertBuildFresh, ServerProcess } from './lib/server.js';
import { writePlots } from './plot.js';
import { median } from './lib/stats.js';
import { repeatTimed, type Budget } from './lib/timing.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { quick: { type: 'boolean', default: false } },
});
const quick = values.quick;
const budget: Budget = quick
  ? { warmupIterations: 3, minIterations: 5, minMs: 500 }
  : { warmupIterations: 5, minIterations: 20, minMs: 2000 };
const concurrencies = quick ? [1, 16] : [1, 4, 16, 64];
const loadS = quick ? 2 : 5;

const startedAt = new Date().toISOString();

interface InProcess {
  model: string;
  task: string;
  version: string;
  method: string;
  sizeBytes: number | null;
  fidelity: string | null;
  threads: number;
  rawBatch1Ms: number;
  rawBatch1PerSec: number;
  rawBest: { batch: number; itemsPerSec: number } | null;
  pipelineMs: number;
  pipelinePerSec: number;
  runsPerRequest: number;
}

/** What the compression report says, when the model is a compressed variant. */
function compression(m: LoadedModel): { method: string; sizeBytes: number | null; fidelity: string | null } {
  const c = m.manifest.compression;
  if (!c) return { method: 'fp32', sizeBytes: null, fidelity: null };
  return {
    method: c.method,
    sizeBytes: c.sizeBytes.after,
    fidelity: `${c.fidelity.metric} ${c.fidelity.value.toFixed(3)}`,
  };
}

async function timed(step: () => Promise<unknown>): Promise<{ ms: number; perSec: number }> {
  const r = await repeatTimed(async () => {
    const s = performance.now();
    await step();
    return [performance.now() - s];
  }, budget);
  return { ms: median(r.phases[0]), perSec: (r.iterations * 1000) / r.elapsedMs };
}

/**
 * Parts 1 and 2 for one model, in process: raw runs on a plain onnxruntime session of the same file on this thread
 * (the baseline: no worker round trip), the pipeline through the repository's own model.
 */
async function inProcess(model: LoadedModel, body: Buffer, threads: number): Promise<InProcess> {
  const where = path.join(model.dir, 'manifest.json');
  const { path: file, package: pkg } = model.manifest.model;
  const session = await ModelSession.create(resolveFile(model.dir, file, pkg, '/model', where), {
    provider: 'cpu',
    intraOpThreads: threads,
  });
  try {
    return await measure(model, session, body, threads, where);
  } finally {
    await session.release();
  }
}

async function measure(
  model: LoadedModel,
  session: ModelSession,
  body: Buffer,
  threads: number,
  where: string,
): Promise<InProcess> {
  const feeds = await pipelineFeeds(model.manifest, session, model.dir, where);
  const input = mediaInput(mediaKind(path.basename(inputs[model.task].file))!, body, inputs[model.task].file);
  const runs: Record<string, HostTensor>[] = await feeds(input, inputs[model.task].file);
  const outputs = session.outputs.map((o) => o.name);
  // raw: the feeds of the request's first run, back to back (a recording is many runs: that is the VAD's frame)
  const raw1 = await timed(() => session.run(runs[0], outputs));
  let rawBest: InProcess['rawBest'] = { batch: 1, itemsPerSec: raw1.perSec };
  // batches of 4 and 16 (and the manifest's largest) wherever the graph stacks, also where the manifest batches
  // no rows on a CPU: the table then shows why
  const stackable = session.inputs.every(batchesOnAxis0);
  if (stackable && runs[0] && Object.values(runs[0]).every((t) => t.dims[0] === 1)) {
    for (const batch of [...new Set([4, 16, model.manifest.batching.maxBatchSize].filter((b) => b > 1))]) {
      const rows = Array.from({ length: batch }, () => new TensorRow(runs[0], 1));
      const r = await timed(() => runTensorRows(session, rows));
      const itemsPerSec = r.perSec * batch;
      if (!rawBest || itemsPerSec > rawBest.itemsPerSec) rawBest = { batch, itemsPerSec };
    }
  }
  const pipeline = await timed(() => model.infer(input, { deadline: Infinity, timeoutMs: 1e9 }));
  return {
    model: model.name,
    task: model.task,
    version: model.version,
    ...compression(model),
    threads,
    rawBatch1Ms: raw1.ms,
    rawBatch1PerSec: raw1.perSec,
    rawBest,
    pipelineMs: pipeline.ms,
    pipelinePerSec: pipeline.perSec,
    runsPerRequest: runs.length,
  };
}

interface ServerRow {
  model: string;
  batching: 'on' | 'off';
  connections: number;
  result: LoadResult;
  meanBatchSize: number;
}

async function main(): Promise<void> {
  assertBuildFresh();
  const machine = describeMachine();
  log(`${machine.cpuModel}, ${machine.cores} cores, Node ${machine.node}, onnxruntime-node ${machine.onnxruntimeNode}`);
  const config = loadConfig({ MUON_EXECUTION_PROVIDER: 'cpu' });
  configureImageDecoder(config.preprocessThreads);
  const repository = new ModelRepository(config, new Metrics(false), pino({ level: 'silent' }));
  const failures = await repository.loadAll();
  if (failures.length) throw new Error(`models failed to load: ${JSON.stringify(failures)}`);
  // a quick run skips the fp32 originals (the full run compares them with the compressed defaults)
  const all = repository.list().map((s) => s.name);
  const names = positionals.length ? positionals : quick ? all.filter((n) => !n.endsWith('-fp32')) : all;
  const threads = threadsPerModel(config, repository.list().length);
  const body = (task: string) => readFileSync(path.join(packageRoot, inputs[task].file));

  const local: InProcess[] = [];
  for (const name of names) {
    const m = repository.readyModel(name);
    const r = await inProcess(m, body(m.task), threads);
    log(
      `${name}: raw ${r.rawBatch1Ms.toFixed(2)} ms (${r.rawBest ? `${r.rawBest.itemsPerSec.toFixed(0)}/s at batch ${r.rawBest.batch}` : 'batch 1 only'}), pipeline ${r.pipelineMs.toFixed(2)} ms`,
    );
    local.push(r);
  }
  await repository.close(); // its threads must not compete with the servers

  const server: ServerRow[] = [];
  for (const batching of ['on', 'off'] as const) {
    const s = await ServerProcess.start(batching === 'on' ? {} : { MUON_BATCHING: 'false' });
    try {
      // A fresh server serves its first seconds slower while V8 compiles the request path on the event loop and in
      // each worker (text-orientation at 1 connection: 450 req/s in the first 2 s, 750 after 10 s), which would fall
      // on the first model measured: every model is sent a few seconds of load first.
      const targets = names.map((name) => {
        const task = local.find((l) => l.model === name)!.task;
        return { name, task, url: `${s.baseUrl}/predict?model=${name}` };
      });
      for (const { task, url } of targets)
        await runLoad({ url, body: body(task), contentType: inputs[task].type, connections: 4, durationS: 3 });
      for (const { name, task, url } of targets) {
        await runLoad({ url, body: body(task), contentType: inputs[task].type, connections: 4, durationS: 1 });
        for (const connections of concurrencies) {
          const before = await waitIdle(s.baseUrl, name);
          const sample = await runLoad({
            url,
            body: body(task),
            contentType: inputs[task].type,
            connections,
            durationS: loadS,
          });
          const stats = batchingStats([diffTotals(before, await waitIdle(s.baseUrl, name))]);
          const result = poolLoad([sample]);
          server.push({ model: name, batching, connections, result, meanBatchSize: stats.meanBatchSize });
          log(
            `${name} batching ${batching} c=${connections}: ${result.rps.toFixed(1)} req/s, p50 ${result.latency.p50.toFixed(1)} ms, p99 ${result.latency.p99.toFixed(1)} ms, batch ${stats.meanBatchSize.toFixed(2)}, errors ${result.non2xx + result.errors}`,
          );
        }
      }
    } finally {
      await s.stop();
    }
  }

  const out = {
    startedAt,
    quick,
    machine,
    threads,
    local,
    server,
  };
  const dir = path.join(packageRoot, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const suffix = quick ? '.quick' : '';
  await writeFile(path.join(dir, `models${suffix}.json`), JSON.stringify(out, null, 2) + '\n');
  await writeFile(path.join(dir, `models${suffix}.md`), markdown(out));
  log(`wrote bench/results/models${suffix}.{json,md}`);
  if (!quick) await writePlots(path.join(dir, 'models.json'));
}

function markdown(o: {
  startedAt: string;
  quick: boolean;
  machine: ReturnType<typeof describeMachine>;
  threads: number;
  local: InProcess[];
  server: ServerRow[];
}): string {
  const f = (v: number, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : '-');
  const lines = [
    `# Every model: raw limit, pipeline limit, server${o.quick ? ' (quick run)' : ''}`,
    '',
    `${o.startedAt}, ${o.machine.cpuModel} x ${o.machine.cores}, Node ${o.machine.node}, onnxruntime-node ${o.machine.onnxruntimeNode}. ` +
      `All default models loaded, ${o.threads} intra-op thread(s) each (the server's default split). ` +
      '`npm run build && npm run bench:models`' +
      (o.quick ? ' -- --quick' : '') +
      '.',
    '',
    '## In process',
    '',
    "raw = `session.run` on feeds recorded from the model's own pipeline on a real input; pipeline = `LoadedModel.infer` (decode, preprocess, run, postprocess; no HTTP), one request at a time.",
    '',
    '| model | method | size MB | fidelity | raw batch 1 ms | raw best items/s (batch) | pipeline ms | pipeline req/s | runs per request |',
    '| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const l of o.local) {
    lines.push(
      `| ${l.model} | ${l.method} | ${l.sizeBytes ? (l.sizeBytes / 1e6).toFixed(2) : '-'} | ${l.fidelity ?? '-'} | ${f(l.rawBatch1Ms, 2)} | ${l.rawBest ? `${f(l.rawBest.itemsPerSec, 0)} (${l.rawBest.batch})` : `${f(l.rawBatch1PerSec, 0)} (1)`} | ${f(l.pipelineMs, 2)} | ${f(l.pipelinePerSec, 1)} | ${l.runsPerRequest} |`,
    );
  }
  lines.push(
    '',
    '## Server (HTTP over loopback, autocannon)',
    '',
    'ratio = server req/s / in-process pipeline req/s (one request at a time, so above 1 where batching or the second core helps).',
    '',
    '| model | batching | connections | req/s | p50 ms | p90 ms | p99 ms | mean batch | errors | ratio |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const r of o.server) {
    const l = o.local.find((x) => x.model === r.model)!;
    lines.push(
      `| ${r.model} | ${r.batching} | ${r.connections} | ${f(r.result.rps)} | ${f(r.result.latency.p50)} | ${f(r.result.latency.p90)} | ${f(r.result.latency.p99)} | ${f(r.meanBatchSize, 2)} | ${r.result.non2xx + r.result.errors} | ${f(r.result.rps / l.pipelinePerSec, 2)} |`,
    );
  }
  return lines.join('\n') + '\n';
}

process.once('SIGINT', () => process.exit(130));
await main().catch((err: unknown) => {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});
