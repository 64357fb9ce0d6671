/**
 * Muon Serve benchmark: how close the server gets to what onnxruntime can do on this machine, and which
 * maxQueueDelayMs makes dynamic batching pay. Run with `npx tsx bench/serve-bench.ts [--quick]` after
 * `npm run build`; see bench/README.md for what it measures and how to read the output.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { defaults, packageRoot } from '../src/config.js';
import { configureImageDecoder } from '../src/preprocess/image.js';
import { runLoad } from './lib/load.js';
import { describeMachine } from './lib/machine.js';
import { batchingDelta, waitIdle } from './lib/metrics.js';
import { loadBenchModel, openSession, type BenchModel } from './lib/model.js';
import { benchPipeline, type PipelineResult } from './lib/pipeline.js';
import { benchRawBatch, type RawResult } from './lib/raw.js';
import { bestRaw, renderMarkdown } from './lib/report.js';
import { serverEnv, type BenchResults, type ServerConfig, type ServerMeasurement } from './lib/results.js';
import { assertBuildFresh, ServerProcess } from './lib/server.js';
import type { Budget } from './lib/timing.js';

const MODEL = 'text-orientation';
/** A real text-line crop (222 x 18), the kind of input the model is made for. */
const IMAGE = 'test/fixtures/text-lines/line-03.png';
const BATCH_SIZES = [1, 2, 4, 8, 16, 32];
const CONCURRENCIES = [1, 4, 16, 64];
const QUEUE_DELAYS_MS = [0, 1, 2, 5];
/** A 1-minute load average above this at start is reported: other work will skew the numbers. */
const BUSY_LOAD_AVERAGE = 0.5;
const RESULTS_DIR = path.join(packageRoot, 'bench', 'results');

/** How long each part runs; `--quick` shortens everything for a smoke run. */
interface Plan {
  readonly quick: boolean;
  readonly raw: Budget;
  readonly pipeline: Budget;
  readonly loadDurationS: number;
  readonly warmupS: number;
}

function makePlan(quick: boolean): Plan {
  return quick
    ? { quick, raw: { warmupIterations: 3, minIterations: 10, minMs: 500 }, pipeline: { warmupIterations: 5, minIterations: 20, minMs: 1000 }, loadDurationS: 3, warmupS: 1 }
    : { quick, raw: { warmupIterations: 10, minIterations: 30, minMs: 2000 }, pipeline: { warmupIterations: 20, minIterations: 100, minMs: 3000 }, loadDurationS: 8, warmupS: 2 };
}

/** Batching off first (the reference), then batching on at each queue delay. */
function serverConfigs(): ServerConfig[] {
  return [
    { name: 'off', batching: false },
    ...QUEUE_DELAYS_MS.map((ms) => ({ name: `delay ${ms} ms`, batching: true, maxQueueDelayMs: ms })),
  ];
}

const t0 = performance.now();
function log(message: string): void {
  process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
}

/** Parts 1 and 2: raw `session.run` by batch size, then the batch-1 pipeline, on one session opened like the server's. */
async function benchInProcess(model: BenchModel, image: Uint8Array, threads: number, plan: Plan): Promise<{ raw: RawResult[]; pipeline: PipelineResult }> {
  const session = await openSession(model, threads);
  try {
    const raw: RawResult[] = [];
    for (const size of BATCH_SIZES) {
      const r = await benchRawBatch(session, model, size, plan.raw);
      log(`raw batch ${size}: ${r.medianMs.toFixed(2)} ms median, ${r.itemsPerSec.toFixed(0)} items/s`);
      raw.push(r);
    }
    configureImageDecoder(defaults.MUON_PREPROCESS_THREADS);
    const pipeline = await benchPipeline(session, model, image, plan.pipeline);
    log(`pipeline: ${pipeline.preprocessMedianMs.toFixed(2)} + ${pipeline.runMedianMs.toFixed(2)} ms median, ${pipeline.itemsPerSec.toFixed(0)} items/s`);
    return { raw, pipeline };
  } finally {
    await session.release(); // its threads must not compete with the servers measured next
  }
}

/** Sends the image once and returns the top prediction, so the load below is known to exercise the real path. */
async function checkPrediction(server: ServerProcess, image: Buffer): Promise<string> {
  const res = await fetch(`${server.baseUrl}/predict?model=${MODEL}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: image });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST /predict answered ${res.status}: ${text}`);
  const top = (JSON.parse(text) as { predictions: { label: string; score: number }[] }).predictions[0];
  return `label ${top.label}, score ${top.score.toFixed(3)}`;
}

/** Part 3 for one configuration: start, check, warm up, then one load run per concurrency. */
async function benchServer(config: ServerConfig, image: Buffer, bestRawItemsPerSec: number, plan: Plan): Promise<{ prediction: string; runs: ServerMeasurement[] }> {
  const server = await ServerProcess.start(serverEnv(config));
  try {
    const prediction = await checkPrediction(server, image);
    const url = `${server.baseUrl}/predict?model=${MODEL}`;
    const load = (connections: number, durationS: number) => runLoad({ url, body: image, contentType: 'image/png', connections, durationS });
    await load(Math.max(...CONCURRENCIES), plan.warmupS);
    const runs: ServerMeasurement[] = [];
    for (const connections of CONCURRENCIES) {
      const before = await waitIdle(server.baseUrl, MODEL);
      const result = await load(connections, plan.loadDurationS);
      const delta = batchingDelta(before, await waitIdle(server.baseUrl, MODEL));
      const run = { config: config.name, ...result, ...delta, rpsVsBestRaw: result.rps / bestRawItemsPerSec };
      log(`${config.name}, ${connections} conns: ${run.rps.toFixed(0)} req/s, p50 ${run.latency.p50.toFixed(2)} ms, p99 ${run.latency.p99.toFixed(2)} ms, batch ${run.meanBatchSize.toFixed(2)}, non-2xx ${run.non2xx}, errors ${run.errors}`);
      runs.push(run);
    }
    return { prediction, runs };
  } finally {
    await server.stop();
  }
}

/** Writes `<date>-<host>.json` and `latest.md` (with `.quick` before the extension for quick runs). */
async function writeResults(results: BenchResults): Promise<string[]> {
  const d = new Date(results.startedAt);
  const date = [d.getFullYear(), d.getMonth() + 1, d.getDate()].map((n) => String(n).padStart(2, '0')).join('-');
  const host = results.machine.hostname.replace(/[^A-Za-z0-9.-]/g, '_');
  const suffix = results.quick ? '.quick' : '';
  const json = path.join(RESULTS_DIR, `${date}-${host}${suffix}.json`);
  const md = path.join(RESULTS_DIR, `latest${suffix}.md`);
  await mkdir(RESULTS_DIR, { recursive: true });
  await writeFile(json, JSON.stringify(results, null, 2) + '\n');
  await writeFile(md, renderMarkdown(results));
  return [json, md];
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
  const plan = makePlan(values.quick);
  assertBuildFresh();
  const startedAt = new Date().toISOString();
  const machine = describeMachine();
  const threads = os.availableParallelism(); // one model: ModelRepository gives it every core
  log(`${machine.cpuModel}, ${machine.cores} cores, Node ${machine.node}, onnxruntime-node ${machine.onnxruntimeNode}${plan.quick ? ' (quick)' : ''}`);
  if (machine.loadAverageAtStart > BUSY_LOAD_AVERAGE) log(`warning: load average ${machine.loadAverageAtStart.toFixed(2)}, the machine is not idle`);

  const model = await loadBenchModel(MODEL);
  const image = await readFile(path.join(packageRoot, IMAGE));
  const { raw, pipeline } = await benchInProcess(model, image, threads, plan);

  const configs = serverConfigs();
  const server: ServerMeasurement[] = [];
  let prediction = '';
  for (const config of configs) {
    const r = await benchServer(config, image, bestRaw(raw).itemsPerSec, plan);
    prediction = r.prediction;
    server.push(...r.runs);
  }

  const results: BenchResults = {
    startedAt,
    quick: plan.quick,
    machine,
    settings: { model: MODEL, image: IMAGE, intraOpThreads: threads, loadDurationS: plan.loadDurationS, warmupS: plan.warmupS },
    raw,
    pipeline,
    serverConfigs: configs,
    prediction,
    server,
  };
  for (const file of await writeResults(results)) log(`wrote ${path.relative(packageRoot, file)}`);
}

process.once('SIGINT', () => process.exit(130)); // runs the 'exit' hook that kills servers still running
await main();
