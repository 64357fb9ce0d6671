import t from 'tap';
import { selectByReconstruction } from '../../src/quantize/passes/prune-select.js';
import { lcg } from '../helpers/models.js';

// Gram matrix [C + 1, C + 1] (the last row a constant 1) of rows of channel values.
function gramOf(rows: number[][]): Float64Array {
  const D = rows[0].length + 1;
  const g = new Float64Array(D * D);
  for (const r of rows) {
    const f = [...r, 1];
    for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) g[i * D + j] += (f[i] * f[j]) / rows.length;
  }
  return g;
}

t.test('a channel another one repeats is removed first, however large its weights', async (t) => {
  const rand = lcg(3);
  // channels 0 and 2 carry the same signal; 1 and 3 are independent, weaker, with smaller weights
  const rows = Array.from({ length: 400 }, () => {
    const a = rand() * 2;
    return [a, rand(), a, rand() * 0.5];
  });
  // one output: 1.0 x0 + 0.3 x1 + 1.0 x2 + 0.2 x3 (bias row 0)
  const weight = Float64Array.from([1, 0.3, 1, 0.2, 0]);
  const keep = selectByReconstruction([{ weight, outputs: 1, gram: gramOf(rows) }], 4, 1);
  t.equal(keep.length, 3);
  t.ok(!(keep.includes(0) && keep.includes(2)), `one of the twins goes (kept ${keep})`);
  t.same(selectByReconstruction([{ weight, outputs: 1, gram: gramOf(rows) }], 4, 2), [1, 2], 'then the weakest');
});

t.test('independent channels go by output energy: weight squared times mean square', async (t) => {
  const rand = lcg(5);
  const scale = [1, 3, 0.5, 2];
  const rows = Array.from({ length: 2000 }, () => scale.map((s) => (rand() - 0.5) * s));
  // energies: 1 x 1, 0.1^2 x 9, 2^2 x 0.25, 1 x 4 -> channel 1 (0.09) then 2 (1) then 0 (1)...
  const weight = Float64Array.from([1, 0.1, 2, 1, 0]);
  t.same(selectByReconstruction([{ weight, outputs: 1, gram: gramOf(rows) }], 4, 1), [0, 2, 3]);
  t.same(selectByReconstruction([{ weight, outputs: 1, gram: gramOf(rows) }], 4, 0), [0, 1, 2, 3], 'nothing removed');
  t.throws(() => selectByReconstruction([{ weight, outputs: 2, gram: gramOf(rows) }], 4, 1), RangeError);
});
