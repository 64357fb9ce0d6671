import t from 'tap';
import { topK } from '../../src/models/tasks/common/scores.js';

// topK against its definition: a stable sort of every class by score, best first, ties in index order.

const reference = (scores: Float32Array, k: number) =>
  Array.from(scores.keys())
    .sort((a, b) => scores[b] - scores[a] || a - b)
    .slice(0, k);

t.test('the k best classes are the first k of a stable sort, ties in index order', async (t) => {
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let trial = 0; trial < 300; trial++) {
    const n = 1 + Math.floor(random() * 60);
    // few distinct values, so that ties are common
    const scores = Float32Array.from({ length: n }, () => Math.floor(random() * 8) / 8);
    for (const k of [1, 2, 5, n, n + 3]) {
      t.same(
        topK(scores, k, []).map((c) => c.index),
        reference(scores, k),
        `n=${n} k=${k}`,
      );
    }
  }
  t.same(topK(new Float32Array([0.1, 0.7, 0.2]), 2, ['a', 'b', 'c']), [
    { label: 'b', index: 1, score: Math.fround(0.7) },
    { label: 'c', index: 2, score: Math.fround(0.2) },
  ]);
  t.same(topK(new Float32Array([0.5]), 0, ['a']), [], 'k = 0: nothing');
  t.same(
    topK(new Float32Array([0.1, 0.7, 0.2]), 2.5, []).map((c) => c.index),
    [1, 2],
    'a fractional k is rounded down',
  );
});
