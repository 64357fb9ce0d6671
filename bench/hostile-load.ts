/**
 * Hostile load (issue 11): ordinary traffic alone, then the same traffic next to the attack mix a review used to
 * take the server down: one output asked for 60 times, 12 pages of 6300x6300, 12 ten-minute WAVs at 1 kHz, 40
 * connections each sending most of an 8 MiB body and stalling, data nested 10,000 deep. Records the server's RSS
 * peak, event-loop lag (p99, max), the worst /v2/health/live latency, the ordinary requests' goodput against their
 * goodput alone, and every status code. Usage: npm run build && npx tsx bench/hostile-load.ts [--seconds 30] [--rounds 3]
 * [--budget-mib 1024] (writes bench/results/hostile-load.md and .json).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { packageRoot } from '../src/config.js';
import { wavFile } from '../test/helpers/wav.js';
import { post as httpPost } from './lib/http.js';
import { describeMachine, rssMib } from './lib/machine.js';
import { LivenessProber } from './lib/liveness.js';
import { lagBeyondSampling } from './lib/metrics.js';
import { assertBuildFresh, ServerProcess } from './lib/server.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '30' },
    // the seconds of each condition are split into this many slices, alone and attacked taking turns, so that a
    // noisy neighbour or the JIT's warm-up weighs on both alike
    rounds: { type: 'string', default: '3' },
    'budget-mib': { type: 'string', default: '1024' },
    // a comma-separated subset of the attack, to see what each part costs (the committed results use all of it)
    only: { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const budgetMib = Number(values['budget-mib']);
const only = values.only?.split(',');
const on = (kind: string) => only === undefined || only.includes(kind);

assertBuildFresh();
const machine = describeMachine();

// --- the requests ---
const line = readFileSync(path.join(packageRoot, 'test/fixtures/text-lines/line-03.png'));
const page = await sharp({ create: { width: 6300, height: 6300, channels: 3, background: '#f4f4f4' } })
  .png({ compressionLevel: 9 })
  .toBuffer();
// ten minutes at 1 kHz, 8-bit: 600 KB that decode to 2.4 MB of samples and resample to 38 MB
const longWav = wavFile({ tag: 1, channels: 1, sampleRate: 1000, bits: 8 }, Buffer.alloc(599_900, 128));
const dupOutputs = JSON.stringify({
  inputs: [{ name: 'x', shape: [1, 3, 48, 320], datatype: 'FP32', data: new Array(3 * 48 * 320).fill(0) }],
  outputs: Array.from({ length: 60 }, () => ({ name: 'softmax_11.tmp_0' })),
});
const deep = `{"inputs":[{"name":"x","shape":[1,3,48,320],"datatype":"FP32","data":${'['.repeat(10_000)}0${']'.repeat(10_000)}}]}`;

type Kind = 'ordinary' | 'dup-outputs' | 'large-page' | 'long-wav' | 'deep-json' | 'stalled-body';
const status = new Map<Kind, Map<number, number>>();
const count = (kind: Kind, code: number) => {
  const m = status.get(kind) ?? new Map<number, number>();
  m.set(code, (m.get(code) ?? 0) + 1);
  status.set(kind, m);
};

/** Clients that send one request after another until `until`. */
async function loop(kind: Kind, clients: number, until: () => boolean, send: () => Promise<number>) {
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (!until()) count(kind, await send().catch(() => 0));
    }),
  );
}

/** A connection that sends most of an 8 MiB body and stalls until the server closes it; then another. */
async function stalled(port: number, until: () => boolean) {
  while (!until()) {
    await new Promise<void>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(
          `POST /predict?model=text-orientation HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: ${8 * 2 ** 20}\r\n\r\n`,
        );
        socket.write(Buffer.alloc(8 * 2 ** 20 - 1024));
      });
      let answer = '';
      socket.on('data', (d) => (answer += d.toString()));
      const stop = setInterval(() => until() && socket.destroy(), 200);
      socket.on('close', () => {
        clearInterval(stop);
        count('stalled-body', Number(/^HTTP\/1\.1 (\d+)/.exec(answer)?.[1] ?? 0));
        resolve();
      });
      socket.on('error', () => {});
    });
  }
}

const server = await ServerProcess.start({ MUON_MEMORY_BUDGET_BYTES: String(budgetMib * 2 ** 20) });
const base = server.baseUrl;
const port = Number(new URL(base).port);
const post = (url: string, type: string, body: Buffer | string) => httpPost(`${base}${url}`, type, body);
const ordinary = () => post('/predict?model=text-orientation', 'image/png', line);
// one prober for the whole run, warm when a phase starts (a fresh one's first probe took up to 200 ms: see its class)
const prober = await LivenessProber.start(base);

async function lag(): Promise<{ p99: number; max: number }> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const v = (name: string) => lagBeyondSampling(Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN));
  return { p99: v('nodejs_eventloop_lag_p99_seconds'), max: v('nodejs_eventloop_lag_max_seconds') };
}

interface Phase {
  goodput: number;
  rssPeak: number;
  liveWorst: number;
  liveFailed: number;
  lagP99: number;
  lagMax: number;
}

/** One slice: ordinary traffic (8 clients), plus the attack when asked; RSS, liveness and lag measured. */
async function phase(attack: boolean, sliceSeconds: number): Promise<Phase> {
  const end = performance.now() + sliceSeconds * 1000;
  const until = () => performance.now() > end;
  const rss: number[] = [];
  const sampler = setInterval(() => rss.push(rssMib(server.pid)), 250);
  await prober.take(); // this phase's probes start here
  await lag(); // prom-client resets the lag histogram at each scrape: this phase's figures start here
  const before = new Map(status.get('ordinary') ?? []);
  const work = [loop('ordinary', 8, until, ordinary)];
  if (attack) {
    if (on('dup-outputs'))
      work.push(
        loop('dup-outputs', 2, until, () => post('/v2/models/text-recognition/infer', 'application/json', dupOutputs)),
      );
    if (on('large-page')) work.push(loop('large-page', 12, until, () => post('/predict?model=ocr', 'image/png', page)));
    if (on('long-wav'))
      work.push(loop('long-wav', 12, until, () => post('/predict?model=voice-activity', 'audio/wav', longWav)));
    if (on('deep-json'))
      work.push(loop('deep-json', 1, until, () => post('/v2/models/text-recognition/infer', 'application/json', deep)));
    if (on('stalled-body')) work.push(...Array.from({ length: 40 }, () => stalled(port, until)));
  }
  await Promise.all(work);
  const live = await prober.take();
  clearInterval(sampler);
  const l = await lag();
  const ok = (status.get('ordinary')?.get(200) ?? 0) - (before.get(200) ?? 0);
  return {
    goodput: ok / sliceSeconds,
    rssPeak: Math.max(...rss),
    liveWorst: live.worstMs,
    liveFailed: live.failed,
    lagP99: l.p99,
    lagMax: l.max,
  };
}

/** Slices of one condition merged: mean goodput, and the worst of everything else. */
const merge = (slices: Phase[]): Phase => ({
  goodput: slices.reduce((a, p) => a + p.goodput, 0) / slices.length,
  rssPeak: Math.max(...slices.map((p) => p.rssPeak)),
  liveWorst: Math.max(...slices.map((p) => p.liveWorst)),
  liveFailed: slices.reduce((a, p) => a + p.liveFailed, 0),
  lagP99: Math.max(...slices.map((p) => p.lagP99)),
  lagMax: Math.max(...slices.map((p) => p.lagMax)),
});

const idleRss = rssMib(server.pid);
const aloneSlices: Phase[] = [];
const attackedSlices: Phase[] = [];
const slice = seconds / rounds;
for (let r = 0; r < rounds; r++) {
  process.stderr.write(`round ${r + 1}/${rounds}: ordinary traffic alone for ${slice} s, then with the attack mix\n`);
  const countsBefore = new Map([...status].map(([k, m]) => [k, new Map(m)]));
  aloneSlices.push(await phase(false, slice));
  // the status table is the attacked slices' only: forget what the alone slice added
  status.clear();
  for (const [k, m] of countsBefore) status.set(k, m);
  attackedSlices.push(await phase(true, slice));
}
const alone = merge(aloneSlices);
const attacked = merge(attackedSlices);
const alive = await fetch(`${base}/v2/health/ready`).then(
  (r) => r.status,
  () => 0,
);
await prober.stop();
await server.stop();

const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : 'n/a');
const codes = [...status].map(
  ([kind, m]) =>
    `| ${kind} | ${[...m]
      .sort(([a], [b]) => a - b)
      .map(([c, n]) => `${c === 0 ? 'no answer' : c}: ${n}`)
      .join(', ')} |`,
);
const fiveXX = [...status.values()].reduce(
  (n, m) => n + [...m].filter(([c]) => c >= 500).reduce((a, [, k]) => a + k, 0),
  0,
);
const md = [
  '# Hostile load: ordinary traffic next to the attack mix of issue 11',
  '',
  `${new Date().toISOString()}, ${machine.cpuModel} x ${machine.cores}, Node ${machine.node}. ` +
    `\`npx tsx bench/hostile-load.ts --seconds ${seconds} --rounds ${rounds} --budget-mib ${budgetMib}\`: ` +
    `${seconds} s of each condition in ${rounds} slices, alone and attacked taking turns (goodput is the slices' ` +
    'mean, the other rows their worst). Ordinary traffic: 8 clients ' +
    'sending a text line to `text-orientation`, one request after another. Attack: 2 clients asking one output 60 ' +
    'times, 12 clients sending 6300x6300 PNG pages (131 KB) to `ocr`, 12 sending 600 s WAVs at 1 kHz to ' +
    '`voice-activity`, 1 sending data nested 10,000 deep, 40 connections sending 8 MiB - 1 KiB of an 8 MiB body ' +
    'and stalling (reconnecting when cut).',
  '',
  '| | alone | with the attack |',
  '|---|---|---|',
  `| ordinary goodput (req/s) | ${alone.goodput.toFixed(1)} | ${attacked.goodput.toFixed(1)} (${((100 * attacked.goodput) / alone.goodput).toFixed(0)} %) |`,
  `| server RSS peak (MiB; idle ${fmt(idleRss)}, budget ${budgetMib}) | ${fmt(alone.rssPeak)} | ${fmt(attacked.rssPeak)} |`,
  `| event-loop lag p99 / max (ms beyond the 10 ms sampling period) | ${fmt(alone.lagP99)} / ${fmt(alone.lagMax)} | ${fmt(attacked.lagP99)} / ${fmt(attacked.lagMax)} |`,
  `| worst /v2/health/live (ms) | ${fmt(alone.liveWorst)} | ${fmt(attacked.liveWorst)} |`,
  `| failed liveness probes (10 s limit) | ${alone.liveFailed} | ${attacked.liveFailed} |`,
  '',
  'Status codes during the attacked slices (0 = no HTTP answer: the connection was cut, as it must be for a stalled upload):',
  '',
  '| traffic | codes |',
  '|---|---|',
  ...codes,
  '',
  `5xx answers: ${fiveXX}. Server ready after the run: ${alive === 200 ? 'yes' : `no (${alive})`}.`,
  '',
].join('\n');
const out = only ? `/tmp/hostile-load-${only.join('+')}` : path.join(packageRoot, 'bench/results/hostile-load');
writeFileSync(`${out}.md`, md);
writeFileSync(
  `${out}.json`,
  JSON.stringify(
    {
      seconds,
      rounds,
      budgetMib,
      aloneSlices,
      attackedSlices,
      idleRss,
      alone,
      attacked,
      status: Object.fromEntries([...status].map(([k, m]) => [k, Object.fromEntries(m)])),
      alive,
    },
    null,
    2,
  ) + '\n',
);
process.stdout.write(md);
