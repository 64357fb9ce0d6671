import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseManifest, type TextRecognitionManifest } from '../../src/models/manifest.js';
import { argmaxLastAxis } from '../../src/models/session.js';
import { ctcDecodeReduced, ctcGreedyDecode } from '../../src/models/tasks/text-recognition/pipeline.js';
import { bucketWidth } from '../../src/workers/ops.js';

// CTC greedy decoding and width buckets of the `text-recognition` task, without a model: the end-to-end checks on
// real text lines are in test/server/text-recognition.test.ts.

const classes = ['', 'a', 'b', ' '];

/** [steps, classes] probabilities with `p` on each step's class and the rest spread evenly. */
function steps(best: number[], p = 0.9): Float32Array {
  const out = new Float32Array(best.length * classes.length).fill((1 - p) / (classes.length - 1));
  best.forEach((k, i) => (out[i * classes.length + k] = p));
  return out;
}

t.test('greedy decoding merges repeats, drops blanks, averages kept probabilities', async (t) => {
  t.same(ctcGreedyDecode(steps([1, 1, 0, 1, 2, 2, 3, 1]), 8, 4, classes), { text: 'aab a', score: 0.8999999761581421 });
  t.same(ctcGreedyDecode(steps([0, 0, 0]), 3, 4, classes), { text: '', score: 0 }, 'all blank: empty, score 0');
  const probs = steps([1, 2]);
  probs[0 * 4 + 1] = 0.5; // only kept (first-of-a-run) steps count towards the score
  const r = ctcGreedyDecode(probs, 2, 4, classes);
  t.equal(r.text, 'ab');
  t.ok(Math.abs(r.score - 0.7) < 1e-6, `mean of 0.5 and 0.9: ${r.score}`);
  // a repeat only merges when nothing separates the two steps; the second step of a run does not count
  const run = steps([1, 1, 1]);
  run[4 + 1] = 0.6;
  t.same(ctcGreedyDecode(run, 3, 4, classes).text, 'a');
  t.ok(Math.abs(ctcGreedyDecode(run, 3, 4, classes).score - 0.9) < 1e-6, 'first step of the run');
});

t.test('softmax activation gives the same text and probability scores from logits', async (t) => {
  const logits = Float32Array.from([0, 2, 0, 0, 0, 0, 2, 0]);
  const r = ctcGreedyDecode(logits, 2, 4, classes, 'softmax');
  t.equal(r.text, 'ab');
  t.ok(Math.abs(r.score - Math.exp(2) / (Math.exp(2) + 3)) < 1e-6);
  t.throws(() => ctcGreedyDecode(new Float32Array(3), 2, 4, classes), RangeError);
});

t.test('spaceThreshold: a blank step likely enough to be a space is one, between words only', async (t) => {
  // a, blank, blank, b, blank: the blank steps between a and b give the space 0.06 and 0.2
  const probs = steps([1, 0, 0, 2, 0]);
  probs[1 * 4 + 3] = 0.06;
  probs[2 * 4 + 3] = 0.2;
  probs[4 * 4 + 3] = 0.3; // after the last word: no trailing space
  t.equal(ctcGreedyDecode(probs, 5, 4, classes).text, 'ab', 'plain greedy decoding drops it');
  const r = ctcGreedyDecode(probs, 5, 4, classes, 'none', 0.05);
  t.equal(r.text, 'a b', 'one space, not two, and none at the end');
  t.ok(Math.abs(r.score - 0.9) < 1e-6, `an inserted space is not in the score: ${r.score}`);
  t.equal(ctcGreedyDecode(probs, 5, 4, classes, 'none', 0.5).text, 'ab', 'under the threshold: no space');
  // a space step already the best is not doubled by a blank before it
  const both = steps([1, 0, 3, 2]);
  both[1 * 4 + 3] = 0.2;
  t.equal(ctcGreedyDecode(both, 4, 4, classes, 'none', 0.1).text, 'a b');
  // nothing before the first character
  const lead = steps([0, 1]);
  lead[3] = 0.5;
  t.equal(ctcGreedyDecode(lead, 2, 4, classes, 'none', 0.1).text, 'a');
  // between two equal characters too ("this shall"); a doubled letter's blank rarely looks like a space
  const same = steps([1, 0, 1]);
  same[1 * 4 + 3] = 0.3;
  t.equal(ctcGreedyDecode(same, 3, 4, classes, 'none', 0.05).text, 'a a');
  t.equal(ctcGreedyDecode(steps([1, 0, 1]), 3, 4, classes, 'none', 0.05).text, 'aa', 'without it: a doubled letter');
  // a space the model chose at the end is dropped, and leaves the score
  const end = ctcGreedyDecode(steps([1, 3]), 2, 4, classes, 'none', 0.05);
  t.same(end, { text: 'a', score: 0.8999999761581421 });
  // so is one it chose before any character (the int8 recognizer reads some lines' left margin as a space)
  t.same(ctcGreedyDecode(steps([3, 0, 1]), 3, 4, classes, 'none', 0.05), { text: 'a', score: 0.8999999761581421 });
  t.same(ctcGreedyDecode(steps([3, 3, 1]), 3, 4, classes, 'none', 0.05).text, 'a');
  // short words keep their score: the spaces put between them do not pull it under dropScore
  const words = steps([1, 0, 2, 0, 1, 0, 2]);
  for (const s of [1, 3, 5]) words[s * 4 + 3] = 0.06;
  const w = ctcGreedyDecode(words, 7, 4, classes, 'none', 0.05);
  t.equal(w.text, 'a b a b');
  t.ok(Math.abs(w.score - 0.9) < 1e-6, `${w.score}`);
  // from logits (softmax): the space's probability is computed for the blank step
  const logits = Float32Array.from([0, 3, 0, 0, 2, 0, 0, 1.2, 0, 0, 3, 0]); // a, blank (space 26 %), b
  t.equal(ctcGreedyDecode(logits, 3, 4, classes, 'softmax', 0.05).text, 'a b');
});

t.test('width buckets: height-scaled width rounded up to the step, between min and max width', async (t) => {
  const o = { height: 48, minWidth: 320, maxWidth: 1600, widthStep: 64 };
  t.equal(bucketWidth(38, 18, o), 320, 'a short word pads to the minimum');
  t.equal(bucketWidth(222, 18, o), 640, '592 px rounds up to 640');
  t.equal(bucketWidth(200, 30, o), 320, 'exactly 320');
  t.equal(bucketWidth(201, 30, o), 384);
  t.equal(bucketWidth(5000, 20, o), 1600, 'too wide: squeezed into the last bucket');
  t.equal(bucketWidth(1, 5000, o), 320, 'a sliver still gets a row');
  t.equal(bucketWidth(700, 20, { ...o, maxWidth: 1650 }), 1650, 'a max width off the step is the last bucket');
});

t.test('the shipped manifest is valid and pins its files', async (t) => {
  const where = path.resolve(import.meta.dirname, '../../models/text-recognition-fp32/manifest.json');
  const m = parseManifest(JSON.parse(readFileSync(where, 'utf8')), where) as TextRecognitionManifest;
  t.equal(m.task, 'text-recognition');
  t.match(m.input, { height: 48, minWidth: 320, channels: 'BGR' });
  t.ok(m.model.sha256 && m.labels.sha256, 'model and dictionary are pinned');
  t.throws(
    () => parseManifest({ ...m, input: { ...m.input, minWidth: 640, maxWidth: 320 } }, 'x'),
    /maxWidth must not be below/,
  );
  for (const spaceThreshold of [0, -0.1, 1.5, '0.05'])
    t.throws(
      () => parseManifest({ ...m, ctc: { ...m.ctc, spaceThreshold } }, 'x'),
      /spaceThreshold/,
      `spaceThreshold ${JSON.stringify(spaceThreshold)} is refused`,
    );
});

t.test('steps reduced where the session ran decode exactly as the whole scores do', async (t) => {
  // random scores over 7 classes (the last a space), many blanks, ties included: text and score bit for bit
  const cls = ['', 'a', 'b', 'c', 'd', 'e', ' '];
  let seed = 11;
  const rand = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 2 ** 32;
  };
  for (let i = 0; i < 200; i++) {
    const T = 1 + Math.floor(rand() * 40);
    const scores = new Float32Array(T * cls.length).map(() => (rand() < 0.05 ? 0.5 : rand() * 2 - 1));
    for (let s = 0; s < T; s++) if (rand() < 0.5) scores[s * cls.length] = 3; // a blank step
    const reduced = argmaxLastAxis({ type: 'float32', data: scores, dims: [T, cls.length] }, { classes: [6] });
    t.same(reduced.dims, [T, 3]);
    for (const activation of ['none', 'sigmoid'] as const)
      for (const threshold of [undefined, 0.2]) {
        const whole = ctcGreedyDecode(scores, T, cls.length, cls, activation, threshold);
        const part = ctcDecodeReduced(reduced.data as Float32Array, T, cls, activation, threshold);
        if (whole.text !== part.text || !Object.is(whole.score, part.score))
          t.fail(`case ${i} (${activation}, ${threshold}): ${JSON.stringify(whole)} vs ${JSON.stringify(part)}`);
      }
  }
  t.pass('200 random lines, both activations, with and without spaces');
});
