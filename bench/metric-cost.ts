/**
 * What the metrics of one small request cost the event loop: the updates a `language-id` request makes (its count
 * by code, its duration, its preprocessing time, its queue wait, the queue depth set as it is queued and as its batch
 * is cut, its memory admission), done by prom-client's own metrics (the build before 2026-12-07) and by
 * src/metric-series.ts (since), in one run, rounds taking turns.
 *
 * Usage: npx tsx bench/metric-cost.ts [--requests 1000000] [--rounds 5] [--out bench/results/metric-cost]
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { SeriesCounter, SeriesGauge, SeriesHistogram } from '../src/metric-series.js';
import { describeMachine } from './lib/machine.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '5' },
    out: { type: 'string', default: 'bench/results/metric-cost' },
  },
});
const requests = Number(values.requests);
const rounds = Number(values.rounds);
const buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The metric updates of one request, made with one kind of metric. Written out once per kind, not shared: a shared
 * function's call sites would see both kinds and be slower for each than in a server, where only one exists.
 */
interface Kind {
  readonly name: string;
  update(i: number): void;
}

function promClient(): Kind {
  const registers = [new Registry()];
  const model = ['model'] as const;
  const requests = new Counter({ name: 'r', help: 'r', labelNames: ['model', 'code'] as const, registers });
  const [duration, preprocess, wait] = ['d', 'p', 'w'].map(
    (name) => new Histogram({ name, help: name, labelNames: model, buckets, registers }),
  );
  const depth = new Gauge({ name: 'q', help: 'q', labelNames: model, registers });
  const admissions = new Counter({ name: 'a', help: 'a', labelNames: ['outcome'] as const, registers });
  return {
    name: 'prom-client (before)',
    update(i) {
      const v = (i % 97) / 10_000;
      preprocess.observe({ model: 'language-id' }, v);
      admissions.inc({ outcome: 'admitted' });
      depth.set({ model: 'language-id' }, i & 31);
      wait.observe({ model: 'language-id' }, v);
      depth.set({ model: 'language-id' }, 0);
      requests.inc({ model: 'language-id', code: String(200) });
      duration.observe({ model: 'language-id' }, v);
    },
  };
}

function series(): Kind {
  const requests = new SeriesCounter('r', 'r', ['model', 'code'] as const);
  const [duration, preprocess, wait] = ['d', 'p', 'w'].map(
    (name) => new SeriesHistogram(name, name, ['model'] as const, buckets),
  );
  const depth = new SeriesGauge('q', 'q', ['model'] as const);
  const admissions = new SeriesCounter('a', 'a', ['outcome'] as const);
  return {
    name: 'metric-series.ts (now)',
    update(i) {
      const v = (i % 97) / 10_000;
      preprocess.observe({ model: 'language-id' }, v);
      admissions.inc({ outcome: 'admitted' });
      depth.set({ model: 'language-id' }, i & 31);
      wait.observe({ model: 'language-id' }, v);
      depth.set({ model: 'language-id' }, 0);
      requests.inc({ model: 'language-id', code: String(200) });
      duration.observe({ model: 'language-id' }, v);
    },
  };
}

const kinds = [promClient(), series()];
const ns = new Map<string, number[]>(kinds.map((k) => [k.name, []]));
for (let r = 0; r <= rounds; r++) {
  for (const k of r % 2 === 0 ? kinds : [...kinds].reverse()) {
    const t0 = performance.now();
    for (let i = 0; i < requests; i++) k.update(i);
    const perRequest = ((performance.now() - t0) * 1e6) / requests;
    if (r > 0) ns.get(k.name)!.push(perRequest); // round 0 warms V8 up
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const machine = describeMachine();
const rows = kinds.map((k) => ({ kind: k.name, nsPerRequest: median(ns.get(k.name)!), runs: ns.get(k.name)! }));
const md = [
  '# The metrics of one small request',
  '',
  `${new Date().toISOString()}, ${machine.cpuModel} x ${machine.cores}, Node ${process.version}. ` +
    `\`npx tsx bench/metric-cost.ts --requests ${requests} --rounds ${rounds}\`: the seven metric updates of a ` +
    '`language-id` request (count by code, duration, preprocessing time, queue wait, queue depth twice, memory ' +
    `admission), ${requests} times in a loop, rounds taking turns after one to warm up; the median round.`,
  '',
  '| metrics | ns per request |',
  '| --- | ---: |',
  ...rows.map((r) => `| ${r.kind} | ${r.nsPerRequest.toFixed(0)} |`),
  '',
].join('\n');
writeFileSync(`${values.out}.md`, md);
writeFileSync(`${values.out}.json`, JSON.stringify({ machine, requests, rounds, rows }, null, 2) + '\n');
console.log(md);
