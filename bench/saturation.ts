/**
 * Throughput at saturation against the limit of this machine (issue 13): for every default model, in one run,
 *
 * - the in-process pipeline: the repository's own model (`LoadedModel.infer`: decode, preprocess, batch, run,
 *   postprocess on the task workers and session workers) driven by `--concurrency` loops in this process, no HTTP;
 * - the server: `node dist/main.js` over loopback, at the same concurrency, the same body, from wrk where it is
 *   installed (`--client`; autocannon otherwise, which takes about a fifth of the two cores at these rates);
 * - for the tiny ones, the bare-Fastify ceiling: a Fastify server that reads the same body and sends the same
 *   answer bytes (bench/bare/fastify.mjs), and `GET /v2/health/live` on both.
 *
 * Both sides run the server's default settings (every model loaded, the cores split between them) and take turns,
 * so they see the same machine. The client runs on the same two cores as the server; the in-process
 * side has no client to pay for, so its figure is the ceiling an HTTP server could at best reach. With
 * `--baseline <worktree>` an older build (its `dist/`) is measured the same way in the same run, its in-process side
 * from its own modules, so that the ratios before and after are comparable.
 *
 * Usage: npm run build && npx tsx bench/saturation.ts [--seconds 8] [--concurrency 32] [--baseline <dir>] [--client wrk|autocannon]
 *   [--out bench/results/saturation] [model ...]
 * Writes <out>.md and <out>.json.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { packageRoot } from '../src/config.js';
import type { LoadedModel } from '../src/models/loaded-model.js';
import { runLoad } from './lib/load.js';
import { hasWrk, runWrk } from './lib/wrk.js';
import { taskInputs as inputs } from './lib/inputs.js';
import { log } from './lib/log.js';
import { describeMachine } from './lib/machine.js';
import { assertBuildFresh, freePort, ServerProcess, startCommand } from './lib/server.js';
import { median } from './lib/stats.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '32' },
    baseline: { type: 'string' },
    rounds: { type: 'string', default: '1' },
    // the load generator: wrk where it is installed (it leaves the server the CPU autocannon would take)
    client: { type: 'string' },
    // where the results go (<out>.md and <out>.json): a study beside the run of record
    out: { type: 'string', default: path.join(packageRoot, 'bench/results/saturation') },
    // internal: run the in-process side of the build at this root, print its figures as JSON, exit
    'in-process': { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);
const WARMUP_S = 2;
const client = values.client ?? (hasWrk() ? 'wrk' : 'autocannon');
if (client !== 'wrk' && client !== 'autocannon') throw new Error(`--client wrk|autocannon, got ${client}`);

/** Models whose request costs less than HTTP: the bare-Fastify ceiling applies. */
const TINY = new Set(['language-id']);

const body = (task: string) => readFileSync(path.join(packageRoot, inputs[task].file));

/** `concurrency` closed loops over `model.infer` for `s` seconds: answers per second. */
async function saturate(model: LoadedModel, input: unknown, s: number): Promise<{ rps: number; failed: number }> {
  const end = performance.now() + s * 1000;
  let done = 0;
  let failed = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        try {
          await model.infer(input as never, { deadline: Infinity, timeoutMs: 1e9 });
          done++;
        } catch {
          failed++;
        }
      }
    }),
  );
  return { rps: done / ((performance.now() - start) / 1000), failed };
}

/** The in-process side of one build, from its own compiled modules (`<root>/dist`). */
async function inProcess(
  root: string,
  names: readonly string[],
): Promise<Map<string, { rps: number; failed: number }>> {
  const load = <T>(m: string): Promise<T> => import(pathToFileURL(path.join(root, 'dist', m)).href) as Promise<T>;
  const { loadConfig } = await load<typeof import('../src/config.js')>('config.js');
  const { Metrics } = await load<typeof import('../src/metrics.js')>('metrics.js');
  const { ModelRepository } = await load<typeof import('../src/models/repository.js')>('models/repository.js');
  const { configureImageDecoder } = await load<typeof import('../src/preprocess/image.js')>('preprocess/image.js');
  const { mediaInput, mediaKind } = await load<typeof import('../src/models/media.js')>('models/media.js');
  const config = loadConfig({ MUON_EXECUTION_PROVIDER: 'cpu', MUON_MODEL_REPOSITORY: path.join(root, 'models') });
  configureImageDecoder(config.preprocessThreads);
  const repository = new ModelRepository(config, new Metrics(false), pino({ level: 'silent' }));
  const out = new Map<string, { rps: number; failed: number }>();
  try {
    await repository.loadAll();
    for (const name of names) {
      const model = repository.readyModel(name) as unknown as LoadedModel;
      const { file } = inputs[model.task];
      const input = mediaInput(mediaKind(path.basename(file))!, body(model.task), file);
      await saturate(model, input, WARMUP_S);
      out.set(name, await saturate(model, input, seconds));
      log(`in process ${name}: ${out.get(name)!.rps.toFixed(1)} req/s`);
    }
  } finally {
    await repository.close();
  }
  return out;
}

/**
 * The in-process side in a child process started with the build's own `npm start` flags and environment (the old generation's
 * size changes how often external memory triggers a full collection), so that it runs as its server would.
 */
async function inProcessChild(
  root: string,
  names: readonly string[],
): Promise<Map<string, { rps: number; failed: number }>> {
  const start = startCommand(path.join(root, 'dist', 'main.js'));
  const args = [...start.flags, '--import', 'tsx', fileURLToPath(import.meta.url)];
  const child = spawn(process.execPath, [...args, ...passed, '--in-process', root, ...names], {
    cwd: packageRoot,
    env: { ...process.env, ...start.env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`the in-process side of ${root} exited with ${code}`);
  return new Map(JSON.parse(out.trim().split('\n').at(-1)!) as [string, { rps: number; failed: number }][]);
}

interface HttpFigure {
  rps: number;
  non2xx: number;
  errors: number;
}

async function load(url: string, task: string | undefined): Promise<HttpFigure> {
  const opts = task
    ? { url, body: body(task), contentType: inputs[task].type }
    : { url, method: 'GET' as const, body: Buffer.alloc(0), contentType: '' };
  if (client === 'wrk') {
    await runWrk({ ...opts, connections: concurrency, durationS: WARMUP_S });
    return runWrk({ ...opts, connections: concurrency, durationS: seconds });
  }
  await runLoad({ ...opts, connections: concurrency, durationS: WARMUP_S });
  const s = await runLoad({ ...opts, connections: concurrency, durationS: seconds });
  return { rps: s.latencies.length / s.durationS, non2xx: s.non2xx, errors: s.errors };
}

/** The server side of one build: every model at saturation, then `GET /v2/health/live`; and the tiny answers. */
async function served(root: string, names: readonly string[]) {
  const server = await ServerProcess.start({}, path.join(root, 'dist', 'main.js'));
  const rps = new Map<string, HttpFigure>();
  const tasks = new Map<string, string>();
  const answers = new Map<string, string>();
  try {
    const index = (await (await fetch(`${server.baseUrl}/v1/models`)).json()) as {
      models: { name: string; task: string }[];
    };
    for (const m of index.models) tasks.set(m.name, m.task);
    for (const name of names) {
      const task = tasks.get(name)!;
      const url = `${server.baseUrl}/predict?model=${name}`;
      if (TINY.has(task)) {
        const r = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': inputs[task].type },
          body: body(task),
        });
        answers.set(name, await r.text());
      }
      rps.set(name, await load(url, task));
      log(`server ${name}: ${rps.get(name)!.rps.toFixed(1)} req/s`);
    }
    return { rps, tasks, answers, live: await load(`${server.baseUrl}/v2/health/live`, undefined) };
  } finally {
    await server.stop();
  }
}

/** The bare-Fastify ceiling for `answer`: POST /predict and GET /v2/health/live. */
async function bare(answer: string, task: string): Promise<{ predict: HttpFigure; live: HttpFigure }> {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(packageRoot, 'bench/bare/fastify.mjs')], {
    env: { ...process.env, PORT: String(port), BARE_ANSWER: answer },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  try {
    const base = `http://127.0.0.1:${port}`;
    const up = () =>
      fetch(`${base}/v2/health/live`).then(
        (r) => r.ok,
        () => false,
      );
    for (let i = 0; i < 100 && !(await up()); i++) await new Promise((r) => setTimeout(r, 100));
    return { predict: await load(`${base}/predict`, task), live: await load(`${base}/v2/health/live`, undefined) };
  } finally {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
}

const names = positionals.length
  ? positionals
  : readdirSync(path.join(packageRoot, 'models'), { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
const passed = ['--seconds', String(seconds), '--concurrency', String(concurrency), '--client', client];
if (values['in-process']) {
  console.log(JSON.stringify([...(await inProcess(values['in-process'], names))]));
  process.exit(0);
}

assertBuildFresh();
const startedAt = new Date().toISOString();
const rounds = Number(values.rounds);
const commitOf = (dir: string) => execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD']).toString().trim();
const builds = [
  { label: `this build (${commitOf(packageRoot)})`, root: packageRoot },
  ...(values.baseline ? [{ label: `baseline (${commitOf(values.baseline)})`, root: values.baseline }] : []),
];

type Round = { pipeline: Map<string, { rps: number; failed: number }>; server: Awaited<ReturnType<typeof served>> };
const runs = new Map<string, Round[]>(builds.map((b) => [b.label, []]));
for (let round = 1; round <= rounds; round++) {
  for (const build of builds) {
    log(`round ${round}, ${build.label}: in process`);
    const pipeline = await inProcessChild(build.root, names);
    log(`round ${round}, ${build.label}: server`);
    runs.get(build.label)!.push({ pipeline, server: await served(build.root, names) });
  }
}
/** The median over the rounds of each build: pipeline and server figures per model, and liveness. */
const measured = builds.map((b) => {
  const rs = runs.get(b.label)!;
  const mid = (f: (r: Round) => number) => median(rs.map(f));
  const byModel = <T>(f: (name: string) => T) => new Map(names.map((n) => [n, f(n)]));
  return {
    ...b,
    pipeline: byModel((n) => ({
      rps: mid((r) => r.pipeline.get(n)!.rps),
      failed: mid((r) => r.pipeline.get(n)!.failed),
    })),
    server: {
      ...rs[0].server,
      rps: byModel((n) => ({
        rps: mid((r) => r.server.rps.get(n)!.rps),
        non2xx: rs.reduce((sum, r) => sum + r.server.rps.get(n)!.non2xx, 0),
        errors: rs.reduce((sum, r) => sum + r.server.rps.get(n)!.errors, 0),
      })),
      live: { rps: mid((r) => r.server.live.rps), non2xx: 0, errors: 0 },
    },
  };
});
const { tasks, answers } = measured[0].server;
const ceilings = new Map<string, { predict: HttpFigure; live: HttpFigure }>();
for (const [name, answer] of answers) {
  ceilings.set(name, await bare(answer, tasks.get(name)!));
  log(`bare fastify for ${name}: ${ceilings.get(name)!.predict.rps.toFixed(0)} req/s`);
}

const machine = describeMachine();
const rows = measured.flatMap((b) =>
  names.map((name) => {
    const p = b.pipeline.get(name)!;
    const s = b.server.rps.get(name)!;
    const c = ceilings.get(name);
    return {
      build: b.label,
      model: name,
      task: tasks.get(name),
      pipelineRps: p.rps,
      pipelineFailed: p.failed,
      serverRps: s.rps,
      serverNon2xx: s.non2xx,
      serverErrors: s.errors,
      ratio: s.rps / p.rps,
      bareFastifyRps: c?.predict.rps,
      ratioToBare: c ? s.rps / c.predict.rps : undefined,
      // one main thread does both the HTTP and the pipeline's share: the most it could serve
      combinedLimitRps: c ? 1 / (1 / c.predict.rps + 1 / p.rps) : undefined,
    };
  }),
);
const bareLive = [...ceilings.values()][0]?.live;
const f = (n: number | undefined, d = 1) => (n === undefined ? '-' : n.toFixed(d));
const md = [
  '# Throughput at saturation against the limit of this machine',
  '',
  `${startedAt}, ${machine.cpuModel} x ${machine.cores}, Node ${process.version}. Every default model loaded with the` +
    ` server's default settings; ${concurrency} concurrent requests, ${seconds} s measured after ${WARMUP_S} s of` +
    ` warm-up, builds in turns, the median of ${rounds} round(s).` +
    ` \`npm run build && npx tsx bench/saturation.ts --seconds ${seconds} --concurrency ${concurrency} --rounds ${rounds}` +
    ` --client ${client}` +
    (values.baseline ? ' --baseline <worktree>' : '') +
    (positionals.length ? ` ${positionals.join(' ')}` : '') +
    '`.',
  '',
  'in process = `LoadedModel.infer` in a loop on every concurrent slot, no HTTP (the machine limit for the pipeline);' +
    ` server = the same body over loopback from ${client}, which shares the two cores; bare Fastify = a Fastify` +
    ' server that reads the same body and sends the same answer bytes (the HTTP ceiling); combined = one thread doing' +
    ' both, 1 / (1 / bare Fastify + 1 / in process).',
  '',
  '| build | model | task | in process req/s | server req/s | server / in process | bare Fastify req/s | combined req/s | server / combined | non-2xx |',
  '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.build} | ${r.model} | ${r.task} | ${f(r.pipelineRps)} | ${f(r.serverRps)} | ${f(r.ratio, 2)} | ${f(r.bareFastifyRps, 0)} | ${f(r.combinedLimitRps, 0)} | ${r.combinedLimitRps ? f(r.serverRps / r.combinedLimitRps, 2) : '-'} | ${r.serverNon2xx + r.serverErrors} |`,
  ),
  '',
  ...measured.map(
    (b) =>
      `\`GET /v2/health/live\`, ${b.label}: ${f(b.server.live.rps, 0)} req/s` +
      (bareLive ? ` (${f(b.server.live.rps / bareLive.rps, 2)} of bare Fastify's ${f(bareLive.rps, 0)})` : '') +
      '.',
  ),
  '',
];
await writeFile(`${values.out}.md`, md.join('\n'));
await writeFile(
  `${values.out}.json`,
  JSON.stringify(
    {
      startedAt,
      machine,
      concurrency,
      seconds,
      rows,
      live: measured.map((b) => ({ build: b.label, rps: b.server.live.rps })),
      bareLive,
    },
    null,
    2,
  ) + '\n',
);
console.log(md.join('\n'));
