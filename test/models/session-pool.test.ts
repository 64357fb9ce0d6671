import { existsSync } from 'node:fs';
import t from 'tap';
import { attr, DataType, encodeModel, makeGraph, makeModel, node, tensor, valueInfo } from '../../src/onnx/model.js';
import { PoisonedInputs } from '../../src/models/poisoned-inputs.js';
import { WorkerSessionPool } from '../../src/models/session-pool.js';
import {
  cudaProviderPath,
  ModelSession,
  readsSharedMemory,
  type HostTensor,
  type SessionOptions,
} from '../../src/models/session.js';

// Sessions on worker threads against the same model on the event loop. The model: y = table[max(x)] per row, so
// an x above 9 is an index out of bounds that onnxruntime refuses at run time.
const bytes = encodeModel(
  makeModel({
    opset: 13,
    graph: makeGraph({
      name: 'lookup',
      nodes: [
        node('ReduceMax', ['x'], ['m'], { axes: [1], keepdims: 0 }),
        node('Cast', ['m'], ['i'], { to: attr.int(DataType.INT64) }),
        node('Gather', ['table', 'i'], ['y']),
      ],
      inputs: [valueInfo('x', DataType.FLOAT, ['n', 4])],
      outputs: [valueInfo('y', DataType.FLOAT, ['n'])],
      initializers: [
        tensor(
          'table',
          [10],
          Float32Array.from({ length: 10 }, (_, k) => k * k),
        ),
      ],
    }),
  }),
);
const options: SessionOptions = { provider: 'cpu', intraOpThreads: 1 };
/** The same number of sessions whichever provider the first one gets. */
const each = (n: number) => ({ cpu: n, cuda: n });
const feeds = (...rows: number[][]): Record<string, HostTensor> => ({
  x: { type: 'float32', data: Float32Array.from(rows.flat()), dims: [rows.length, 4] },
});

t.test('a pool of two answers as the session on the event loop does, runs queued in order of arrival', async (t) => {
  const pool = await WorkerSessionPool.create(bytes, options, each(2));
  t.teardown(() => pool.release());
  const inline = await ModelSession.create(bytes, options);
  t.teardown(() => inline.release());
  t.equal(pool.instances, 2);
  t.same(pool.inputs, inline.inputs);
  t.same(pool.outputs, inline.outputs);
  t.equal(pool.provider, 'cpu');
  const asks = Array.from({ length: 20 }, (_, k) => feeds([k % 10, 0, 1, 2], [0, 0, 0, (k * 7) % 10]));
  const answers = await Promise.all(asks.map((f) => pool.run(f, ['y'])));
  for (const [k, f] of asks.entries()) t.same(answers[k], await inline.run(f, ['y']), `request ${k}`);
});

t.test("a feed in shared memory runs on a worker and on the event loop, and stays its owner's", async (t) => {
  const pool = await WorkerSessionPool.create(bytes, options, each(1));
  t.teardown(() => pool.release());
  const inline = await ModelSession.create(bytes, options);
  t.teardown(() => inline.release());
  t.ok(readsSharedMemory(pool), 'a worker pool takes shared feeds as they are');
  t.notOk(readsSharedMemory(inline), 'a session on the loop would copy them there');
  // onnxruntime-node refuses typed arrays over a SharedArrayBuffer ("Invalid argument"): the session copies them
  const shared = new Float32Array(new SharedArrayBuffer(4 * 8));
  shared.set([3, 0, 1, 2, 0, 0, 0, 4]);
  const f = { x: { type: 'float32', data: shared, dims: [2, 4] } } satisfies Record<string, HostTensor>;
  t.same([...(await pool.run(f, ['y'])).y.data], [9, 16], 'on a worker');
  t.same([...(await inline.run(f, ['y'])).y.data], [9, 16], 'on the event loop');
  t.equal(shared.length, 8, 'lent, not moved: the owner keeps it');
  t.same([...shared], [3, 0, 1, 2, 0, 0, 0, 4]);
  const plain = Float32Array.from([5, 0, 0, 0]);
  t.same([...(await pool.run({ x: { type: 'float32', data: plain, dims: [1, 4] } }, ['y'])).y.data], [25]);
  t.equal(plain.length, 4, 'an ordinary feed is copied before it moves: the caller keeps its own');
  const out = await pool.run(f, ['y']);
  t.ok(out.y.data.buffer instanceof ArrayBuffer, 'outputs arrive in an ordinary buffer of the event loop');
});

t.test('a run that fails in a worker rejects with the runtime message; the next run is answered', async (t) => {
  const pool = await WorkerSessionPool.create(bytes, options, each(1));
  t.teardown(() => pool.release());
  await t.rejects(pool.run(feeds([42, 0, 0, 0]), ['y']), /indices|out of bounds|idx/i);
  t.same([...(await pool.run(feeds([3, 0, 0, 0]), ['y'])).y.data], [9]);
});

t.test(
  "feeds that view part of a larger buffer: only the view travels, and the caller's buffer stays usable",
  async (t) => {
    const pool = await WorkerSessionPool.create(bytes, options, each(1));
    t.teardown(() => pool.release());
    const arena = new Float32Array(64).fill(9);
    const view = arena.subarray(8, 16).fill(2);
    const out = await pool.run({ x: { type: 'float32', data: view, dims: [2, 4] } }, ['y']);
    t.same([...out.y.data], [4, 4]);
    t.equal(arena.length, 64, 'not detached');
    t.equal(arena[0], 9);
  },
);

t.test('release lets a queued run finish, then refuses new runs', async (t) => {
  const pool = await WorkerSessionPool.create(bytes, options, each(1));
  const pending = pool.run(feeds([5, 0, 0, 0]), ['y']);
  const released = pool.release();
  t.same([...(await pending).y.data], [25]);
  await released;
  await t.rejects(pool.run(feeds([1, 0, 0, 0]), ['y']), /released/);
});

t.test('a model the runtime cannot load fails creation with its message, and no worker stays behind', async (t) => {
  await t.rejects(WorkerSessionPool.create(new Uint8Array([1, 2, 3]), options, each(2)), /protobuf|parse|model/i);
});

t.test(
  'cuda without the CUDA provider fails creation and says so',
  { skip: existsSync(cudaProviderPath()) },
  async (t) => {
    await t.rejects(
      WorkerSessionPool.create(bytes, { ...options, provider: 'cuda' }, each(1)),
      /MUON_EXECUTION_PROVIDER=cuda/,
    );
    let fellBack: string | undefined;
    const pool = await WorkerSessionPool.create(
      bytes,
      { ...options, provider: 'auto', onFallback: (r) => (fellBack = r) },
      each(2),
    );
    t.teardown(() => pool.release());
    t.equal(pool.provider, 'cpu');
    t.match(fellBack, /CUDA provider/, 'auto fell back to CPU and said why, once');
    t.equal(pool.fallbackReason, fellBack);
  },
);

t.test('release waits for runs still queued behind busy instances', async (t) => {
  const pool = await WorkerSessionPool.create(bytes, options, each(1));
  const pending = Array.from({ length: 5 }, (_, k) => pool.run(feeds([k, 0, 0, 0]), ['y']));
  await pool.release();
  t.same(
    (await Promise.all(pending)).map((o) => o.y.data[0]),
    [0, 1, 4, 9, 16],
  );
});

const crashing = new URL('../helpers/crashing-session-worker.ts', import.meta.url);

t.test('a worker that dies fails only its run; a replacement takes over', async (t) => {
  const restarts: string[] = [];
  const pool = await WorkerSessionPool.create(bytes, options, each(2), {
    workerEntry: crashing,
    onRestart: (r) => restarts.push(r),
  });
  t.teardown(() => pool.release());
  const neighbours = Array.from({ length: 6 }, (_, k) => pool.run(feeds([k, 0, 0, 0]), ['y']));
  await t.rejects(pool.run(feeds([666, 0, 0, 0]), ['y']), /session worker exited \(code 7\)/);
  t.same(
    (await Promise.all(neighbours)).map((o) => o.y.data[0]),
    [0, 1, 4, 9, 16, 25],
    'the runs around it are answered',
  );
  t.equal(restarts.length, 1);
  t.same([...(await pool.run(feeds([2, 0, 0, 0]), ['y'])).y.data], [4], 'later runs are answered');
  while (pool.instances < 2) await new Promise((r) => setTimeout(r, 10)); // the replacement loads meanwhile
  t.equal(pool.instances, 2, 'back to two sessions');
  t.equal(pool.broken, undefined);
});

t.test('when replacements keep dying the pool gives up and says why', async (t) => {
  let broken: string | undefined;
  const pool = await WorkerSessionPool.create(bytes, options, each(1), {
    workerEntry: crashing,
    onBroken: (r) => (broken = r),
  });
  t.teardown(() => pool.release());
  // four different inputs, each killing its worker: the model is what is broken
  for (let k = 0; k < 4; k++) await t.rejects(pool.run(feeds([666, k, 0, 0]), ['y']), /exited/);
  t.match(broken, /3 replacements in a row died too/);
  await t.rejects(pool.run(feeds([1, 0, 0, 0]), ['y']), /replacements in a row/);
});

t.test('one input that keeps killing workers is refused; the pool does not give up on the model for it', async (t) => {
  let broken: string | undefined;
  const pool = await WorkerSessionPool.create(bytes, options, each(1), {
    workerEntry: crashing,
    onBroken: (r) => (broken = r),
  });
  t.teardown(() => pool.release());
  const poison = () => feeds([666, 0, 0, 0]);
  await t.rejects(pool.run(poison(), ['y']), /exited/);
  await t.rejects(pool.run(poison(), ['y']), /exited/);
  for (let k = 0; k < 5; k++)
    await t.rejects(pool.run(poison(), ['y']), /this input killed a session worker 2 times; it is not run again/);
  t.equal(broken, undefined);
  t.same([...(await pool.run(feeds([3, 0, 0, 0]), ['y'])).y.data], [9], 'other inputs are answered');
});

t.test('a poisoned row is recognized stacked with others, and by the next version of the model', async (t) => {
  const poisoned = new PoisonedInputs();
  const restarts: string[] = [];
  const pool = await WorkerSessionPool.create(bytes, options, each(1), {
    workerEntry: crashing,
    poisoned,
    onRestart: (r) => restarts.push(r),
  });
  t.teardown(() => pool.release());
  // a batch that dies counts for none of its rows: the retry of each row alone names the culprit
  await t.rejects(pool.run(feeds([666, 1, 2, 3], [5, 0, 0, 0]), ['y']), /exited/);
  t.equal(poisoned.refused(feeds([5, 0, 0, 0])), undefined);
  await t.rejects(pool.run(feeds([666, 1, 2, 3]), ['y']), /exited/);
  await t.rejects(pool.run(feeds([666, 1, 2, 3]), ['y']), /exited/);
  t.equal(restarts.length, 3);
  await t.rejects(
    pool.run(feeds([5, 0, 0, 0], [666, 1, 2, 3]), ['y']),
    /killed a session worker 2 times; it is not run again/,
    'refused in second place of a batch, without running',
  );
  t.equal(restarts.length, 3);
  t.same(
    [...(await pool.run(feeds([5, 0, 0, 0], [2, 0, 0, 0]), ['y'])).y.data],
    [25, 4],
    'its neighbours are answered',
  );
  const next = await WorkerSessionPool.create(bytes, options, each(1), { workerEntry: crashing, poisoned });
  t.teardown(() => next.release());
  await t.rejects(next.run(feeds([666, 1, 2, 3]), ['y']), /not run again/, 'a reload remembers it');
});

t.test('poisoned inputs are forgotten after an hour unseen', async (t) => {
  let now = 0;
  const poisoned = new PoisonedInputs(() => now);
  const row = feeds([666, 1, 2, 3]);
  t.equal(poisoned.died(row), false);
  t.equal(poisoned.died(row), true, 'two deaths: to blame');
  t.equal(poisoned.refused(row), 2);
  t.equal(poisoned.died(feeds([1, 0, 0, 0], [2, 0, 0, 0])), false, 'a batch is not counted');
  now += 61 * 60_000;
  t.equal(poisoned.refused(row), undefined);
});

t.test('the number of sessions follows the provider the first one got', async (t) => {
  const pool = await WorkerSessionPool.create(bytes, options, { cpu: 2, cuda: 1 });
  t.teardown(() => pool.release());
  t.equal(pool.instances, 2, 'two on the CPU');
  await t.rejects(WorkerSessionPool.create(bytes, options, { cpu: 0, cuda: 1 }), RangeError);
});

t.test('an output reduced on the worker is what the session on the loop reduces', async (t) => {
  const pool = await WorkerSessionPool.create(bytes, options, each(1));
  t.teardown(() => pool.release());
  const inline = await ModelSession.create(bytes, options);
  t.teardown(() => inline.release());
  const f = feeds([3, 0, 1, 2], [0, 0, 0, 4]); // y = [9, 16]
  const reduce = { y: { classes: [0] } };
  const onWorker = await pool.run(f, ['y'], reduce);
  t.same(onWorker.y.dims, [3], 'the last axis became: the best class, its score, the score of class 0');
  t.same([...onWorker.y.data], [1, 16, 9]);
  t.same(onWorker, await inline.run(f, ['y'], reduce), 'on the event loop too');
});
