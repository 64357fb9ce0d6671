import t from 'tap';
import { BatchBuffers, ROW_SLOT_BYTES, RowSlots, rowSlotsFor } from '../../src/models/tasks/common/buffers.js';
import type { SessionRunner } from '../../src/models/session.js';

t.test('BatchBuffers: a lone row is the batch; larger batches reuse one buffer, zero-padded', async (t) => {
  const b = new BatchBuffers(8);
  const r1 = new Float32Array([1, 2]);
  await b.with([r1], [1, 2], async (batch) => t.equal(batch.data, r1, 'no copy for a batch of one'));
  let first: ArrayBufferLike | undefined;
  await b.with([r1, new Float32Array([3, 4])], [3, 2], async (batch) => {
    t.same([...batch.data], [1, 2, 3, 4, 0, 0], 'stacked, padded to the fixed batch');
    t.same(batch.dims, [3, 2]);
    first = batch.data.buffer;
  });
  await b.with([new Float32Array([5, 6]), r1], [2, 2], async (batch) => {
    t.equal(batch.data.buffer, first, 'the buffer is reused once the run settled');
    t.same([...batch.data], [5, 6, 1, 2]);
  });
  await t.rejects(
    b.with([new Float32Array(3), r1], [2, 2], async () => 0),
    /this is a bug/,
  );
});

t.test('BatchBuffers: narrower batches use the start of the same buffer; one over capacity is its own', async (t) => {
  const b = new BatchBuffers(8); // e.g. 2 rows of width 4
  let wide: ArrayBufferLike | undefined;
  await b.with([new Float32Array(4), new Float32Array(4)], [2, 4], async (batch) => (wide = batch.data.buffer));
  await b.with([new Float32Array([1, 2]), new Float32Array([3, 4])], [2, 2], async (batch) => {
    t.equal(batch.data.buffer, wide, 'a narrower bucket reuses the buffer');
    t.same([...batch.data], [1, 2, 3, 4]);
  });
  await b.with([new Float32Array(4), new Float32Array(4), new Float32Array(4)], [3, 4], async (batch) => {
    t.not(batch.data.buffer, wide, 'over capacity: a buffer of its own');
    t.equal(batch.data.length, 12);
  });
  await b.with([new Float32Array(4), new Float32Array(4)], [2, 4], async (batch) => {
    t.equal(batch.data.buffer, wide, 'the oversized buffer was not kept');
  });
});

t.test(
  'BatchBuffers: shared memory for a session that reads it where it lies, ordinary for one on the loop',
  async (t) => {
    const onWorkers = { readsSharedMemory: true } as unknown as SessionRunner;
    const two = [new Float32Array(4), new Float32Array(4)];
    await new BatchBuffers(8).with(two, [2, 4], async (batch) =>
      t.ok(batch.data.buffer instanceof ArrayBuffer, 'no session said: ordinary'),
    );
    const b = new BatchBuffers(8, onWorkers);
    await b.with(two, [2, 4], async (batch) => t.ok(batch.data.buffer instanceof SharedArrayBuffer, 'pooled: shared'));
    await b.with([new Float32Array(4), new Float32Array(4), new Float32Array(4)], [3, 4], async (batch) =>
      t.ok(batch.data.buffer instanceof ArrayBuffer, 'one-off, over capacity: an ordinary buffer, which V8 counts'),
    );
    const seen = await b.lend(3, async (data) => {
      t.equal(data.length, 3);
      data.set([7, 8, 9]);
      return data.buffer;
    });
    await b.lend(2, async (data) => t.equal(data.buffer, seen, 'lend hands out the same pool'));
    const small = new BatchBuffers(64);
    const first = await small.lend(3, async (data) => data.buffer);
    t.equal(first.byteLength, 12, 'a buffer starts at the batch it first serves');
    const grown = await small.lend(5, async (data) => data.buffer);
    t.equal(grown.byteLength, 24, 'and doubles when a larger batch comes');
    t.equal(await small.lend(4, async (data) => data.buffer), grown, 'the grown buffer serves smaller batches');
    t.equal((await small.lend(60, async (data) => data.buffer)).byteLength, 240, 'at most the capacity');
  },
);

t.test(
  'RowSlots: shared slots, reused once given back, at most as many as asked and as fit the byte cap',
  async (t) => {
    const slots = new RowSlots(4, 2);
    const a = slots.take()!;
    const b = slots.take()!;
    t.ok(a.buffer instanceof SharedArrayBuffer, 'shared memory');
    t.equal(a.length, 4);
    t.not(a.buffer, b.buffer);
    t.equal(slots.take(), undefined, 'every slot lent: none (the row gets an ordinary buffer)');
    slots.give(a);
    t.equal(slots.take(), a, 'a slot given back is lent again');
    const big = new RowSlots(Math.floor(ROW_SLOT_BYTES / 12), 100);
    t.ok(big.take() && big.take() && big.take(), 'three fit the cap');
    t.equal(big.take(), undefined, 'a fourth would not');
    const sized = rowSlotsFor(4, { maxQueueSize: 1, maxBatchSize: 2, maxInFlightBatches: 2 });
    for (let i = 0; i < 5; i++) t.ok(sized.take(), `slot ${i}: the queue and the batches in flight`);
    t.equal(sized.take(), undefined);
  },
);

t.test('BatchBuffers: a lone row in shared memory is copied for a session that cannot read it', async (t) => {
  const row = new Float32Array(new SharedArrayBuffer(8)).fill(3);
  await new BatchBuffers(8).with([row], [1, 2], async (batch) => {
    t.not(batch.data, row, 'copied into the pool');
    t.ok(batch.data.buffer instanceof ArrayBuffer);
    t.same([...batch.data], [3, 3]);
  });
  const shared = { readsSharedMemory: true } as unknown as SessionRunner;
  await new BatchBuffers(8, shared).with([row], [1, 2], async (batch) => t.equal(batch.data, row, 'lent as it is'));
});

t.test(
  'BatchBuffers: a lone ordinary row is copied into a pooled shared buffer for a session on workers',
  async (t) => {
    // the session would otherwise copy it into a new buffer each run (an OCR page: 20 MB of fresh memory on the loop)
    const shared = { readsSharedMemory: true } as unknown as SessionRunner;
    const buffers = new BatchBuffers(8, shared);
    const row = new Float32Array([1, 2]);
    let first: ArrayBufferLike | undefined;
    await buffers.with([row], [1, 2], async (batch) => {
      t.not(batch.data, row, 'copied');
      t.ok(batch.data.buffer instanceof SharedArrayBuffer, 'into shared memory, which the session lends as it is');
      t.same([...batch.data], [1, 2]);
      first = batch.data.buffer;
    });
    await buffers.with([new Float32Array([3, 4])], [1, 2], async (batch) => {
      t.equal(batch.data.buffer, first, 'the same buffer, once the run before settled');
      t.same([...batch.data], [3, 4]);
    });
    const large = new Float32Array(16);
    await buffers.with([large], [1, 16], async (batch) => {
      t.equal(batch.data, large, 'a lone row over the capacity is lent as it is (a one-off copy would be one more)');
    });
  },
);

t.test('RowSlots: rows of varying size get a power-of-two slot, or a larger free one, within the caps', async (t) => {
  const slots = new RowSlots(1000, 4);
  const a = slots.take(100)!;
  t.equal(a.length, 128, 'the next power of two');
  t.equal(slots.take(1000)!.length, 1000, 'at most the largest row');
  t.equal(slots.take(1001), undefined, 'a row larger than the largest gets none');
  t.equal(slots.take(0), undefined, 'nor does an empty one');
  slots.give(a);
  const big = slots.take(600)!;
  t.equal(big.length, 1000, 'a new slot of its own size while one may be made');
  slots.give(big);
  t.equal(slots.take(300), big, 'then a larger free one rather than a new slot');
  t.equal(slots.take(64), a, 'the smallest free one that fits');
  t.ok(slots.take(3), 'the fourth slot');
  t.equal(slots.take(3), undefined, 'no fifth: at most rowsInFlight slots');
  const capped = new RowSlots(ROW_SLOT_BYTES / 4, 100);
  t.ok(capped.take(ROW_SLOT_BYTES / 8), 'half the byte cap');
  t.ok(capped.take(ROW_SLOT_BYTES / 16), 'a quarter');
  t.equal(capped.take(ROW_SLOT_BYTES / 8), undefined, 'not another half: the slots would hold more than the cap');
  const lent = slots.lend(0);
  t.equal(lent.slot, undefined, 'lend without a slot');
  lent.release(); // a no-op
});

t.test('RowSlots: free slots too small for a row make room for it, only when that is enough', async (t) => {
  const counted = new RowSlots(1024, 3);
  const small = [counted.take(10)!, counted.take(10)!, counted.take(10)!];
  t.same(
    small.map((s) => s.length),
    [128, 128, 128],
    'an eighth of the largest row at least',
  );
  small.forEach((s) => counted.give(s));
  const large = counted.take(1000)!;
  t.equal(large.length, 1024, 'a free small slot was dropped to make a large one within the count cap');
  t.ok(counted.take(10) && counted.take(10), 'the two small ones left');
  t.equal(counted.take(10), undefined, 'all three lent');

  const v = ROW_SLOT_BYTES / 4; // values that fill the byte cap
  const bytes = new RowSlots(v, 100);
  const a = bytes.take(v / 2)!; // half the cap, lent
  const b = bytes.take(v / 8)!;
  bytes.take(v / 8); // a quarter of the cap lent in all
  bytes.give(b);
  t.equal(bytes.take(v / 2), undefined, 'dropping the free eighth would not make room for another half');
  t.equal(bytes.take(v / 8), b, 'so it was kept');
  bytes.give(b);
  bytes.give(a);
  t.equal(bytes.take(v / 2), a, 'a free slot that fits is lent first');

  const lent = new RowSlots(4, 1).lend();
  lent.release();
  lent.release(); // twice is once
  const slots = new RowSlots(4, 2);
  const one = slots.lend();
  one.release();
  one.release();
  t.ok(slots.take() && slots.take(), 'the slot came back once: two slots, not three');
  t.equal(slots.take(), undefined);
});
