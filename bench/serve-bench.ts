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
import { poolLoad, runLoad, type LoadSample } from './lib/load.js';
import { log } from './lib/log.js';
import { describeMachine } from './lib/machine.js';
import { batchingStats, diffTotals, waitIdle, type BatchTotals } from './lib/metrics.js';
import { loadBenchModel, openSession, type BenchModel } from './lib/model.js';
import { benchPipeline, type PipelineResult } from './lib/pipeline.js';
import { disturbance, measureQuietly, type QuietOptions, type Watched } from './lib/quiet.js';
import { rawResult, timeRawBatch, type RawResult } from './lib/raw.js';
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
/** Measurements during which other processes used more than a tenth of a core are made again, twice at most. */
const QUIET: Omit<QuietOptions, 'log'> = { maxOthersPct: 10, attempts: 3, maxWaitMs: 120_000 };
const RESULTS_DIR = path.join(packageRoot, 'bench', 'results');

/** How long each part runs; `--quick` shortens everything for a smoke run. Budgets and durations are per round. */
interface Plan {
  readonly quick: boolean;
  readonly rounds: number;
  readonly raw: Budget;
  readonly pipeline: Budget;
  readonly loadDurationS: number;
  readonly warmupS: number;
}

function makePlan(quick: boolean): Plan {
  return quick
    ? {
        quick,
        rounds: 1,
        raw: { warmupIterations: 3, minIterations: 10, minMs: 500 },
        pipeline: { warmupIterations: 5, minIterations: 20, minMs: 1000 },
        loadDurationS: 3,
        warmupS: 1,
      }
    : {
        quick,
        rounds: 2,
        raw: { warmupIterations: 5, minIterations: 15, minMs: 1000 },
        pipeline: { warmupIterations: 20, minIterations: 100, minMs: 3000 },
        loadDurationS: 4,
        warmupS: 2,
      };
}

/** Batching off (the reference), then batching on at each queue delay. */
function serverConfigs(): ServerConfig[] {
  return [
    { name: 'off', batching: false },
    ...QUEUE_DELAYS_MS.map((ms) => ({ name: `delay ${ms} ms`, batching: true, maxQueueDelayMs: ms })),
  ];
}

const quiet: QuietOptions = { ...QUIET, log };

/**
 * Measures every item once per round, in alternating order (A B C, then C B A, ...), so that the machine getting
 * faster or slower during the run (a shared host does) touches every item alike. Returns each item's measurements.
 */
async function interleave<K, S>(items: readonly K[], rounds: number, measure: (item: K) => Promise<S>): Promise<S[][]> {
  const slices: S[][] = items.map(() => []);
  for (let round = 0; round < rounds; round++) {
    const order = items.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    for (const i of order) slices[i].push(await measure(items[i]));
  }
  return slices;
}

/** Parts 1 and 2: raw `session.run` by batch size, then the batch-1 pipeline, on one session opened like the server's. */
async function benchInProcess(
  model: BenchModel,
  image: Uint8Array,
  threads: number,
  plan: Plan,
): Promise<{ raw: Watched<RawResult>[]; pipeline: Watched<PipelineResult> }> {
  const session = await openSession(model, threads);
  try {
    const slices = await interleave(BATCH_SIZES, plan.rounds, (size) =>
      measureQuietly(`raw batch ${size}`, [process.pid], () => timeRawBatch(session, model, size, plan.raw), quiet),
    );
    const raw = BATCH_SIZES.map((size, i) => ({ ...rawResult(size, slices[i]), ...disturbance(slices[i]) }));
    for (const r of raw)
      log(`raw batch ${r.batchSize}: ${r.medianMs.toFixed(2)} ms median, ${r.itemsPerSec.toFixed(0)} items/s`);
    configureImageDecoder(defaults.MUON_PREPROCESS_THREADS);
    const pipeline = await measureQuietly(
      'pipeline',
      [process.pid],
      () => benchPipeline(session, model, image, plan.pipeline),
      quiet,
    );
    log(
      `pipeline: ${pipeline.preprocessMedianMs.toFixed(2)} + ${pipeline.runMedianMs.toFixed(2)} ms median, ${pipeline.itemsPerSec.toFixed(0)} items/s`,
    );
    return { raw, pipeline };
  } finally {
    await session.release(); // its threads must not compete with the servers measured next
  }
}

/** A server under test and the configuration it runs. */
interface Subject {
  readonly config: ServerConfig;
  readonly server: ServerProcess;
}

/** One load run on one server: the client's numbers and the server's batching counters over it. */
interface ServerSlice {
  readonly load: LoadSample;
  readonly batching: BatchTotals;
}

function loadServer(server: ServerProcess, image: Buffer, connections: number, durationS: number): Promise<LoadSample> {
  return runLoad({
    url: `${server.baseUrl}/predict?model=${MODEL}`,
    body: image,
    contentType: 'image/png',
    connections,
    durationS,
  });
}

/** Sends the image once and returns the top prediction, so the load is known to exercise the real path. */
async function checkPrediction(server: ServerProcess, image: Buffer): Promise<string> {
  const res = await fetch(`${server.baseUrl}/predict?model=${MODEL}`, {
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body: image,
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST /predict answered ${res.status}: ${text}`);
  const top = (JSON.parse(text) as { predictions: { label: string; score: number }[] }).predictions[0];
  return `label ${top.label}, score ${top.score.toFixed(3)}`;
}

/**
 * Starts one server per configuration, all kept running so their measurements can be interleaved (an idle server
 * costs no CPU); checks each answers correctly and warms it up. Stops those already started if one fails.
 */
async function startServers(
  configs: readonly ServerConfig[],
  image: Buffer,
  plan: Plan,
): Promise<{ subjects: Subject[]; prediction: string }> {
  const subjects: Subject[] = [];
  let prediction = '';
  try {
    for (const config of configs) {
      const server = await ServerProcess.start(serverEnv(config));
      subjects.push({ config, server });
      prediction = await checkPrediction(server, image);
      await loadServer(server, image, Math.max(...CONCURRENCIES), plan.warmupS);
      log(`server ${config.name} ready on ${server.baseUrl}: ${prediction}`);
    }
  } catch (err) {
    await Promise.all(subjects.map((s) => s.server.stop()));
    throw err;
  }
  return { subjects, prediction };
}

async function measureServer(
  { server }: Subject,
  image: Buffer,
  connections: number,
  plan: Plan,
): Promise<ServerSlice> {
  const before = await waitIdle(server.baseUrl, MODEL);
  const load = await loadServer(server, image, connections, plan.loadDurationS);
  return { load, batching: diffTotals(before, await waitIdle(server.baseUrl, MODEL)) };
}

/** Pools one configuration's load runs at one concurrency into a table row. */
function serverMeasurement(
  config: ServerConfig,
  slices: readonly Watched<ServerSlice>[],
  bestRawItemsPerSec: number,
): ServerMeasurement {
  const load = poolLoad(slices.map((s) => s.load));
  const batching = batchingStats(slices.map((s) => s.batching));
  return {
    config: config.name,
    ...load,
    ...batching,
    rpsVsBestRaw: load.rps / bestRawItemsPerSec,
    ...disturbance(slices),
  };
}

/** Part 3: every configuration at every concurrency, configurations interleaved within each concurrency. */
async function benchServers(
  configs: readonly ServerConfig[],
  image: Buffer,
  bestRawItemsPerSec: number,
  plan: Plan,
): Promise<{ prediction: string; server: ServerMeasurement[] }> {
  const { subjects, prediction } = await startServers(configs, image, plan);
  try {
    const rows: ServerMeasurement[][] = subjects.map(() => []);
    for (const connections of CONCURRENCIES) {
      const slices = await interleave(subjects, plan.rounds, (s) =>
        measureQuietly(
          `${s.config.name}, ${connections} conns`,
          [process.pid, s.server.pid],
          () => measureServer(s, image, connections, plan),
          quiet,
        ),
      );
      subjects.forEach(({ config }, i) => {
        const m = serverMeasurement(config, slices[i], bestRawItemsPerSec);
        log(
          `${config.name}, ${connections} conns: ${m.rps.toFixed(0)} req/s, p50 ${m.latency.p50.toFixed(2)} ms, p99 ${m.latency.p99.toFixed(2)} ms, batch ${m.meanBatchSize.toFixed(2)}, non-2xx ${m.non2xx}, errors ${m.errors}`,
        );
        rows[i].push(m);
      });
    }
    return { prediction, server: rows.flat() };
  } finally {
    await Promise.all(subjects.map((s) => s.server.stop()));
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
  log(
    `${machine.cpuModel}, ${machine.cores} cores, Node ${machine.node}, onnxruntime-node ${machine.onnxruntimeNode}${plan.quick ? ' (quick)' : ''}`,
  );
  if (machine.loadAverageAtStart > BUSY_LOAD_AVERAGE)
    log(`warning: load average ${machine.loadAverageAtStart.toFixed(2)}, the machine is not idle`);

  const model = await loadBenchModel(MODEL);
  const image = await readFile(path.join(packageRoot, IMAGE));
  const { raw, pipeline } = await benchInProcess(model, image, threads, plan);
  const configs = serverConfigs();
  const { prediction, server } = await benchServers(configs, image, bestRaw(raw).itemsPerSec, plan);

  const results: BenchResults = {
    startedAt,
    quick: plan.quick,
    machine,
    settings: {
      model: MODEL,
      image: IMAGE,
      intraOpThreads: threads,
      rounds: plan.rounds,
      loadDurationS: plan.loadDurationS,
      warmupS: plan.warmupS,
      maxOthersPct: QUIET.maxOthersPct,
      attempts: QUIET.attempts,
    },
    raw,
    pipeline,
    serverConfigs: configs,
    prediction,
    server,
  };
  for (const file of await writeResults(results)) log(`wrote ${path.relative(packageRoot, file)}`);
}

process.once('SIGINT', () => process.exit(130)); // runs the 'exit' hook that kills servers still running
await main().catch((err: unknown) => {
  log(`failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
