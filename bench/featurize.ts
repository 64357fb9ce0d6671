/**
 * What language-id's feature extraction costs the event loop per request: `featurizeSparse` (the character n-gram
 * walk) on a normalized text, by this build's featurizer and by a baseline build's, in one run, rounds taking turns.
 * Texts: the bench's sentence (43 characters) and a 1,000-character paragraph of mixed scripts.
 *
 * Usage: npx tsx bench/featurize.ts --baseline <worktree with its own dist/> [--calls 200000] [--rounds 5]
 *        [--out bench/results/featurize]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import * as current from '../src/preprocess/text.js';
import { describeMachine } from './lib/machine.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({
  options: {
    baseline: { type: 'string' },
    calls: { type: 'string', default: '200000' },
    rounds: { type: 'string', default: '5' },
    out: { type: 'string', default: 'bench/results/featurize' },
  },
});
if (!values.baseline) throw new Error('--baseline <worktree> is required (a checkout of the build to compare with)');
const calls = Number(values.calls);
const rounds = Number(values.rounds);
const baselineText = (await import(
  pathToFileURL(path.join(values.baseline, 'dist/preprocess/text.js')).href
)) as typeof current;

const groups = JSON.parse(readFileSync('models/language-id/vocabulary.json', 'utf8')).groups as current.NgramGroup[];
const sentence = readFileSync('bench/inputs/sentence.txt', 'utf8');
const mixed = 'Der schnelle braune Fuchs, Мы пошли в магазин, Σήμερα ο καιρός, the quick brown fox jumps. ';
const texts = { 'sentence (43 characters)': sentence, 'paragraph (1,000 characters)': mixed.repeat(12).slice(0, 1000) };
const builds = { 'this build': current.ngramFeaturizer(groups), baseline: baselineText.ngramFeaturizer(groups) };

/** Microseconds per call of `featurizeSparse` on `norm`. */
function time(f: current.NgramFeaturizer, norm: string): number {
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) f.featurizeSparse(norm);
  return ((performance.now() - t0) * 1000) / calls;
}

const rows: string[] = [];
for (const [label, text] of Object.entries(texts)) {
  const norm = current.normalizeText(text);
  const [a, b] = Object.values(builds).map((f) => f.featurizeSparse(norm));
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`the builds' features differ for the ${label}`);
  const us: Record<string, number[]> = { 'this build': [], baseline: [] };
  for (const f of Object.values(builds)) time(f, norm); // warm-up
  for (let r = 0; r < rounds; r++) for (const [name, f] of Object.entries(builds)) us[name].push(time(f, norm));
  const [now, before] = [median(us['this build']), median(us.baseline)];
  rows.push(`| ${label} | ${now.toFixed(2)} | ${before.toFixed(2)} | ${(before / now).toFixed(2)}x |`);
}

const machine = describeMachine();
const report = [
  '# language-id feature extraction per request',
  '',
  `${new Date().toISOString()}, ${machine.cpuModel} x ${machine.cores}, Node ${process.version}. \`npx tsx bench/featurize.ts --baseline <worktree> --calls ${calls} --rounds ${rounds}\`: the median of ${rounds} rounds of ${calls} calls of \`featurizeSparse\` on the normalized text, the builds taking turns; both give the same features.`,
  '',
  '| text | this build µs | baseline µs | speed-up |',
  '| --- | ---: | ---: | ---: |',
  ...rows,
  '',
].join('\n');
writeFileSync(`${values.out}.md`, report);
console.log(report);
