/**
 * Writes the OCR evaluation data: text lines and laid-out pages, each split (calibration, evaluation) drawn from
 * its own texts (bench/quality/corpus/<split>-*.txt) and its own fonts (render.ts), so the two share no source
 * text and no font. Deterministic: the same seed writes the same files.
 *
 * Usage: npx tsx bench/quality/generate.ts [--out bench/quality/data] [--seed 11] [--lines 500] [--pages 32]
 * (the calibration split gets 40 % of each count). Writes <out>/<split>/lines/*, lines.json, pages/*, pages.json.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { corpusWords, renderLine, renderPage, Rng, type Split } from './render.js';
import { encodeWav } from '../../test/helpers/wav.js';
import { haveEspeak, RATE, renderSpeech } from './speech.js';

const here = import.meta.dirname;

/** Numbers, dates, prices, codes: lines no prose has. Each split has its own templates. */
const SYNTHETIC: Record<Split, ((rng: Rng) => string)[]> = {
  calibration: [
    (r) => `Ref ${r.int(100, 999)}-${r.int(1000, 9999)}`,
    (r) =>
      `${r.int(1990, 2030)}-${pad(r.int(1, 12))}-${pad(r.int(1, 28))} at ${pad(r.int(0, 23))}:${pad(r.int(0, 59))}`,
    (r) => `Price EUR ${r.int(1, 999)},${pad(r.int(0, 99))} incl. VAT`,
    (r) => `Room ${r.int(1, 60)}, floor ${r.int(1, 9)}, building ${String.fromCharCode(65 + r.int(0, 7))}`,
    (r) => `Page ${r.int(1, 40)} of ${r.int(40, 90)}`,
  ],
  evaluation: [
    (r) => `Invoice No. ${r.int(10000, 99999)} dated ${pad(r.int(1, 28))}/${pad(r.int(1, 12))}/${r.int(1990, 2030)}`,
    (r) => `Total: $${r.int(1, 9)},${r.int(100, 999)}.${pad(r.int(0, 99))}`,
    (r) => `Call +1 (${r.int(200, 989)}) ${r.int(200, 999)}-${r.int(1000, 9999)} before ${r.int(1, 12)} pm`,
    (r) => `Order #${r.int(1000, 9999)} shipped ${r.pick(MONTHS)} ${r.int(1, 28)}, ${r.int(1990, 2030)}`,
    (r) => `Version ${r.int(0, 9)}.${r.int(0, 30)}.${r.int(0, 99)} (build ${r.int(100, 999)})`,
  ],
};
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October'];
const pad = (n: number) => String(n).padStart(2, '0');

/** The words of a split's texts, in order. */
export function splitWords(split: Split): string[] {
  const dir = path.join(here, 'corpus');
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${split}-`))
    .sort()
    .flatMap((f) => corpusWords(readFileSync(path.join(dir, f), 'utf8')));
}

/** A line's text: a run of 2 to 10 words from the split's texts, or one of its synthetic lines. */
export function lineText(words: readonly string[], split: Split, rng: Rng): string {
  if (rng.chance(0.2)) return rng.pick(SYNTHETIC[split])(rng);
  const n = rng.int(2, 10);
  const at = rng.int(0, words.length - n);
  return words.slice(at, at + n).join(' ');
}

/** A page's heading and paragraphs: consecutive text from a random place in the split's texts. */
export function pageText(words: readonly string[], rng: Rng): { heading: string; paragraphs: string[][] } {
  const headLength = rng.int(3, 7);
  const headAt = rng.int(0, words.length - headLength);
  const heading = words
    .slice(headAt, headAt + headLength)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join(' ');
  const paragraphs: string[][] = [];
  let at = rng.int(0, words.length - 400);
  for (let k = rng.int(2, 5); k > 0; k--) {
    const n = rng.int(25, 90);
    paragraphs.push(words.slice(at, at + n));
    at += n;
  }
  return { heading, paragraphs };
}

/** The fixtures' upright line crops of a photographed book page, copied under `dir`/lines with their truth. */
function copyRealLines(dir: string): { file: string; text: string; font: string; size: number }[] {
  const fixtures = path.join(here, '../../test/fixtures/text-lines');
  const manifest: { lines: { id: string; text: string; rect: { height: number } }[] } = JSON.parse(
    readFileSync(path.join(fixtures, 'manifest.json'), 'utf8'),
  );
  return manifest.lines.map((l) => {
    const file = `lines/photo-${l.id}.png`;
    copyFileSync(path.join(fixtures, `${l.id}.png`), path.join(dir, file));
    return { file, text: l.text, font: 'photographed book page', size: l.rect.height };
  });
}

async function main() {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: path.join(here, 'data') },
      seed: { type: 'string', default: '11' },
      lines: { type: 'string', default: '500' },
      pages: { type: 'string', default: '32' },
      recordings: { type: 'string', default: '40' },
    },
  });
  const seed = Number(values.seed);
  for (const split of ['calibration', 'evaluation'] as const) {
    const share = split === 'evaluation' ? 1 : 0.4;
    const lineCount = Math.round(Number(values.lines) * share);
    const pageCount = Math.round(Number(values.pages) * share);
    const dir = path.join(values.out, split);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(path.join(dir, 'lines'), { recursive: true });
    mkdirSync(path.join(dir, 'pages'), { recursive: true });
    const words = splitWords(split);
    // one generator per split and kind, so adding pages does not change the lines
    const lineRng = new Rng(seed * 1000 + (split === 'evaluation' ? 1 : 2));
    const lines = [];
    for (let i = 0; i < lineCount; i++) {
      const sample = await renderLine(lineText(words, split, lineRng), split, lineRng);
      const file = `lines/${String(i).padStart(4, '0')}.${sample.format}`;
      writeFileSync(path.join(dir, file), sample.image);
      lines.push({ file, text: sample.text, font: sample.font, size: sample.size });
    }
    // and the real photographed lines of the test fixtures (a book page), upright: in the calibration split, since
    // the compressor calibrates the served models on them (scripts/compress-defaults.sh)
    if (split === 'calibration') lines.push(...copyRealLines(dir));
    writeFileSync(path.join(dir, 'lines.json'), JSON.stringify(lines, null, 1) + '\n');
    const pageRng = new Rng(seed * 1000 + (split === 'evaluation' ? 3 : 4));
    const pages = [];
    for (let i = 0; i < pageCount; i++) {
      const { heading, paragraphs } = pageText(words, pageRng);
      // one page in eight lies upside down
      const sample = await renderPage(heading, paragraphs, split, pageRng, i % 8 === 3);
      const file = `pages/${String(i).padStart(3, '0')}.${sample.format}`;
      writeFileSync(path.join(dir, file), sample.image);
      pages.push({ file, width: sample.width, height: sample.height, layout: sample.layout, lines: sample.lines });
      process.stdout.write(`\r${split}: ${lineCount} lines, page ${i + 1}/${pageCount}`);
    }
    writeFileSync(path.join(dir, 'pages.json'), JSON.stringify(pages) + '\n');
    process.stdout.write('\n');
    if (!haveEspeak()) {
      process.stdout.write(`${split}: no speech (espeak-ng is not installed: apt-get install espeak-ng)\n`);
      continue;
    }
    mkdirSync(path.join(dir, 'speech'), { recursive: true });
    const speechRng = new Rng(seed * 1000 + (split === 'evaluation' ? 5 : 6));
    const recordings = [];
    const recordingCount = Math.round(Number(values.recordings) * share);
    for (let i = 0; i < recordingCount; i++) {
      const sample = renderSpeech(words, split, speechRng);
      const file = `speech/${String(i).padStart(3, '0')}.wav`;
      writeFileSync(path.join(dir, file), encodeWav([sample.samples], RATE));
      recordings.push({ file, bed: sample.bed, seconds: sample.samples.length / RATE, segments: sample.segments });
      process.stdout.write(`\r${split}: recording ${i + 1}/${recordingCount}`);
    }
    writeFileSync(path.join(dir, 'speech.json'), JSON.stringify(recordings, null, 1) + '\n');
    process.stdout.write('\n');
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
