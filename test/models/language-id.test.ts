import { readFileSync } from 'node:fs';
import path from 'node:path';
import lande from 'lande';
import t from 'tap';
import { buildLangId, langIdDir } from '../../scripts/build-langid-model.js';
import { parseManifest } from '../../src/models/manifest.js';
import { ModelSession } from '../../src/models/session.js';
import { ngramFeaturizer, ngramFrequencies, normalizeText, type NgramGroup } from '../../src/preprocess/text.js';

// The committed language-id model (lande's network written as ONNX by scripts/build-langid-model.ts) against
// lande() itself: our featurizer + our ONNX through onnxruntime must give lande's probabilities.

const file = (f: string) => readFileSync(path.join(langIdDir, f));
const labels = file('labels.txt').toString('utf8').trim().split('\n');
const featurizer = ngramFeaturizer(JSON.parse(file('vocabulary.json').toString('utf8')).groups);

/** Sentences in 12 languages and 8 scripts, with the language lande gives each. */
export const sentences: [string, string][] = [
  ['Bonjour tout le monde, comment allez-vous aujourd’hui ?', 'fra'],
  ['The quick brown fox jumps over the lazy dog.', 'eng'],
  ['Der schnelle braune Fuchs springt über den faulen Hund.', 'deu'],
  ['¿Dónde está la biblioteca? Necesito estudiar mucho.', 'spa'],
  ['Questa è una bellissima giornata per andare al mare.', 'ita'],
  ['Eu gosto muito de ler livros no fim de semana.', 'por'],
  ['Мы пошли в магазин, чтобы купить хлеба и молока.', 'rus'],
  ['Σήμερα ο καιρός είναι πολύ ωραίος στην Αθήνα.', 'ell'],
  ['我们明天早上去公园散步吧。', 'cmn'],
  ['今日はとても良い天気ですね。', 'jpn'],
  ['Dziękuję bardzo za pomoc, to było naprawdę miłe.', 'pol'],
  ['Ik woon al tien jaar in een klein huis in Amsterdam.', 'nld'],
];

t.test('normalization and n-grams follow lande', async (t) => {
  t.equal(normalizeText('  Hello-World!!  123  Ça va? '), ' hello world ça va ');
  t.equal(normalizeText('---'), '  ');
  t.same(
    [...ngramFrequencies(' ab ', 2)],
    [
      [' a', 1 / 3],
      ['ab', 1 / 3],
      ['b ', 1 / 3],
    ],
  );
  t.equal(ngramFrequencies('ab', 3).size, 0, 'shorter than n: no n-grams');
  t.equal(featurizer.size, 620);
});

/** The featurizer's definition: every vocabulary n-gram looked up in the normalized text's frequencies. */
function referenceRow(groups: readonly NgramGroup[], text: string): Float32Array {
  const norm = normalizeText(text);
  return Float32Array.from(
    groups.flatMap(({ n, ngrams }) => {
      const freq = ngramFrequencies(norm, n);
      return ngrams.map((g) => freq.get(g) ?? 0);
    }),
  );
}

t.test('the featurizer gives each n-gram its relative frequency, bit for bit', async (t) => {
  const groups: NgramGroup[] = JSON.parse(file('vocabulary.json').toString('utf8')).groups;
  const texts = [
    ...sentences.map(([s]) => s),
    'a',
    '',
    'aaaaaaaaaaaaaaaaaaaa',
    'Ünïcödé 𝒜 astral 😀',
    'the the the the',
  ];
  // the trie's child table as a Map (what a vocabulary too large for a dense table gets) gives the same rows
  const mapped = ngramFeaturizer(groups, 0);
  for (const text of texts) {
    t.same(featurizer.featurize(text), referenceRow(groups, text), JSON.stringify(text));
    t.same(mapped.featurize(text), referenceRow(groups, text), `${JSON.stringify(text)}, child table as a Map`);
  }
  // n-grams that share prefixes, one listed twice (two features on one trie node), and an astral letter (two code
  // units), in a vocabulary of its own
  const own = [
    { n: 1, ngrams: ['a', 'b', '\ud835', ' '] },
    { n: 2, ngrams: ['ab', 'ba', 'aa', '\ud835\udc9c', ' a', 'ab'] },
    { n: 3, ngrams: ['aba', 'aab', 'bab'] },
  ];
  for (const limit of [undefined, 0])
    for (const text of ['abab aab', 'b', 'aaaa 𝒜𝒜 ab', 'xyz', 'ba ab ba'])
      t.same(
        ngramFeaturizer(own, limit).featurize(text),
        referenceRow(own, text),
        `${JSON.stringify(text)}, limit ${limit}`,
      );
});

t.test('a vocabulary the featurizer cannot use is refused', async (t) => {
  t.throws(() => ngramFeaturizer([]), /empty/);
  t.throws(() => ngramFeaturizer([{ n: 0, ngrams: [] }]), /n-gram length 0 is not an integer in 1\.\.65535/);
  t.throws(() => ngramFeaturizer([{ n: 1.5, ngrams: [] }]), /1\.\.65535/);
  t.throws(() => ngramFeaturizer([{ n: 2, ngrams: ['ab', 'abc'] }]), /"abc" is in the group of length 2/);
});

t.test('the ONNX model gives lande() probabilities within 2e-5', async (t) => {
  const session = await ModelSession.create(file('model.onnx'), { provider: 'cpu', intraOpThreads: 1 });
  t.teardown(() => session.release());
  const texts = [...sentences.map(([s]) => s), 'a', 'Ünïcödé 𝒜 with astral letters 😀 and emoji'];
  const size = featurizer.size;
  const batch = new Float32Array(texts.length * size);
  texts.forEach((s, i) => batch.set(featurizer.featurize(s), i * size));
  const { probs } = await session.run({ features: { type: 'float32', data: batch, dims: [texts.length, size] } }, [
    'probs',
  ]);
  t.same(probs.dims, [texts.length, labels.length]);
  let worst = 0;
  texts.forEach((s, i) => {
    const ref = new Map<string, number>(lande(s));
    t.equal(ref.size, labels.length);
    for (let j = 0; j < labels.length; j++) {
      worst = Math.max(worst, Math.abs((probs.data as Float32Array)[i * labels.length + j] - ref.get(labels[j])!));
    }
  });
  t.ok(worst < 2e-5, `largest difference from lande() over ${texts.length} texts x 50 languages: ${worst}`);
  sentences.forEach(([s, lang]) => t.equal(lande(s)[0][0], lang, `lande says ${lang}: ${s}`));
});

t.test('the committed model folder is what the build script writes, byte for byte', async (t) => {
  const { files, sha256 } = await buildLangId();
  for (const [name, bytes] of Object.entries(files)) {
    t.ok(Buffer.from(bytes).equals(file(name)), `${name} is fresh (npx tsx scripts/build-langid-model.ts)`);
  }
  const manifest = parseManifest(JSON.parse(file('manifest.json').toString('utf8')), 'manifest.json');
  t.match(manifest, { task: 'language-id', model: { sha256 }, input: { name: 'features' }, output: { name: 'probs' } });
  t.equal(labels.length, 50);
});
