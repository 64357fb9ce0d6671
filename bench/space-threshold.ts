/**
 * The CTC decoder's space threshold (`ctc.spaceThreshold` in a text-recognition manifest), measured: each line of
 * the quality bench's splits is run once through a recognizer's own pipeline (the server's preprocessing, one
 * `session.run`, the steps reduced as served), then decoded at every threshold asked for and scored against the
 * truth (exact lines, corpus CER). Choose on the calibration split, read the evaluation split.
 *
 * Usage: npx tsx bench/space-threshold.ts [--models text-recognition,text-recognition-fp32]
 * [--thresholds 0.02,0.05,0.1,...] [--data bench/quality/data] [--splits calibration,evaluation]
 * [--out bench/results/space-threshold] (writes <out>.md and <out>.json)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../src/config.js';
import { readManifest, resolveFile } from '../src/models/folder.js';
import { createPipeline } from '../src/models/pipeline.js';
import { ModelSession, type HostTensor } from '../src/models/session.js';
import { mediaInput } from '../src/models/media.js';
import { ctcClasses, ctcDecodeReduced } from '../src/models/tasks/text-recognition/pipeline.js';
import { scoreLines } from '../src/quantize/task-metrics.js';
import { describeMachine } from './lib/machine.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'text-recognition,text-recognition-fp32' },
    thresholds: { type: 'string', default: '0.02,0.05,0.1,0.15,0.2,0.25,0.3,0.4,0.5' },
    data: { type: 'string', default: path.join(packageRoot, 'bench/quality/data') },
    splits: { type: 'string', default: 'calibration,evaluation' },
    out: { type: 'string', default: path.join(packageRoot, 'bench/results/space-threshold') },
  },
});
const list = (s: string) => s.split(',').filter(Boolean);
const thresholds = list(values.thresholds).map(Number);
if (thresholds.some((t) => !(t > 0 && t <= 1))) throw new Error('--thresholds: numbers in (0, 1]');

interface Row {
  model: string;
  split: string;
  lines: number;
  /** the manifest's own threshold */
  served: number | undefined;
  byThreshold: { threshold: number; exact: number; cer: number }[];
}

/** Each line's reduced steps ([steps, 3]: best class, its score, the space's score) from the served pipeline. */
async function reducedSteps(
  model: string,
  files: string[],
): Promise<{ served?: number; classes: string[]; steps: HostTensor[] }> {
  // a name in models/, or a model folder's path
  const dir = model.includes('/') ? path.resolve(model) : path.join(packageRoot, 'models', model);
  const { manifest, where } = await readManifest(dir);
  if (manifest.task !== 'text-recognition') throw new Error(`${model}: a ${manifest.task} model`);
  const served = manifest.ctc.spaceThreshold;
  // any threshold makes the pipeline keep the space's score of every step
  const probe = { ...manifest, ctc: { ...manifest.ctc, spaceThreshold: served ?? 0.5 } };
  const file = resolveFile(dir, manifest.model.path, manifest.model.package, '/model', where);
  const session = await ModelSession.create(file, { provider: 'cpu', intraOpThreads: 1 });
  try {
    const { pipeline, labels } = await createPipeline(probe, session, dir, where, {
      maxImagePixels: Number.MAX_SAFE_INTEGER,
    });
    const classes = ctcClasses(labels, manifest.ctc.useSpaceChar);
    const steps: HostTensor[] = [];
    for (const f of files) {
      const prepared = await pipeline.prepare(mediaInput('image', readFileSync(f), f));
      try {
        const [out] = (await pipeline.runBatch([prepared.row])) as HostTensor[];
        steps.push({ ...out, data: out.data.slice() } as HostTensor);
      } finally {
        prepared.release?.();
      }
    }
    return { served, classes, steps };
  } finally {
    await session.release();
  }
}

const rows: Row[] = [];
for (const split of list(values.splits)) {
  const root = path.join(values.data, split);
  const truth = JSON.parse(readFileSync(path.join(root, 'lines.json'), 'utf8')) as { file: string; text: string }[];
  const files = truth.map((l) => path.join(root, l.file));
  for (const model of list(values.models)) {
    const { served, classes, steps } = await reducedSteps(model, files);
    const byThreshold = thresholds.map((threshold) => {
      const pairs = steps.map((s, i) => ({
        truth: truth[i].text,
        read: ctcDecodeReduced(s.data as Float32Array, s.dims[0], classes, 'none', threshold).text,
      }));
      return { threshold, ...scoreLines(pairs) };
    });
    rows.push({ model, split, lines: files.length, served, byThreshold });
    process.stderr.write(`${model} on ${split}: ${files.length} lines\n`);
  }
}

const machine = describeMachine();
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
const md = [
  "# The CTC decoder's space threshold",
  '',
  `${machine.cpuModel}, ${machine.cores} vCPUs, commit ${machine.gitCommit}. \`npx tsx bench/space-threshold.ts --models ${values.models} --thresholds ${values.thresholds}\``,
  '',
  'Each line run once through the served pipeline, decoded at each threshold; exact lines / corpus CER against the',
  'truth (`bench/quality/generate.ts` splits). The served threshold is in bold.',
  '',
  `| model | split | lines | ${thresholds.map((t) => String(t)).join(' | ')} |`,
  `|---|---|---:|${thresholds.map(() => '---:').join('|')}|`,
  ...rows.map(
    (r) =>
      `| \`${r.model}\` | ${r.split} | ${r.lines} | ${r.byThreshold
        .map((b) => {
          const cell = `${pct(b.exact)} / ${pct(b.cer)}`;
          return b.threshold === r.served ? `**${cell}**` : cell;
        })
        .join(' | ')} |`,
  ),
  '',
];
writeFileSync(`${values.out}.md`, md.join('\n'));
writeFileSync(`${values.out}.json`, JSON.stringify({ thresholds, rows }, null, 2) + '\n');
process.stdout.write(md.join('\n'));
