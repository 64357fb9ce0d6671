import t from 'tap';
import { BatchBuffers } from '../../src/models/tasks/common/buffers.js';

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
