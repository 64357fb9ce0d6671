import t from 'tap';
import type { Manifest } from '../../src/models/manifest.js';
import type { TensorInfo } from '../../src/models/session.js';
import { DataType, encodeModel, makeGraph, makeModel, node, valueInfo } from '../../src/onnx/model.js';
import { cpuSession } from '../../src/quantize/evaluate.js';
import { batchOf, compareLatency, LATENCY_TOLERANCE, servedBatchSizes, slowerAt } from '../../src/quantize/latency.js';

// The latency objective's pieces, on given numbers: which batch sizes are measured, how a sample becomes a batch,
// and what counts as slower. (Whether a real model is faster is a measurement no test may depend on.)

t.test('servedBatchSizes: one request, and the largest batch the manifest serves', async (t) => {
  const batching = (maxBatchSize: number) => ({ batching: { maxBatchSize } }) as unknown as Manifest;
  t.same(servedBatchSizes(batching(64)), [1, 64]);
  t.same(servedBatchSizes(batching(1)), [1]);
  t.same(servedBatchSizes(undefined), [1], 'a bare .onnx: one');
});

t.test('batchOf: feeds with a free first axis repeat; the rest stay', async (t) => {
  const inputs: TensorInfo[] = [
    { name: 'x', type: 'float32', shape: ['batch', 2] },
    { name: 'sr', type: 'int64', shape: [] },
    { name: 'state', type: 'float32', shape: [2, 'batch', 1] },
  ];
  const sample = {
    name: 's',
    feeds: {
      x: { type: 'float32' as const, data: new Float32Array([1, 2]), dims: [1, 2] },
      sr: { type: 'int64' as const, data: new BigInt64Array([16000n]), dims: [] },
      state: { type: 'float32' as const, data: new Float32Array([0, 0]), dims: [2, 1, 1] },
    },
  };
  t.equal(batchOf(sample, 1, inputs), sample, 'batch 1 is the sample');
  const b = batchOf(sample, 3, inputs)!;
  t.same(b.feeds.x.dims, [3, 2]);
  t.same([...b.feeds.x.data], [1, 2, 1, 2, 1, 2]);
  t.ok(b.feeds.x.data instanceof Float32Array);
  t.equal(b.feeds.sr, sample.feeds.sr, 'a scalar stays');
  t.equal(b.feeds.state, sample.feeds.state, 'a fixed first axis stays');
  const fixed: TensorInfo[] = [{ name: 'x', type: 'float32', shape: [1, 2] }];
  t.equal(batchOf({ name: 's', feeds: { x: sample.feeds.x } }, 3, fixed), undefined, 'a fixed batch: none');
  const ints = batchOf({ name: 'i', feeds: { x: { type: 'int64', data: new BigInt64Array([5n]), dims: [1] } } }, 2, [
    { name: 'x', type: 'int64', shape: ['n'] },
  ])!;
  t.ok(ints.feeds.x.data instanceof BigInt64Array, 'the element type is kept');
  t.same([...ints.feeds.x.data], [5n, 5n]);
});

t.test('slowerAt: beyond the tolerance only', async (t) => {
  const l = (batch: number, before: number, after: number) => ({ batch, before, after });
  const within = l(1, 1, 1 + LATENCY_TOLERANCE * 0.9);
  const beyond = l(64, 10, 10 * (1 + LATENCY_TOLERANCE * 1.1));
  t.same(slowerAt([within, l(8, 2, 1)]), [], 'faster, or within the noise');
  t.same(slowerAt([within, beyond]), [beyond]);
});

t.test(
  'compareLatency: a batch the original cannot run is unmeasured; one only the compressed fails is an error',
  async (t) => {
    /** y = Relu(x), x [batch, 2], with the batch axis free or fixed at 1. */
    const relu = (batch: string | number) =>
      encodeModel(
        makeModel({
          graph: makeGraph({
            name: 'g',
            nodes: [node('Relu', ['x'], ['y'])],
            inputs: [valueInfo('x', DataType.FLOAT, [batch, 2])],
            outputs: [valueInfo('y', DataType.FLOAT, [batch, 2])],
          }),
        }),
      );
    const sample = {
      name: 's',
      feeds: { x: { type: 'float32' as const, data: new Float32Array([1, -1]), dims: [1, 2] } },
    };
    const quiet = { phase: () => {}, tick: () => {} };
    const opts = { runs: 3, threads: 1 };
    const free = await cpuSession(relu('n'), 1);
    const fixed = await cpuSession(relu(1), 1);
    t.teardown(async () => {
      await free.release();
      await fixed.release();
    });
    const both = await compareLatency(free, relu('n'), sample, [1, 8], opts, quiet);
    t.same(
      both.measured.map((l) => l.batch),
      [1, 8],
    );
    t.same(both.unmeasured, []);
    const one = await compareLatency(fixed, relu(1), sample, [1, 8], opts, quiet);
    t.same(
      one.measured.map((l) => l.batch),
      [1],
    );
    t.match(one.unmeasured, [{ batch: 8, reason: /the original does not run this sample as a batch/ }]);
    await t.rejects(
      compareLatency(free, relu(1), sample, [1, 8], opts, quiet),
      /the compressed model fails at batch 8, where the original runs/,
    );
  },
);
