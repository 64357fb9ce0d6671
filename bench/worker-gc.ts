/**
 * What a worker's answers cost the event loop's garbage collector, by how their buffers cross: moved (a transfer
 * list), copied (structured clone), or in a SharedArrayBuffer. A worker thread sends `--messages` rows of
 * `--bytes` bytes (a text-orientation row by default) to this thread, which drops each; this thread counts its own
 * collections (PerformanceObserver 'gc' entries only see the thread that observes) and its peak RSS. The answer for
 * the server's workers (src/workers/wire.ts postToLoop): copy, except buffers of 1 MiB or more. Usage: npx tsx bench/worker-gc.ts [--messages 20000]
 * [--bytes 110592]   (writes bench/results/worker-gc.md)
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { packageRoot } from '../src/config.js';
import { describeMachine } from './lib/machine.js';

const { values } = parseArgs({
  options: { messages: { type: 'string', default: '20000' }, bytes: { type: 'string', default: '110592' } },
});
const messages = Number(values.messages);
const bytes = Number(values.bytes);

type Mode = 'moved' | 'copied' | 'shared';
// 100 rows at a time, the next 100 once this thread has taken them: a backlog of queued messages is not what is measured
const sender = `
const { parentPort, workerData: { mode, messages, bytes } } = require('node:worker_threads');
let sent = 0;
parentPort.on('message', () => {
  for (const end = Math.min(messages, sent + 100); sent < end; sent++) {
    const row = new Float32Array(mode === 'shared' ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
    row[0] = sent;
    parentPort.postMessage(row, mode === 'moved' ? [row.buffer] : []);
  }
  parentPort.postMessage(sent === messages ? 'end' : 'more');
});`;

interface Row {
  mode: Mode;
  markCompacts: number;
  scavenges: number;
  gcMs: number;
  worstPauseMs: number;
  peakRssMiB: number;
}

async function measure(mode: Mode): Promise<Row> {
  const gcs: { kind: number; duration: number }[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      gcs.push({ kind: (e as unknown as { detail: { kind: number } }).detail.kind, duration: e.duration });
  });
  observer.observe({ entryTypes: ['gc'] });
  const worker = new Worker(sender, { eval: true, workerData: { mode, messages, bytes } });
  let peak = 0;
  await new Promise<void>((resolve, reject) => {
    worker.on('error', reject);
    worker.on('message', (m: unknown) => {
      if (typeof m !== 'string') return;
      peak = Math.max(peak, process.memoryUsage().rss);
      if (m === 'end') resolve();
      else worker.postMessage('go');
    });
    worker.postMessage('go');
  });
  await worker.terminate();
  await new Promise((r) => setTimeout(r, 100)); // the observer's last entries
  observer.disconnect();
  return {
    mode,
    markCompacts: gcs.filter((g) => g.kind === constants.NODE_PERFORMANCE_GC_MAJOR).length,
    scavenges: gcs.filter((g) => g.kind === constants.NODE_PERFORMANCE_GC_MINOR).length,
    gcMs: gcs.reduce((a, g) => a + g.duration, 0),
    worstPauseMs: Math.max(0, ...gcs.map((g) => g.duration)),
    peakRssMiB: Math.round(peak / 2 ** 20),
  };
}

const rows: Row[] = [];
// shared last: the memory it leaves behind would inflate the others' RSS
for (const mode of ['copied', 'moved', 'shared'] as const) {
  rows.push(await measure(mode));
  console.log(rows.at(-1));
}
const machine = describeMachine();
const md = [
  "# What a worker's answers cost the event loop's collector",
  '',
  `${new Date().toISOString()}, ${machine.cpuModel} x ${machine.cores}, Node ${machine.node}. A worker thread sends ` +
    `${messages} rows of ${bytes} bytes to the main thread, which drops each; the main thread's own collections ` +
    `(PerformanceObserver 'gc' entries) and peak RSS. \`npx tsx bench/worker-gc.ts --messages ${messages} --bytes ${bytes}\`.`,
  '',
  '| the rows cross | mark-compacts | scavenges | GC ms in all | longest GC ms | peak RSS MiB |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.mode} | ${r.markCompacts} | ${r.scavenges} | ${r.gcMs.toFixed(1)} | ${r.worstPauseMs.toFixed(1)} | ${r.peakRssMiB} |`,
  ),
  '',
  'Moved buffers count as external memory on the receiving side, which V8 gives back only in a mark-compact; copies ' +
    "are the receiver's own fresh buffers, freed by scavenges while they die young; shared memory costs the " +
    'collector nothing because V8 does not count it, which is also why it piles up (peak RSS) until both threads ' +
    'happen to collect.',
  '',
].join('\n');
await writeFile(path.join(packageRoot, 'bench/results/worker-gc.md'), md);
console.log(md);
