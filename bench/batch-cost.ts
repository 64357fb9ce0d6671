/**
 * What one item costs at each batch size (the evidence for a manifest's CPU `maxBatchSize`): raw `session.run` of a
 * fixed-size image model on one intra-op thread, as the server gives each of its models on a 2-core machine, batch
 * sizes taking turns, the median of each (bench/lib/raw.ts, as the batching study times them).
 * Usage: npx tsx bench/batch-cost.ts [--rounds 5] <model name> ...   Writes bench/results/batch-cost.md.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../src/config.js';
import { describeMachine } from './lib/machine.js';
import { loadBenchModel, openSession } from './lib/model.js';
import { rawResult, timeRawBatch } from './lib/raw.js';
import type { Timed } from './lib/timing.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: 'string', default: '5' } },
});
const rounds = Number(values.rounds);
const SIZES = [1, 2, 4, 8, 16, 32];
/** Items timed per batch size and round: enough calls of the small batches to see past the timer. */
const ITEMS = 64;

const rows: string[] = [];
for (const name of positionals) {
  const model = await loadBenchModel(name);
  const session = await openSession(model, 1);
  const loops = new Map<number, Timed[]>(SIZES.map((b) => [b, []]));
  for (let r = 0; r < rounds; r++) {
    for (const b of SIZES) {
      const budget = { warmupIterations: r === 0 ? 1 : 0, minIterations: ITEMS / b, minMs: 0 };
      loops.get(b)!.push(await timeRawBatch(session, model, b, budget));
    }
  }
  await session.release();
  const perItem = SIZES.map((b) => rawResult(b, loops.get(b)!).medianMsPerItem);
  rows.push(`| ${name} | ${perItem.map((ms) => ms.toFixed(3)).join(' | ')} |`);
  process.stderr.write(`${name}: ${perItem.map((ms) => ms.toFixed(3)).join(' ')} ms per item\n`);
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
