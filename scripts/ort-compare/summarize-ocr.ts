// Writes bench/results/ort-compare-ocr.{md,json} from what run-ocr.sh measured in its work folder: the quality
// bench's answers (quality-lines.json, quality-pages.json), the interleaved latencies (latency-rec.json,
// latency-det.json), the model sizes, onnxruntime's settings (rec-ort/ort-info.json, det-ort/ort-info.json) and the
// machine's load during each phase (load.txt).
// Usage: npx tsx scripts/ort-compare/summarize-ocr.ts <work folder> <out prefix>
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readManifest, resolveFile } from '../../src/models/folder.js';
import { describeMachine } from '../../bench/lib/machine.js';

const [work, out] = process.argv.slice(2);
if (!work || !out) throw new Error('usage: summarize-ocr.ts <work folder> <out prefix>');
const repo = path.join(work, 'repo');
const read = (f: string) =>
  existsSync(path.join(work, f)) ? JSON.parse(readFileSync(path.join(work, f), 'utf8')) : undefined;

interface Latency {
  runs: number;
  batches: number[];
  models: string[];
  rows: { batch: number; input: string; dims: string; ms: number[] }[];
}
/** latency-<kind>.json and latency-<kind>-b<N>.json (one run per batch size: batch 8 takes fewer inputs and runs). */
function latency(kind: string): Latency | undefined {
  const files = readdirSync(work)
    .filter((f) => f === `latency-${kind}.json` || new RegExp(`^latency-${kind}-b\\d+\\.json$`).test(f))
    .sort();
  const parts: (Latency & { file: string })[] = files.map((f) => ({ ...read(f), file: f }));
  if (parts.length === 0) return undefined;
  for (const p of parts)
    if (p.models.join() !== parts[0].models.join()) throw new Error(`${p.file}: other models than ${parts[0].file}`);
  return {
    runs: parts[0].runs,
    runsByBatch: Object.fromEntries(parts.flatMap((p) => p.batches.map((b) => [b, p.runs]))),
    batches: parts.flatMap((p) => p.batches).sort((a, b) => a - b),
    models: parts[0].models,
    rows: parts.flatMap((p) => p.rows),
  } as Latency;
}
const geomean = (v: number[]) => Math.exp(v.reduce((a, b) => a + Math.log(b), 0) / v.length);
/** Speed-up over the first model (fp32) per model and batch: geometric mean over the inputs of the medians. */
function speedups(l: Latency | undefined): Map<string, Record<number, { speedup: number; ms: number }>> {
  const res = new Map<string, Record<number, { speedup: number; ms: number }>>();
  if (!l) return res;
  l.models.forEach((m, i) => {
    const cells: Record<number, { speedup: number; ms: number }> = {};
    for (const b of l.batches) {
      const rows = l.rows.filter((r) => r.batch === b);
      if (rows.length === 0) continue;
      cells[b] = { speedup: geomean(rows.map((r) => r.ms[0] / r.ms[i])), ms: geomean(rows.map((r) => r.ms[i])) };
    }
    res.set(m, cells);
  });
  return res;
}

async function sizeOf(name: string): Promise<number> {
  const dir = path.join(repo, name);
  const { manifest, where } = await readManifest(dir);
  return statSync(resolveFile(dir, manifest.model.path, manifest.model.package, '/model', where)).size;
}

/** Who made each row, and how. */
function describe(
  name: string,
  base: string,
  info: { variants?: Record<string, { settings?: unknown; seconds?: number }> } | undefined,
) {
  if (name === `${base}-fp32` || name === 'ocr-detfp32') return { tool: 'none', how: 'fp32 original' };
  if (name === base) return { tool: 'muon-compress', how: 'served build (scripts/compress-defaults.sh)' };
  const v = name.replace(/^.*-ort-/, '');
  return {
    tool: 'onnxruntime',
    how: v,
    settings: info?.variants?.[v]?.settings,
    seconds: info?.variants?.[v]?.seconds,
  };
}

const load = existsSync(path.join(work, 'load.txt')) ? readFileSync(path.join(work, 'load.txt'), 'utf8').trim() : '';
/** Every quality-<kind>*.json (the bench can be run in parts, a model or a few at a time); the first row per model. */
function quality(kind: 'lines' | 'pages'): { system: string; [k: string]: unknown }[] {
  const rows = readdirSync(work)
    .filter((f) => f.startsWith(`quality-${kind}`) && f.endsWith('.json'))
    .sort()
    .flatMap((f) => (read(f)[kind] as { system: string }[]).map((r) => ({ ...r, from: f, answers: undefined })));
  return rows.filter((r, i) => rows.findIndex((x) => x.system === r.system) === i);
}
const qualityRows = { lines: quality('lines'), pages: quality('pages') };
const pct = (v: number | undefined, d = 2) => (v === undefined ? 'n/a' : `${(v * 100).toFixed(d)} %`);
const mb = (b: number) => `${(b / 1e6).toFixed(2)} MB`;

interface Row {
  name: string;
  tool: string;
  how: string;
  bytes: number;
  speed: Record<number, { speedup: number; ms: number }>;
  metrics: Record<string, number>;
  settings?: unknown;
  quantizeSeconds?: number;
}
async function table(kind: 'rec' | 'det') {
  const base = kind === 'rec' ? 'text-recognition' : 'ocr';
  const lat = latency(kind);
  const info = read(`${kind}-ort/ort-info.json`);
  const sp = speedups(lat);
  const names = lat?.models ?? [];
  const rows: Row[] = [];
  for (const name of names) {
    const d = describe(name, base, info);
    const q =
      kind === 'rec'
        ? qualityRows.lines.find((r: { system: string }) => r.system === name)
        : qualityRows.pages.find((r: { system: string }) => r.system === name);
    const metrics: Record<string, number> =
      q === undefined
        ? {}
        : kind === 'rec'
          ? { cer: q.cer as number, exact: q.exact as number }
          : {
              recall: q.recall as number,
              precision: q.precision as number,
              pageCer: q.pageCer as number,
              pages: (q.byPage as unknown[]).length,
            };
    rows.push({
      name,
      tool: d.tool,
      how: d.how,
      bytes: await sizeOf(name),
      speed: sp.get(name) ?? {},
      metrics,
      ...(d.settings ? { settings: d.settings, quantizeSeconds: d.seconds } : {}),
    });
  }
  // variants onnxruntime failed to produce
  for (const [v, r] of Object.entries<{ ok: boolean; error?: string }>(info?.variants ?? {}))
    if (!r.ok)
      rows.push({
        name: `${base}-ort-${v}`,
        tool: 'onnxruntime',
        how: `${v}: FAILED ${r.error}`,
        bytes: NaN,
        speed: {},
        metrics: {},
      });
  const inputs = Object.fromEntries(
    (lat?.batches ?? []).map((b) => [b, lat!.rows.filter((r) => r.batch === b).length]),
  );
  return {
    rows,
    batches: lat?.batches ?? [],
    inputsByBatch: inputs,
    runsByBatch: (lat as { runsByBatch?: unknown })?.runsByBatch,
  };
}

/** One line per axis: ours against the best onnxruntime row (and against each, for the record). */
function verdicts(rows: Row[], metric: { key: string; label: string; higher: boolean }, batches: number[]): string[] {
  const ours = rows.find((r) => r.tool === 'muon-compress');
  const ort = rows.filter((r) => r.tool === 'onnxruntime' && Number.isFinite(r.bytes));
  if (!ours || ort.length === 0) return ['(no comparison: a row is missing)'];
  const axes: { label: string; get: (r: Row) => number | undefined; higher: boolean; show: (v: number) => string }[] = [
    { label: 'size', get: (r) => r.bytes, higher: false, show: mb },
    ...batches.map((b) => ({
      label: `speed-up at batch ${b}`,
      get: (r: Row) => r.speed[b]?.speedup,
      higher: true,
      show: (v: number) => `${v.toFixed(2)}x`,
    })),
    { label: metric.label, get: (r) => r.metrics[metric.key], higher: metric.higher, show: (v) => pct(v) },
  ];
  return axes.map((a) => {
    const o = a.get(ours);
    const vals = ort.map((r) => ({ r, v: a.get(r) })).filter((x) => x.v !== undefined) as { r: Row; v: number }[];
    if (o === undefined || vals.length === 0) return `- **${a.label}**: not measured`;
    const best = vals.reduce((x, y) => ((a.higher ? y.v > x.v : y.v < x.v) ? y : x));
    const beats = vals.filter((x) => (a.higher ? o >= x.v : o <= x.v)).length;
    const win = a.higher ? o >= best.v : o <= best.v;
    return (
      `- **${a.label}**: ours ${a.show(o)}, best onnxruntime ${a.show(best.v)} (${best.r.how}): ` +
      `${win ? 'muon-compress at least as good' : 'onnxruntime better'}; ours at least as good as ${beats} of ${vals.length} onnxruntime variants`
    );
  });
}

/** How many inputs and runs each batch size's medians come from. */
function timing(t: Awaited<ReturnType<typeof table>>): string {
  const runs = (t.runsByBatch ?? {}) as Record<number, number>;
  return `Speed-ups: geometric mean over ${t.batches.map((b) => `${t.inputsByBatch[b]} evaluation inputs x ${runs[b] ?? '?'} runs at batch ${b}`).join(', ')} (ms: geometric mean of the medians).`;
}
const rec = await table('rec');
const det = await table('det');
const machine = describeMachine();
const md: string[] = [
  '# muon-compress vs onnxruntime.quantization on the OCR recognizer and detector',
  '',
  `${new Date().toISOString()}, ${machine.cpuModel} x ${machine.cores}, Node ${process.version}. ` +
    'Written by `scripts/ort-compare/run-ocr.sh` (see scripts/ort-compare/README.md). Quality: `bench/quality.ts` on the ' +
    'evaluation split (fonts and texts calibration never saw). Speed: `bench/compression.ts`, every model of a table ' +
    'in one process, one intra-op thread, in turn, median per input, geometric mean of the speed-ups over fp32.',
  '',
  `Machine load (\`/proc/loadavg\` at the start of each phase; the VM has ${machine.cores} cores, so a load above that means the timings are noisy):`,
  '',
  '```text',
  load,
  '```',
  '',
  '## Recognizer (text-recognition, PP-OCRv4 rec): line CER on the evaluation lines',
  '',
  `| variant | tool | size | vs fp32 | ${rec.batches.map((b) => `speed-up b${b} (ms)`).join(' | ')} | CER | exact lines |`,
  `|---|---|---:|---:|${rec.batches.map(() => '---:|').join('')}---:|---:|`,
];
const fp32Rec = rec.rows.find((r) => r.tool === 'none')?.bytes ?? NaN;
for (const r of rec.rows)
  md.push(
    `| ${r.name} | ${r.tool}: ${r.how} | ${Number.isFinite(r.bytes) ? mb(r.bytes) : '-'} | ${Number.isFinite(r.bytes) ? (r.bytes / fp32Rec).toFixed(2) : '-'} | ` +
      rec.batches
        .map((b) => (r.speed[b] ? `${r.speed[b].speedup.toFixed(2)}x (${r.speed[b].ms.toFixed(1)})` : '-'))
        .join(' | ') +
      ` | ${pct(r.metrics.cer)} | ${pct(r.metrics.exact, 1)} |`,
  );
md.push('', timing(rec), '');
md.push(
  ...verdicts(rec.rows, { key: 'cer', label: 'line CER', higher: false }, rec.batches),
  ...verdicts(rec.rows, { key: 'exact', label: 'exact lines', higher: true }, []).slice(-1),
  '',
);
md.push(
  '## Detector (the ocr model, PP-OCRv4 det): OCR pages with only the detector swapped',
  '',
  "Every row is the served `ocr` manifest (the same stages: the served recognizer and orientation models, the page's " +
    'orientation policy, column reading order) with a different detector model.',
  '',
  `| variant | tool | size | vs fp32 | ${det.batches.map((b) => `speed-up b${b} (ms)`).join(' | ')} | line recall | line precision | page CER |`,
  `|---|---|---:|---:|${det.batches.map(() => '---:|').join('')}---:|---:|---:|`,
);
const fp32Det = det.rows.find((r) => r.tool === 'none')?.bytes ?? NaN;
for (const r of det.rows)
  md.push(
    `| ${r.name} | ${r.tool}: ${r.how} | ${Number.isFinite(r.bytes) ? mb(r.bytes) : '-'} | ${Number.isFinite(r.bytes) ? (r.bytes / fp32Det).toFixed(2) : '-'} | ` +
      det.batches
        .map((b) => (r.speed[b] ? `${r.speed[b].speedup.toFixed(2)}x (${r.speed[b].ms.toFixed(0)})` : '-'))
        .join(' | ') +
      ` | ${pct(r.metrics.recall, 1)} | ${pct(r.metrics.precision, 1)} | ${pct(r.metrics.pageCer)} |`,
  );
md.push(
  '',
  timing(det),
  '',
  ...verdicts(det.rows, { key: 'recall', label: 'page line recall', higher: true }, det.batches),
  ...verdicts(det.rows, { key: 'pageCer', label: 'page CER', higher: false }, []).slice(-1),
  '',
);
// variants stopped or skipped by hand (a note the person running it leaves in <work>/not-run.txt)
const notRun = existsSync(path.join(work, 'not-run.txt'))
  ? readFileSync(path.join(work, 'not-run.txt'), 'utf8').trim()
  : '';
if (notRun) md.push('## Not run', '', ...notRun.split('\n').map((l) => `- ${l}`), '');
// what the person who ran it observed (free text in <work>/notes.md), kept with the numbers it explains
if (existsSync(path.join(work, 'notes.md')))
  md.push('## Notes on this run', '', readFileSync(path.join(work, 'notes.md'), 'utf8').trim(), '');
writeFileSync(`${out}.md`, md.join('\n'));
writeFileSync(
  `${out}.json`,
  JSON.stringify(
    {
      machine,
      load,
      notRun,
      recognizer: rec,
      detector: det,
      ortInfo: { rec: read('rec-ort/ort-info.json'), det: read('det-ort/ort-info.json') },
    },
    null,
    1,
  ) + '\n',
);
console.log(md.join('\n'));
