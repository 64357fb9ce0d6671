/**
 * How sure each text-orientation model is of the photographed book page's line crops (test/fixtures/text-lines),
 * upright and turned 180 degrees, sent as test/server/predict.test.ts sends them (the PNG bytes to
 * /v1/models/<model>/predict). Per model: the mean and minimum top-1 score, how many answers are right, and how
 * many give the right label a score above 0.9, the threshold ocr's page policy reads (stages.orientationThreshold:
 * a page is turned when more than half of its lines are called 180 above it).
 *
 * Then the same on the lines ocr cuts out of the photographed page (test/fixtures/photos/page.png) upright and turned
 * 180 degrees: the served ocr reads each page, and each line's box it returns is cut out of that page as ocr's
 * pipeline cuts it (cropQuad) and sent to each classifier as a PNG (the same pixels ocr's orientation stage gets;
 * only lines ocr read above its drop score are there).
 *
 * Usage: npx tsx bench/orientation-confidence.ts [--models text-orientation-fp32,text-orientation-folded,text-orientation]
 * Prints markdown tables.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { packageRoot } from '../src/config.js';
import { cropQuad } from '../src/models/tasks/ocr/crop.js';
import type { Quad } from '../src/models/tasks/ocr/geometry.js';
import { injectableApp } from './lib/app.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'text-orientation-fp32,text-orientation-folded,text-orientation' },
    threshold: { type: 'string', default: '0.9' },
  },
});
const models = values.models.split(',').filter(Boolean);
const threshold = Number(values.threshold);
const fixtures = path.join(packageRoot, 'test/fixtures/text-lines');
const lines: { id: string }[] = JSON.parse(readFileSync(path.join(fixtures, 'manifest.json'), 'utf8')).lines;
const read = (file: string) => readFileSync(path.join(fixtures, file));
const inputs = lines.flatMap((l) => [
  { file: `${l.id}.png`, truth: '0', bytes: read(`${l.id}.png`) },
  { file: `${l.id}-rot180.png`, truth: '180', bytes: read(`${l.id}-rot180.png`) },
]);

// a repository of these models, and ocr with its stages
const repo = mkdtempSync(path.join(os.tmpdir(), 'muon-orientation-'));
const ocrStages = JSON.parse(readFileSync(path.join(packageRoot, 'models/ocr/manifest.json'), 'utf8')).stages;
for (const m of new Set([...models, 'ocr', ocrStages.orientation, ocrStages.recognizer]))
  cpSync(path.join(packageRoot, 'models', m), path.join(repo, m), { recursive: true });
const { app, close } = await injectableApp({ MUON_MODEL_REPOSITORY: repo, MUON_DEFAULT_MODEL: models[0] });

interface Answer {
  label: string;
  score: number;
  truthScore: number;
}
async function ask(model: string, file: string, truth: string, payload: Buffer): Promise<Answer> {
  const res = await app.inject({
    method: 'POST',
    url: `/v1/models/${model}/predict`,
    headers: { 'content-type': 'image/png' },
    payload,
  });
  if (res.statusCode !== 200) throw new Error(`${model} ${file}: ${res.statusCode} ${res.body.slice(0, 200)}`);
  const predictions: { label: string; score: number }[] = res.json().predictions;
  return {
    label: predictions[0].label,
    score: predictions[0].score,
    truthScore: predictions.find((p) => p.label === truth)?.score ?? 0,
  };
}

async function table(title: string, set: { file: string; truth: string; bytes: Buffer }[]) {
  const rows = [
    `| model | ${title} | right | mean top-1 score | min top-1 score | right label above ${threshold} |`,
    '|---|---|---:|---:|---:|---:|',
  ];
  for (const model of models) {
    const answers = [];
    for (const input of set) answers.push({ ...input, ...(await ask(model, input.file, input.truth, input.bytes)) });
    for (const [which, subset] of [
      ['upright', answers.filter((a) => a.truth === '0')],
      ['turned', answers.filter((a) => a.truth === '180')],
      ['all', answers],
    ] as const) {
      const scores = subset.map((a) => a.score);
      const mean = scores.reduce((s, v) => s + v, 0) / scores.length;
      const right = subset.filter((a) => a.label === a.truth).length;
      const sure = subset.filter((a) => a.truthScore > threshold).length;
      rows.push(
        `| ${model} | ${which} (${subset.length}) | ${right} | ${mean.toFixed(4)} | ${Math.min(...scores).toFixed(4)} | ${sure} |`,
      );
    }
    const least = [...answers].sort((a, b) => a.truthScore - b.truthScore).slice(0, 3);
    process.stderr.write(
      `${model}: least sure of ${least.map((a) => `${a.file} (${a.truth}: ${a.truthScore.toFixed(4)})`).join(', ')}\n`,
    );
  }
  return rows.join('\n');
}

/** The lines ocr cuts out of the page, as PNGs: the boxes of the lines it read, cut as its pipeline cuts them. */
async function pageCrops(turned: boolean) {
  const page = sharp(readFileSync(path.join(packageRoot, 'test/fixtures/photos/page.png'))).rotate(turned ? 180 : 0);
  const png = await page.clone().png().toBuffer();
  const { data, info } = await page.clone().removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const res = await app.inject({
    method: 'POST',
    url: '/v1/models/ocr/predict',
    headers: { 'content-type': 'image/png' },
    payload: png,
  });
  if (res.statusCode !== 200) throw new Error(`ocr: ${res.statusCode} ${res.body.slice(0, 200)}`);
  const boxes: Quad[] = res.json().lines.map((l: { box: Quad }) => l.box);
  return await Promise.all(
    boxes.map(async (box, i) => {
      const crop = cropQuad({ data, width: info.width, height: info.height }, box);
      const bytes = await sharp(crop.data, { raw: { width: crop.width, height: crop.height, channels: 3 } })
        .png()
        .toBuffer();
      return { file: `page${turned ? '-rot180' : ''} line ${i + 1}`, truth: turned ? '180' : '0', bytes };
    }),
  );
}

console.log(await table('fixture lines', inputs));
console.log();
console.log(await table('ocr page crops', [...(await pageCrops(false)), ...(await pageCrops(true))]));

await close();
rmSync(repo, { recursive: true, force: true });
