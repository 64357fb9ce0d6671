/**
 * Quality of what the server answers, by task metric, on the evaluation split written by
 * bench/quality/generate.ts: OCR pages (line recall, precision, page CER), recognizer lines (CER), orientation
 * (top-1 on lines upright and turned over), for each served model and its fp32 original, and RapidOCR on the same
 * pages and lines when its answers are there (scripts/ocr-reference/run.sh).
 *
 * Usage: npx tsx bench/quality.ts [--data bench/quality/data] [--split evaluation] [--pages N] [--lines N]
 * [--out bench/results/quality] (writes <out>.md and <out>.json). Then the gate: each served compressed default
 * (--gate compressed=original,...) must read within --max-loss (0.01: one point) of its original on every task
 * metric both were scored on, else the exit code is 1.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { packageRoot } from '../src/config.js';
import {
  scoreLines,
  scorePageWeighted,
  type Segment,
  segmentF1,
  summarizePages,
  top1,
  type PagesSummary,
  qualityLosses,
  type TaskScores,
} from '../src/quantize/task-metrics.js';
import { injectableApp } from './lib/app.js';
import { describeMachine } from './lib/machine.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: path.join(packageRoot, 'bench/quality/data') },
    split: { type: 'string', default: 'evaluation' },
    pages: { type: 'string' },
    lines: { type: 'string' },
    out: { type: 'string', default: path.join(packageRoot, 'bench/results/quality') },
    'page-models': { type: 'string', default: 'ocr,ocr-fp32' },
    'line-models': { type: 'string', default: 'text-recognition,text-recognition-folded,text-recognition-fp32' },
    'orientation-models': { type: 'string', default: 'text-orientation,text-orientation-folded,text-orientation-fp32' },
    'vad-models': { type: 'string', default: 'voice-activity,voice-activity-fp32' },
    // another model repository (a copy of models/ with changed manifests, to measure a setting)
    repository: { type: 'string' },
    // served defaults against their originals: exit 1 when one reads worse by more than --max-loss on a task metric
    gate: {
      type: 'string',
      default:
        'ocr=ocr-fp32,text-recognition=text-recognition-fp32,text-recognition-folded=text-recognition-fp32,text-orientation=text-orientation-fp32,text-orientation-folded=text-orientation-fp32,voice-activity=voice-activity-fp32',
    },
    'max-loss': { type: 'string', default: '0.01' },
  },
});
const root = path.join(values.data, values.split);
interface PageTruth {
  file: string;
  layout: string;
  lines: { text: string }[];
}
interface LineTruth {
  file: string;
  text: string;
}
const pages: PageTruth[] = JSON.parse(readFileSync(path.join(root, 'pages.json'), 'utf8')).slice(
  0,
  values.pages ? Number(values.pages) : undefined,
);
const lines: LineTruth[] = JSON.parse(readFileSync(path.join(root, 'lines.json'), 'utf8')).slice(
  0,
  values.lines ? Number(values.lines) : undefined,
);

const list = (v: string) => v.split(',').filter(Boolean);
const { app, close } = await injectableApp(
  values.repository ? { MUON_MODEL_REPOSITORY: path.resolve(values.repository) } : {},
);

/** One request to the served model, as a client sends it: the bytes as they are, the server tells what they are. */
async function predict(
  model: string,
  bytes: Buffer,
): Promise<{
  lines?: { text: string }[];
  predictions?: { label: string }[];
  segments?: { start_ms: number; end_ms: number }[];
}> {
  const res = await app.inject({
    method: 'POST',
    url: `/predict?model=${model}`,
    headers: { 'content-type': 'application/octet-stream' },
    payload: bytes,
  });
  if (res.statusCode !== 200) throw new Error(`${model}: ${res.statusCode} ${res.body.slice(0, 200)}`);
  return res.json();
}

const read = (file: string) => readFileSync(path.join(root, file));
const pct = (v: number) => `${(v * 100).toFixed(1)} %`;

interface PageResult extends PagesSummary {
  system: string;
  pagesPerSecond: number;
  answers: Record<string, string[]>;
  byPage: { file: string; layout: string; recall: number; pageCer: number }[];
}
function scorePages(system: string, answers: Map<string, string[]>, seconds: number): PageResult {
  const scores = pages.map((p) =>
    scorePageWeighted(
      p.lines.map((l) => l.text),
      answers.get(p.file) ?? [],
    ),
  );
  return {
    system,
    ...summarizePages(scores),
    pagesPerSecond: pages.length / seconds,
    answers: Object.fromEntries(answers),
    byPage: pages.map((p, i) => ({
      file: p.file,
      layout: p.layout,
      recall: scores[i].truthLines === 0 ? 1 : scores[i].matched / scores[i].truthLines,
      pageCer: scores[i].pageCer,
    })),
  };
}

/**
 * Each input through every model in turn (the first model moving one place on at each input), so a load that comes
 * and goes on a shared machine falls on all of them alike; each model's seconds are its own requests' sum.
 */
async function inTurn<T>(models: string[], count: number, ask: (model: string, i: number) => Promise<T>) {
  const answers = new Map(models.map((m) => [m, [] as T[]]));
  const seconds = new Map(models.map((m) => [m, 0]));
  for (let i = 0; i < count; i++)
    for (let k = 0; k < models.length; k++) {
      const model = models[(i + k) % models.length];
      const t0 = performance.now();
      answers.get(model)![i] = await ask(model, i);
      seconds.set(model, seconds.get(model)! + (performance.now() - t0) / 1000);
    }
  return models.map((model) => ({ model, answers: answers.get(model)!, seconds: seconds.get(model)! }));
}

// --- pages ---
const pageResults: PageResult[] = [];
const pageModels = list(values['page-models']);
for (const { model, answers, seconds } of await inTurn(pageModels, pages.length, async (model, i) =>
  (await predict(model, read(pages[i].file))).lines!.map((l) => l.text),
))
  pageResults.push(scorePages(model, new Map(pages.map((p, i) => [p.file, answers[i]])), seconds));
process.stderr.write(`${pageModels.join(', ')}: ${pages.length} pages\n`);

// --- lines ---
const lineResults: { system: string; cer: number; exact: number; linesPerSecond: number }[] = [];
const lineModels = list(values['line-models']);
for (const { model, answers, seconds } of await inTurn(
  lineModels,
  lines.length,
  async (model, i) => (await predict(model, read(lines[i].file))).lines?.[0]?.text ?? '',
)) {
  const pairs = lines.map((l, i) => ({ truth: l.text, read: answers[i] }));
  lineResults.push({
    system: model,
    ...scoreLines(pairs),
    linesPerSecond: lines.length / seconds,
  });
}
process.stderr.write(`${lineModels.join(', ')}: ${lines.length} lines\n`);

// --- orientation: every line upright, and turned over ---
const orientationResults: { system: string; top1: number }[] = [];
const orientationModels = list(values['orientation-models']);
const turned = orientationModels.length
  ? await Promise.all(lines.map(async (l) => sharp(read(l.file)).rotate(180).png().toBuffer()))
  : [];
for (const model of orientationModels) {
  const pairs: { expected: string; predicted: string }[] = [];
  for (const [i, l] of lines.entries()) {
    pairs.push({ expected: '0', predicted: (await predict(model, read(l.file))).predictions![0].label });
    pairs.push({ expected: '180', predicted: (await predict(model, turned[i])).predictions![0].label });
  }
  orientationResults.push({ system: model, top1: top1(pairs) });
}

// --- voice activity: segments against the utterances' spans (when the data has speech) ---
const vadResults: { system: string; precision: number; recall: number; f1: number; recordings: number }[] = [];
const speechFile = path.join(root, 'speech.json');
if (existsSync(speechFile)) {
  const recordings: { file: string; segments: Segment[] }[] = JSON.parse(readFileSync(speechFile, 'utf8'));
  for (const model of list(values['vad-models'])) {
    let [hits, truth, detected] = [0, 0, 0];
    for (const r of recordings) {
      const found = (await predict(model, read(r.file))).segments!.map((s) => ({
        start: s.start_ms / 1000,
        end: s.end_ms / 1000,
      }));
      hits += segmentF1(r.segments, found).hits;
      truth += r.segments.length;
      detected += found.length;
    }
    const precision = detected === 0 ? 0 : hits / detected;
    const recall = truth === 0 ? 1 : hits / truth;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    vadResults.push({ system: model, precision, recall, f1, recordings: recordings.length });
  }
} else process.stderr.write(`${speechFile} is missing (espeak-ng was not installed when the data was made): no VAD\n`);

// --- RapidOCR, when its answers were written for this split ---
const rapidFile = `${values.out}-rapidocr-${values.split}.json`;
let rapid:
  | {
      tool: string;
      pages: Record<string, string[]>;
      lines: Record<string, string>;
      pageSeconds: number;
      lineSeconds: number;
      /** The same pages read with other settings (at Muon's detector size). */
      variants?: { tool: string; pages: Record<string, string[]>; pageSeconds: number }[];
    }
  | undefined;
if (existsSync(rapidFile)) {
  rapid = JSON.parse(readFileSync(rapidFile, 'utf8'));
  const known = pages.filter((p) => rapid!.pages[p.file] !== undefined);
  if (known.length === pages.length) {
    pageResults.push(scorePages('RapidOCR', new Map(Object.entries(rapid!.pages)), rapid!.pageSeconds));
    for (const v of rapid!.variants ?? [])
      pageResults.push(scorePages(v.tool, new Map(Object.entries(v.pages)), v.pageSeconds));
    const pairs = lines.map((l) => ({ truth: l.text, read: rapid!.lines[l.file] ?? '' }));
    lineResults.push({
      system: 'RapidOCR recognizer',
      ...scoreLines(pairs),
      linesPerSecond: lines.length / rapid!.lineSeconds,
    });
  } else process.stderr.write(`${rapidFile} does not cover these pages; RapidOCR left out\n`);
}

await close();

const machine = describeMachine();
const md = [
  `# Quality by task metric (${values.split} split)`,
  '',
  `${new Date().toISOString()}, ${machine.cpuModel} x ${machine.cores}, Node ${process.version}. ` +
    `\`npx tsx bench/quality.ts${process.argv.slice(2).length ? ' ' + process.argv.slice(2).join(' ') : ''}\`. ` +
    `Data: \`bench/quality/generate.ts\` (${pages.length} pages, ${lines.length} lines; fonts and texts of the ` +
    `${values.split} split only). A page line counts as read when one returned line is within 10 % CER of it (one to ` +
    `one); page CER compares the page's text in reading order. Speeds are one request at a time through ` +
    `\`app.inject\`, the models taking turns input by input (RapidOCR: its own loop in Python), not server throughput.`,
  '',
  '## Pages',
  '',
  '| system | line recall | line precision | page CER | pages/s |',
  '|---|---|---|---|---|',
  ...pageResults.map(
    (r) =>
      `| ${r.system} | ${pct(r.recall)} | ${pct(r.precision)} | ${pct(r.pageCer)} | ${r.pagesPerSecond.toFixed(2)} |`,
  ),
  '',
  '## Lines (recognizer alone, on line images)',
  '',
  '| system | CER | exact lines | lines/s |',
  '|---|---|---|---|',
  ...lineResults.map((r) => `| ${r.system} | ${pct(r.cer)} | ${pct(r.exact)} | ${r.linesPerSecond.toFixed(1)} |`),
  '',
  '## Orientation (each line upright and turned 180 degrees)',
  '',
  '| model | top-1 |',
  '|---|---|',
  ...orientationResults.map((r) => `| ${r.system} | ${pct(r.top1)} |`),
  '',
  ...(vadResults.length === 0
    ? []
    : [
        `## Voice activity (${vadResults[0].recordings} recordings; a segment is found when its IoU with a spoken utterance is at least 0.5)`,
        '',
        '| model | segment precision | segment recall | segment F1 |',
        '|---|---|---|---|',
        ...vadResults.map((r) => `| ${r.system} | ${pct(r.precision)} | ${pct(r.recall)} | ${pct(r.f1)} |`),
        '',
      ]),
];
writeFileSync(`${values.out}.md`, md.join('\n'));
writeFileSync(
  `${values.out}.json`,
  JSON.stringify(
    {
      machine,
      split: values.split,
      pages: pageResults,
      lines: lineResults,
      orientation: orientationResults,
      vad: vadResults,
    },
    null,
    1,
  ) + '\n',
);
console.log(md.join('\n'));

// the gate: each compressed default against its original, by the metrics both were scored on
const scores = new Map<string, TaskScores>();
for (const r of pageResults) scores.set(r.system, { recall: r.recall, pageCer: r.pageCer });
for (const r of lineResults) scores.set(r.system, { cer: r.cer });
for (const r of orientationResults) scores.set(r.system, { top1: r.top1 });
for (const r of vadResults) scores.set(r.system, { f1: r.f1 });
let failed = false;
for (const pair of list(values.gate)) {
  const [compressed, original] = pair.split('=');
  const [c, o] = [scores.get(compressed), scores.get(original)];
  if (!c || !o) continue; // not measured in this run
  const losses = qualityLosses(c, o, Number(values['max-loss']));
  console.log(`gate ${compressed} vs ${original}: ${losses.length === 0 ? 'pass' : `FAIL (${losses.join('; ')})`}`);
  failed ||= losses.length > 0;
}
if (failed) process.exitCode = 1;
