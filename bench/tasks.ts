// Per-task smoke benchmark: every default model behind the real server, with the server's own default settings
// (so the cores are split between the loaded models), at 1 and 16 connections, on a real input of each kind.
// Usage: npm run build && npx tsx bench/tasks.ts [--duration 5]   (writes bench/results/tasks.md)
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../src/config.js';
import { poolLoad, runLoad } from './lib/load.js';
import { ServerProcess } from './lib/server.js';

const fixture = (p: string) => readFileSync(path.join(packageRoot, 'test/fixtures', p));
const sentence = 'Bonjour tout le monde, comment allez-vous ?';
const page = { type: 'image/png', input: 'photos/page.png (384x191, 5-6 lines)', body: fixture('photos/page.png') };
const cases = [
  { model: 'ocr', ...page },
  { model: 'ocr-fp32', ...page },
  {
    model: 'text-orientation',
    type: 'image/png',
    input: 'text-lines/line-03.png',
    body: fixture('text-lines/line-03.png'),
  },
  {
    model: 'text-orientation-fp32',
    type: 'image/png',
    input: 'text-lines/line-03.png',
    body: fixture('text-lines/line-03.png'),
  },
  {
    model: 'text-recognition',
    type: 'image/png',
    input: 'text-lines/line-03.png',
    body: fixture('text-lines/line-03.png'),
  },
  {
    model: 'text-recognition-fp32',
    type: 'image/png',
    input: 'text-lines/line-03.png',
    body: fixture('text-lines/line-03.png'),
  },
  { model: 'face-detection', type: 'image/jpeg', input: 'photos/astronaut.jpg', body: fixture('photos/astronaut.jpg') },
  {
    model: 'voice-activity',
    type: 'audio/wav',
    input: 'audio/speech-16k-mono.wav (5.6 s)',
    body: fixture('audio/speech-16k-mono.wav'),
  },
  {
    model: 'voice-activity-fp32',
    type: 'audio/wav',
    input: 'audio/speech-16k-mono.wav (5.6 s)',
    body: fixture('audio/speech-16k-mono.wav'),
  },
  { model: 'language-id', type: 'text/plain', input: `"${sentence}"`, body: Buffer.from(sentence) },
];

const duration = Number(process.argv[process.argv.indexOf('--duration') + 1]) || 5;
const server = await ServerProcess.start({});
const rows: string[] = [];
try {
  for (const c of cases) {
    for (const connections of [1, 16]) {
      const r = poolLoad([
        await runLoad({
          url: `${server.baseUrl}/predict?model=${c.model}`,
          body: c.body,
          contentType: c.type,
          connections,
          durationS: duration,
        }),
      ]);
      const ms = (v: number) => v.toFixed(2);
      const line = `| ${c.model} | ${c.input} | ${connections} | ${r.rps.toFixed(0)} | ${ms(r.latency.p50)} | ${ms(r.latency.p99)} | ${r.non2xx + r.errors} |`;
      rows.push(line);
      process.stderr.write(line + '\n');
    }
  }
} finally {
  await server.stop();
}
const out = path.join(packageRoot, 'bench/results/tasks.md');
writeFileSync(
  out,
  [
    '# Per-task smoke benchmark',
    '',
    `${new Date().toISOString()}, ${os.cpus()[0]?.model} x ${os.availableParallelism()}, Node ${process.version}. ` +
      `All default models loaded with the server's default settings (intra-op threads = cores / models). ` +
      `autocannon, ${duration} s per row, closed loop, latencies per response. ` +
      '`npm run build && npx tsx bench/tasks.ts`.',
    '',
    '| model | input | connections | req/s | p50 ms | p99 ms | errors |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n'),
);
process.stderr.write(`wrote ${out}\n`);
