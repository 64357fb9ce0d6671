/**
 * Soak: a bounded number of requests mixed across the default models (every input kind, both APIs, some refused
 * inputs), at a fixed concurrency, against the real server process; samples its RSS, heap and event-loop delay
 * (from its own /metrics) as the run goes. Growth must flatten. Usage: npm run build && npx tsx bench/soak.ts
 * [--requests 50000] [--concurrency 16]   (writes bench/results/soak.md)
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../src/config.js';
import { post } from './lib/http.js';
import { describeMachine } from './lib/machine.js';
import { LivenessProber } from './lib/liveness.js';
import { lagBeyondSampling } from './lib/metrics.js';
import { assertBuildFresh, ServerProcess } from './lib/server.js';

const { values } = parseArgs({
  options: { requests: { type: 'string', default: '50000' }, concurrency: { type: 'string', default: '16' } },
});
const total = Number(values.requests);
const concurrency = Number(values.concurrency);
const fixture = (p: string) => readFileSync(path.join(packageRoot, 'test/fixtures', p));

/** The mix, by weight: mostly cheap models (so the run is about the server, not one slow model), some of each. */
const mix: { weight: number; path: string; type: string; body: Buffer | string; expect: number }[] = [
  {
    weight: 30,
    path: '/predict?model=text-orientation',
    type: 'image/png',
    body: fixture('text-lines/line-03.png'),
    expect: 200,
  },
  {
    weight: 30,
    path: '/predict?model=language-id',
    type: 'text/plain',
    body: 'Das ist ein kurzer Satz auf Deutsch.',
    expect: 200,
  },
  {
    weight: 10,
    path: '/predict?model=face-detection',
    type: 'image/jpeg',
    body: fixture('photos/astronaut.jpg'),
    expect: 200,
  },
  {
    weight: 5,
    path: '/predict?model=voice-activity',
    type: 'audio/wav',
    body: fixture('audio/speech-16k-mono.wav'),
    expect: 200,
  },
  {
    weight: 2,
    path: '/predict?model=text-recognition',
    type: 'image/png',
    body: fixture('text-lines/line-03.png'),
    expect: 200,
  },
  {
    weight: 15,
    path: '/v2/models/text-orientation/infer',
    type: 'application/json',
    body: JSON.stringify({
      inputs: [{ name: 'x', shape: [1, 3, 48, 192], datatype: 'FP32', data: new Array(3 * 48 * 192).fill(0) }],
    }),
    expect: 200,
  },
  {
    weight: 5,
    path: '/predict?model=text-orientation',
    type: 'image/png',
    body: fixture('bad/truncated.jpg'),
    expect: 400,
  },
  { weight: 3, path: '/predict?model=language-id', type: 'text/plain', body: Buffer.from([0xff, 0xfe]), expect: 400 },
];
const weights = mix.flatMap((m, i) => Array<number>(m.weight).fill(i));

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

assertBuildFresh();
const machine = describeMachine();
// the bench's 16 connections stand for many clients, but share one address: its refused requests (8 % of the
// mix, about 20 a second) would be paced as one client's (MUON_CLIENT_ERROR_RATE), which measures the pacing
const server = await ServerProcess.start({ MUON_CLIENT_ERROR_RATE: '0' });
const samples: {
  done: number;
  s: number;
  rssMb: number;
  heapMb: number;
  lagP99Ms: number;
  lagMaxMs: number;
  liveWorstMs: number;
}[] = [];
// a liveness probe every 100 ms: the worst answer time per sample, and the failed probes
const prober = await LivenessProber.start(server.baseUrl);
let liveFailed = 0;
const sample = async (done: number) => {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  const live = await prober.take();
  liveFailed += live.failed;
  samples.push({
    liveWorstMs: live.worstMs,
    lagMaxMs: lagBeyondSampling(metric(text, 'nodejs_eventloop_lag_max_seconds')),
    done,
    s: (performance.now() - t0) / 1000,
    rssMb: metric(text, 'process_resident_memory_bytes') / 2 ** 20,
    heapMb: metric(text, 'nodejs_heap_size_used_bytes') / 2 ** 20,
    lagP99Ms: lagBeyondSampling(metric(text, 'nodejs_eventloop_lag_p99_seconds')),
  });
};
const t0 = performance.now();
let next = 0;
let done = 0;
let unexpected = 0;
const step = Math.max(1, Math.floor(total / 20));
try {
  await sample(0);
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const m = mix[weights[next++ % weights.length]];
        if ((await post(server.baseUrl + m.path, m.type, m.body)) !== m.expect) unexpected++;
        if (++done % step === 0) await sample(done);
      }
    }),
  );
  await prober.stop();
  const elapsed = (performance.now() - t0) / 1000;
  const first = samples[1] ?? samples[0];
  const last = samples.at(-1)!;
  const half = samples[Math.floor(samples.length / 2)];
  const loaded = samples.slice(1);
  const lines = [
    '# Soak',
    '',
    `${new Date().toISOString()}, ${machine.cpuModel} x ${machine.cores}, Node ${machine.node}. ${total} requests over ${concurrency} ` +
      `connections in ${elapsed.toFixed(0)} s (${(total / elapsed).toFixed(0)} req/s), mixed: ` +
      mix
        .map(
          (m) =>
            `${m.weight}% ${m.path.replace('/predict?model=', '')}${m.expect !== 200 ? ` (refused, ${m.expect})` : ''}`,
        )
        .join(', ') +
      `. \`npm run build && npx tsx bench/soak.ts --requests ${total} --concurrency ${concurrency}\`.`,
    '',
    `Answers other than the expected status: ${unexpected}.`,
    '',
    `RSS after the first ${step} requests ${first.rssMb.toFixed(0)} MB, at half-way ${half.rssMb.toFixed(0)} MB, at the end ${last.rssMb.toFixed(0)} MB; ` +
      `heap used ${first.heapMb.toFixed(1)} / ${half.heapMb.toFixed(1)} / ${last.heapMb.toFixed(1)} MB.`,
    '',
    // the first sample is the idle server just started (its lag is startup's)
    `Under load: event-loop lag p99 beyond sampling ${Math.min(...loaded.map((s) => s.lagP99Ms)).toFixed(1)} to ` +
      `${Math.max(...loaded.map((s) => s.lagP99Ms)).toFixed(1)} ms, max ${Math.max(...loaded.map((s) => s.lagMaxMs)).toFixed(1)} ms; ` +
      `worst /v2/health/live answer ${Math.max(...loaded.map((s) => s.liveWorstMs)).toFixed(1)} ms (probed every 100 ms), ${liveFailed} probes failed.`,
    '',
    '| requests done | seconds | RSS MB | heap used MB | event-loop lag p99 / max ms (beyond the 10 ms sampling period) | worst /v2/health/live ms |',
    '| ---: | ---: | ---: | ---: | ---: | ---: |',
    ...samples.map(
      (s) =>
        `| ${s.done} | ${s.s.toFixed(0)} | ${s.rssMb.toFixed(0)} | ${s.heapMb.toFixed(1)} | ${s.lagP99Ms.toFixed(1)} / ${s.lagMaxMs.toFixed(1)} | ${s.liveWorstMs.toFixed(1)} |`,
    ),
    '',
  ];
  await writeFile(path.join(packageRoot, 'bench/results/soak.md'), lines.join('\n'));
  process.stdout.write(lines.join('\n'));
} finally {
  await prober.stop().finally(() => server.stop());
}
