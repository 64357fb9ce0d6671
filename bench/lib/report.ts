import type { BenchResults, ServerMeasurement } from './results.js';
import type { RawResult } from './raw.js';

/** Renders a run as the markdown of `bench/results/latest.md`. */
export function renderMarkdown(r: BenchResults): string {
  return (
    [header(r), rawSection(r), pipelineSection(r), serverSection(r), versusOffSection(r), loneRequestSection(r)].join(
      '\n\n',
    ) + '\n'
  );
}

/** The raw result with the most items per second. */
export function bestRaw(raw: readonly RawResult[]): RawResult {
  return raw.reduce((best, x) => (x.itemsPerSec > best.itemsPerSec ? x : best));
}

function header(r: BenchResults): string {
  const m = r.machine;
  const s = r.settings;
  return [
    `# Muon Serve benchmark${r.quick ? ' (quick run: short, noisy)' : ''}`,
    '',
    `Run ${r.startedAt} on \`${m.hostname}\` at commit \`${m.gitCommit}\`. Produced by \`npx tsx bench/serve-bench.ts\`; see bench/README.md.`,
    '',
    `- CPU: ${m.cpuModel}, ${m.cores} cores (${m.cpuVectorFlags.join(' ') || 'no AVX'}), ${m.memoryGiB} GiB, ${m.os}; load average ${m.loadAverageAtStart.toFixed(2)} at start`,
    `- Node ${m.node}, onnxruntime-node ${m.onnxruntimeNode}, sharp ${m.sharp}, autocannon ${m.autocannon}`,
    `- Model \`${s.model}\`, ${s.intraOpThreads} intra-op threads; image \`${s.image}\` (server answer: ${r.prediction})`,
    `- ${s.rounds} round(s), configurations (and raw batch sizes) interleaved in alternating order; server load ${s.loadDurationS} s per round and concurrency, after a ${s.warmupS} s warm-up; latencies of 2xx answers, client side`,
    `- *others CPU %*: CPU used by other processes during a measurement (100 = one core); the worst round; above ${r.settings.maxOthersPct} a round was measured again, up to ${r.settings.attempts} times, keeping the least disturbed`,
  ].join('\n');
}

function rawSection(r: BenchResults): string {
  const rows = r.raw.map((x) => [
    x.batchSize,
    num(x.medianMs, 2),
    num(x.medianMsPerItem, 3),
    num(x.itemsPerSec, 0),
    x.iterations,
    num(x.othersCpuPct, 0),
  ]);
  return [
    '## Raw `session.run` (random input, no preprocessing, no HTTP)',
    '',
    table(['batch', 'median ms / call', 'ms / item', 'items/s', 'calls', 'others CPU %'], rows),
  ].join('\n');
}

function pipelineSection(r: BenchResults): string {
  const p = r.pipeline;
  return [
    '## Pipeline at batch 1 (in process: `imageToTensor` + `session.run`, one after another)',
    '',
    table(
      ['preprocess median ms', 'run median ms', 'total median ms', 'items/s', 'iterations', 'others CPU %'],
      [
        [
          num(p.preprocessMedianMs, 2),
          num(p.runMedianMs, 2),
          num(p.totalMedianMs, 2),
          num(p.itemsPerSec, 0),
          p.iterations,
          num(p.othersCpuPct, 0),
        ],
      ],
    ),
  ].join('\n');
}

function serverSection(r: BenchResults): string {
  const best = bestRaw(r.raw);
  const rows = r.server.map((x) => [
    x.config,
    x.connections,
    num(x.rps, 0),
    num(x.latency.p50, 2),
    num(x.latency.p90, 2),
    num(x.latency.p99, 2),
    num(x.meanBatchSize, 2),
    num(x.meanQueueWaitMs, 2),
    x.non2xx,
    x.errors,
    num(x.rpsVsBestRaw, 2),
    num(x.othersCpuPct, 0),
  ]);
  return [
    '## Server over HTTP (autocannon, closed loop)',
    '',
    `Best raw throughput: ${num(best.itemsPerSec, 0)} items/s at batch ${best.batchSize}. Mean batch and queue wait come from \`/metrics\` deltas.`,
    '',
    table(
      [
        'config',
        'conns',
        'req/s',
        'p50 ms',
        'p90 ms',
        'p99 ms',
        'mean batch',
        'queue wait ms',
        'non-2xx',
        'errors',
        'req/s ÷ best raw',
        'others CPU %',
      ],
      rows,
    ),
  ].join('\n');
}

/** Each batching configuration against batching off at the same concurrency. */
function versusOffSection(r: BenchResults): string {
  const conns = unique(r.server.map((x) => x.connections));
  const configs = unique(r.server.map((x) => x.config)).filter((c) => c !== 'off');
  const rows = configs.map((config) => [
    config,
    ...conns.map((c) => {
      const on = find(r.server, config, c);
      const off = find(r.server, 'off', c);
      if (!on || !off) return '–';
      return `req/s ${change(on.rps, off.rps)}, p50 ${change(on.latency.p50, off.latency.p50)}, p99 ${change(on.latency.p99, off.latency.p99)}`;
    }),
  ]);
  return [
    '## Batching against batching off',
    '',
    'Relative change at the same concurrency. Differences of a few percent, and most p99 differences, are within run-to-run noise.',
    '',
    table(['config', ...conns.map((c) => `${c} conns`)], rows),
  ].join('\n');
}

/** What a lone request (one connection) pays for the queue delay. */
function loneRequestSection(r: BenchResults): string {
  const off = find(r.server, 'off', 1);
  if (!off) return '';
  const rows = r.serverConfigs.map((cfg) => {
    const x = find(r.server, cfg.name, 1);
    if (!x) return [cfg.name, '–', '–', '–', '–', '–'];
    return [
      cfg.name,
      cfg.batching ? `${cfg.maxQueueDelayMs ?? 'manifest'}` : '–',
      num(x.latency.p50, 2),
      num(x.latency.p50 - off.latency.p50, 2),
      num(x.meanQueueWaitMs, 2),
      num(x.meanBatchSize, 2),
    ];
  });
  return [
    '## A lone request (1 connection)',
    '',
    'The queue wait must stay within the configured delay, and p50 should grow by no more than it.',
    '',
    table(['config', 'delay ms', 'p50 ms', 'p50 − off ms', 'queue wait ms', 'mean batch'], rows),
  ].join('\n');
}

function find(
  server: readonly ServerMeasurement[],
  config: string,
  connections: number,
): ServerMeasurement | undefined {
  return server.find((x) => x.config === config && x.connections === connections);
}

function unique<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}

function table(headers: readonly string[], rows: readonly (string | number)[][]): string {
  const line = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

/** A number with fixed decimals; a dash for NaN (nothing measured). */
function num(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : '–';
}

/** `+3.1 %` / `−12.0 %`: how much `value` differs from `reference`. */
function change(value: number, reference: number): string {
  const pct = (value / reference - 1) * 100;
  if (!Number.isFinite(pct)) return '–';
  return `${pct >= 0 ? '+' : '−'}${Math.abs(pct).toFixed(1)} %`;
}
