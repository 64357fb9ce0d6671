/**
 * Raw speed of compressed models against their original, interleaved in one process: every model runs the same
 * feeds (made by the first folder's own task pipeline from real inputs) in turn, `--runs` times each, one intra-op
 * thread; the median per model and input, then the geometric mean of the speed-ups over the inputs. The first model
 * folder is the baseline.
 *
 * Usage: npx tsx bench/compression.ts --inputs <folder> [--max-inputs 6] [--runs 20] [--batch 1,8]
 *        [--out bench/results/compression-<name>] <baseline folder> <model folder>...
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { readManifest, resolveFile } from '../src/models/folder.js';
import { ModelSession } from '../src/models/session.js';
import { folderMedia, loadSamples, type Sample } from '../src/quantize/dataset.js';
import { batchOf } from '../src/quantize/latency.js';
import { describeMachine } from './lib/machine.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    inputs: { type: 'string' },
    'max-inputs': { type: 'string', default: '6' },
    runs: { type: 'string', default: '20' },
    batch: { type: 'string', default: '1' },
    out: { type: 'string' },
  },
});
if (!values.inputs || positionals.length < 2) {
  throw new Error('usage: bench/compression.ts --inputs <folder> <baseline folder> <model folder>...');
}
const runs = Number(values.runs);
const batches = values.batch.split(',').map(Number);

const media = await folderMedia(positionals[0]);
const samples = await loadSamples(values.inputs, {
  inputs: media.inputs,
  maxSamples: Number(values['max-inputs']),
  media: media.media,
});
await media.release();
const models = await Promise.all(
  positionals.map(async (dir) => {
    const { manifest, where } = await readManifest(dir);
    const file = resolveFile(dir, manifest.model.path, manifest.model.package, '/model', where);
    const session = await ModelSession.create(file, { provider: 'cpu', intraOpThreads: 1 });
    return { name: path.basename(dir), method: manifest.compression?.method ?? 'fp32', session };
  }),
);

const median = (v: number[]) => v.sort((a, b) => a - b)[v.length >> 1];
/** Median ms per model for one input at one batch size; the models take turns so that drift hits all alike. */
async function timeAll(sample: Sample): Promise<number[]> {
  const times = models.map(() => [] as number[]);
  for (const m of models) await m.session.run(sample.feeds, [m.session.outputs[0].name]); // warm-up
  for (let r = 0; r < runs; r++) {
    for (const [i, m] of models.entries()) {
      const t = performance.now();
      await m.session.run(sample.feeds, [m.session.outputs[0].name]);
      times[i].push(performance.now() - t);
    }
  }
  return times.map(median);
}

const rows: { batch: number; input: string; dims: string; ms: number[] }[] = [];
for (const batch of batches) {
  for (const s of samples) {
    const batched = batchOf(s, batch, models[0].session.inputs);
    if (!batched) continue;
    const dims = Object.values(batched.feeds)[0].dims.join('x');
    rows.push({ batch, input: s.name, dims, ms: await timeAll(batched) });
    process.stderr.write(
      `${s.name} batch ${batch}: ${rows
        .at(-1)!
        .ms.map((m) => m.toFixed(2))
        .join(' / ')} ms\n`,
    );
  }
}
await Promise.all(models.map((m) => m.session.release()));

const geomean = (v: number[]) => Math.exp(v.reduce((a, b) => a + Math.log(b), 0) / v.length);
const machine = describeMachine();
const lines = [
  `# Raw speed against ${models[0].name}`,
  '',
  `${new Date().toISOString()}, ${machine.cpuModel} x ${machine.cores}, Node ${process.version}. ` +
    `\`npx tsx bench/compression.ts --inputs ${values.inputs} --max-inputs ${values['max-inputs']} --runs ${runs} ` +
    `--batch ${values.batch} ${positionals.join(' ')}\`: \`session.run\` on the feeds the first model's pipeline makes ` +
    `of each input, 1 intra-op thread, the models in turn, median of ${runs} runs each.`,
  '',
  '| model | method | ' + batches.map((b) => `batch ${b}: speed-up (geometric mean) | range`).join(' | ') + ' |',
  '| --- | --- | ' + batches.map(() => '---: | ---:').join(' | ') + ' |',
  ...models.map((m, i) => {
    const cells = batches.map((b) => {
      const ups = rows.filter((r) => r.batch === b).map((r) => r.ms[0] / r.ms[i]);
      return `${geomean(ups).toFixed(2)}x | ${Math.min(...ups).toFixed(2)}-${Math.max(...ups).toFixed(2)}x`;
    });
    return `| ${m.name} | ${m.method} | ${cells.join(' | ')} |`;
  }),
  '',
  '| input | batch | dims | ' + models.map((m) => `${m.name} ms`).join(' | ') + ' |',
  '| --- | ---: | --- | ' + models.map(() => '---:').join(' | ') + ' |',
  ...rows.map((r) => `| ${r.input} | ${r.batch} | ${r.dims} | ${r.ms.map((v) => v.toFixed(2)).join(' | ')} |`),
  '',
];
const text = lines.join('\n');
if (values.out) {
  writeFileSync(`${values.out}.md`, text);
  writeFileSync(
    `${values.out}.json`,
    JSON.stringify({ machine, runs, batches, models: models.map((m) => m.name), rows }, null, 2),
  );
}
process.stdout.write(text);
