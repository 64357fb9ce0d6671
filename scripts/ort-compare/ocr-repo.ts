// Builds a model repository for bench/quality.ts and bench/compression.ts: a copy of models/ plus one folder per
// onnxruntime-quantized variant, and `ocr-detfp32`, the served ocr with its detector back to fp32 (so that every
// ocr row differs only in its detector: same stages, same recognizer and orientation models as the served ocr).
// Usage: npx tsx scripts/ort-compare/ocr-repo.ts <work folder>   (reads <work>/rec-ort/*.onnx, <work>/det-ort/*.onnx,
// writes <work>/repo and prints the folder names it added)
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const work = process.argv[2];
if (!work) throw new Error('usage: ocr-repo.ts <work folder>');
const repo = path.join(work, 'repo');
rmSync(repo, { recursive: true, force: true });
cpSync('models', repo, { recursive: true });

const json = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
/**
 * A page's lines queue for the recognizer stage: on a loaded 2-core VM a page took more than the default 10 s
 * deadline, and more than a minute (the bench then fails with MUON_ERR_DEADLINE_EXCEEDED). Every ocr row of the copy
 * waits up to 10 minutes. Only the deadline changes, not what the models answer.
 */
function patient(manifest: Record<string, unknown>): Record<string, unknown> {
  const batching = (manifest.batching ?? {}) as Record<string, unknown>;
  return { ...manifest, batching: { ...batching, defaultTimeoutMs: 600_000, maxTimeoutMs: 600_000 } };
}

/** The ORT variants written by ort_quantize_ocr.py (not its intermediate files). */
const variants = (dir: string) =>
  existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.onnx') && !['model-opset13.onnx', 'preprocessed.onnx'].includes(f))
        .map((f) => f.replace(/\.onnx$/, ''))
        .sort()
    : [];

function addFolder(name: string, manifest: Record<string, unknown>, model: string, note: string) {
  const dir = path.join(repo, name);
  mkdirSync(dir, { recursive: true });
  cpSync(model, path.join(dir, 'model.onnx'));
  const sha256 = createHash('sha256').update(readFileSync(model)).digest('hex');
  const m = { ...manifest, model: { path: 'model.onnx', sha256 } } as Record<string, unknown>;
  delete m.compression; // the schema's compression block describes muon-compress builds
  m.description = `${String(manifest.description).replace(/ \[[^\]]*\]$/, '')} ${note}`;
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(m, null, 2) + '\n');
  console.log(name);
}

const rec = json('models/text-recognition-fp32/manifest.json');
for (const v of variants(path.join(work, 'rec-ort')))
  addFolder(`text-recognition-ort-${v}`, rec, path.join(work, 'rec-ort', `${v}.onnx`), `[onnxruntime ${v}]`);

// the served ocr manifest (stages included); ocr-detfp32 points at the fp32 detector of the package
const ocr = patient(json('models/ocr/manifest.json'));
writeFileSync(path.join(repo, 'ocr', 'manifest.json'), JSON.stringify(ocr, null, 2) + '\n');
const detFp32 = { ...ocr, model: json('models/ocr-fp32/manifest.json').model } as Record<string, unknown>;
delete detFp32.compression;
detFp32.description = `${String(ocr.description).replace(/ \[[^\]]*\]$/, '')} [fp32 detector]`;
mkdirSync(path.join(repo, 'ocr-detfp32'));
writeFileSync(path.join(repo, 'ocr-detfp32', 'manifest.json'), JSON.stringify(detFp32, null, 2) + '\n');
console.log('ocr-detfp32');
for (const v of variants(path.join(work, 'det-ort')))
  addFolder(`ocr-ort-${v}`, ocr, path.join(work, 'det-ort', `${v}.onnx`), `[detector: onnxruntime ${v}]`);
