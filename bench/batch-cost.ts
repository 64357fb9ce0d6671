/**
 * What one item costs at each batch size (the evidence for a manifest's CPU `maxBatchSize`): raw `session.run` of a
 * fixed-size image model on one intra-op thread, as the server gives each of its models on a 2-core machine, batch
 * sizes taking turns, the median of each. Usage: npx tsx bench/batch-cost.ts [--rounds 5] <model folder> ...
 * Writes bench/results/batch-cost.md.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../src/config.js';
import { resolveFile } from '../src/models/folder.js';
import { ModelSession } from '../src/models/session.js';
import { describeMachine } from './lib/machine.js';
import { median } from './lib/stats.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: 'string', default: '5' } },
});
const rounds = Number(values.rounds);
const SIZES = [1, 2, 4, 8, 16, 32];
/** Items timed per batch size and round: enough calls of the small batches to see past the timer. */
const ITEMS = 64;

interface ImageManifest {
  model: { path: string; package?: string };
  input: { name: string; height: number; width: number };
}

const rows: string[] = [];
for (const folder of positionals) {
  const dir = path.resolve(packageRoot, folder);
  const m = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as ImageManifest;
  const file = resolveFile(dir, m.model.path, m.model.package, '/model/path', folder);
  const session = await ModelSession.create(file, { provider: 'cpu', intraOpThreads: 1 });
  const feeds = (b: number) => {
    const data = new Float32Array(b * 3 * m.input.height * m.input.width);
    for (let i = 0; i < data.length; i++) data[i] = Math.sin(i) * 0.5;
    return { [m.input.name]: { type: 'float32' as const, data, dims: [b, 3, m.input.height, m.input.width] } };
  };
  const outputs = session.outputs.map((o) => o.name);
  const inputs = new Map(SIZES.map((b) => [b, feeds(b)]));
  const times = new Map<number, number[]>(SIZES.map((b) => [b, []]));
  for (const b of SIZES) await session.run(inputs.get(b)!, outputs); // warm-up: arena growth, kernel choice
  for (let r = 0; r < rounds; r++) {
    for (const b of SIZES) {
      for (let i = 0; i < ITEMS / b; i++) {
        const t0 = performance.now();
        await session.run(inputs.get(b)!, outputs);
        times.get(b)!.push(performance.now() - t0);
      }
    }
  }
  await session.release();
  const perItem = SIZES.map((b) => median(times.get(b)!) / b);
  rows.push(`| ${path.basename(dir)} | ${perItem.map((ms) => ms.toFixed(3)).join(' | ')} |`);
  process.stderr.write(`${folder}: ${perItem.map((ms) => ms.toFixed(3)).join(' ')} ms per item\n`);
}

const machine = describeMachine();
const md = [
  '# What one item costs at each batch size',
  '',
  `${new Date().toISOString()}, ${machine.cpuModel} x ${machine.cores}, Node ${process.version}. Raw \`session.run\` on one` +
    ` intra-op thread, batch sizes taking turns, ${rounds} rounds of ${ITEMS} items each, the median call divided by` +
    ` the batch size. \`npx tsx bench/batch-cost.ts --rounds ${rounds} ${positionals.join(' ')}\`.`,
  '',
  `| model | ${SIZES.map((b) => `batch ${b} (ms per item)`).join(' | ')} |`,
  `| --- | ${SIZES.map(() => '---:').join(' | ')} |`,
  ...rows,
  '',
];
await writeFile(path.join(packageRoot, 'bench/results/batch-cost.md'), md.join('\n'));
