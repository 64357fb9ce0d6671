/**
 * A lone client against the server (issue 13's "a lone request at least as fast as the Python servers"): one
 * model (text-orientation-fp32, a 222 x 18 PNG text line, as bench/peer.ts), 1 connection and 16, this build
 * against a baseline build of an older commit, in turns, so that both see the same machine. Usage:
 *
 *   git worktree add /tmp/muon-baseline <commit> && ln -s $PWD/node_modules /tmp/muon-baseline/node_modules
 *   (cd /tmp/muon-baseline && npx tsc -p tsconfig.build.json)
 *   npm run build && npx tsx bench/lone-request.ts --baseline /tmp/muon-baseline [--seconds 10] [--rounds 3]
 *
 * Writes bench/results/lone-request.md and .json.
 */
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../src/config.js';
import { poolLoad, runLoad, type LoadResult, type LoadSample } from './lib/load.js';
import { describeMachine } from './lib/machine.js';
import { assertBuildFresh, ServerProcess } from './lib/server.js';

const { values } = parseArgs({
  options: {
    baseline: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
assertBuildFresh();

const MODEL = 'text-orientation-fp32';
const IMAGE = 'test/fixtures/text-lines/line-03.png';
const body = await readFile(path.join(packageRoot, IMAGE));
const repo = await mkdtemp(path.join(os.tmpdir(), 'muon-lone-'));
await cp(path.join(packageRoot, 'models', MODEL), path.join(repo, MODEL), { recursive: true });
const env = {
  MUON_MODEL_REPOSITORY: repo,
  MUON_DEFAULT_MODEL: MODEL,
  MUON_INTRA_OP_THREADS: String(os.availableParallelism()),
};
const commitOf = (dir: string) => execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD']).toString().trim();
const builds = [
  { name: `this build (${commitOf(packageRoot)})`, main: path.join(packageRoot, 'dist', 'main.js') },
  ...(values.baseline
    ? [{ name: `baseline (${commitOf(values.baseline)})`, main: path.join(values.baseline, 'dist', 'main.js') }]
    : []),
];
const concurrencies = [1, 16];
const samples = new Map<string, LoadSample[]>();
for (let r = 0; r < rounds; r++) {
  for (const build of builds) {
    const server = await ServerProcess.start(env, build.main);
    try {
      const url = `${server.baseUrl}/predict`;
      await runLoad({ url, body, contentType: 'image/png', connections: 1, durationS: 2 }); // warm-up
      for (const connections of concurrencies) {
        process.stderr.write(`round ${r + 1}/${rounds}: ${build.name}, ${connections} connection(s)\n`);
        const s = await runLoad({ url, body, contentType: 'image/png', connections, durationS: seconds });
        const key = `${build.name}|${connections}`;
        samples.set(key, [...(samples.get(key) ?? []), s]);
      }
    } finally {
      await server.stop();
    }
  }
}
await rm(repo, { recursive: true, force: true });

const results: { build: string; result: LoadResult }[] = [...samples].map(([key, s]) => ({
  build: key.split('|')[0],
  result: poolLoad(s),
}));
const machine = describeMachine();
const md = [
  '# A lone request: this build against a baseline',
  '',
  `${new Date().toISOString()}, ${machine.cpuModel} x ${machine.cores}, Node ${machine.node}. ` +
    `\`npx tsx bench/lone-request.ts${values.baseline ? ' --baseline <worktree>' : ''} --seconds ${seconds} --rounds ${rounds}\`: ` +
    `\`${MODEL}\` alone, \`${IMAGE}\` POSTed to /predict by autocannon, ${rounds} rounds of ${seconds} s per build ` +
    'and concurrency, builds taking turns.',
  '',
  '| build | connections | req/s | p50 ms | p99 ms | non-2xx |',
  '|---|---:|---:|---:|---:|---:|',
  ...results.map(
    ({ build, result: r }) =>
      `| ${build} | ${r.connections} | ${r.rps.toFixed(0)} | ${r.latency.p50.toFixed(2)} | ${r.latency.p99.toFixed(2)} | ${r.non2xx + r.errors} |`,
  ),
  '',
].join('\n');
const out = path.join(packageRoot, 'bench/results/lone-request');
await writeFile(`${out}.md`, md);
await writeFile(`${out}.json`, JSON.stringify({ machine, seconds, rounds, results }, null, 2) + '\n');
process.stdout.write(md);
