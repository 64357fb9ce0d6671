import t from 'tap';
import { choose, paretoMarked, speedUp, type SearchCandidate } from '../../src/quantize/search.js';

// The search's choice and its Pareto front, on given measurements (no timing in a test).

const c = (method: string, sizeBytes: number, speed: number, loss: number, within = true, slower = false) =>
  ({ method, keptInFloat: 0, sizeBytes, speedUp: speed, loss, withinBudget: within, slower, pareto: false }) as const;

t.test(
  'the Pareto front: no other candidate is at least as small, as fast and as accurate, and better in one',
  async (t) => {
    const cs: SearchCandidate[] = [
      c('a', 100, 1.0, 0.0), // most accurate
      c('b', 50, 2.0, 0.02), // fastest and smallest
      c('c', 60, 1.5, 0.03), // beaten by b on all three
      c('d', 50, 2.02, 0.02), // within the timing tolerance of b: a tie, both stay
    ];
    t.same(
      paretoMarked(cs).map((x) => x.pareto),
      [true, true, false, true],
    );
  },
);

t.test('the objective chooses among candidates in budget; latency also refuses slower ones', async (t) => {
  const cs: SearchCandidate[] = [
    c('small but over budget', 10, 3.0, 0.2, false),
    c('small, slower', 20, 0.8, 0.01, true, true),
    c('fast', 40, 2.0, 0.01),
    c('fast, more accurate', 40, 2.0, 0.005),
  ];
  t.equal(choose(cs, 'size'), 1);
  t.equal(choose(cs, 'latency'), 3, 'ties go to the lower loss');
  t.equal(choose([cs[0]], 'size'), undefined, 'none in budget');
  const noisy: SearchCandidate[] = [c('exact', 40, 1.5, 0.0), c('lossy, faster by noise', 40, 1.52, 0.03)];
  t.equal(choose(noisy, 'latency'), 0, 'speed-ups within the tolerance are a tie: the lower loss wins');
});

t.test('speed-up is the geometric mean over the batch sizes measured', async (t) => {
  t.equal(speedUp([]), 1);
  t.ok(
    Math.abs(
      speedUp([
        { batch: 1, before: 2, after: 1 },
        { batch: 32, before: 1, after: 2 },
      ]) - 1,
    ) < 1e-12,
  );
});
