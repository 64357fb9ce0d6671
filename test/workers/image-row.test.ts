import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { lineSpec } from '../helpers/image-spec.js';
import { RowSlots } from '../../src/models/tasks/common/buffers.js';
import { imageRow } from '../../src/models/tasks/common/image.js';
import type { TaskContext } from '../../src/models/tasks/task.js';
import { imageTensor, type Sizing } from '../../src/workers/ops.js';
import { TaskWorkers } from '../../src/workers/task-workers.js';

// imageRow lends a request's row a shared slot when one is free, and an ordinary buffer when every slot is lent;
// the slot comes back when the request releases it, or at once when the op failed.

const fixtures = path.join(import.meta.dirname, '../fixtures');
const line = readFileSync(path.join(fixtures, 'text-lines/line-03.png'));
const other = readFileSync(path.join(fixtures, 'text-lines/line-01.png'));
const sizing: Sizing = { kind: 'fixed', spec: { ...lineSpec, resize: 'fit-height' } };
const values = 3 * lineSpec.height * lineSpec.width;

for (const [where, threads] of [
  ['on a task worker', 1],
  ['on the event loop', 0],
] as const) {
  t.test(`slots ${where}: lent while free, an ordinary buffer when all are lent, back on release`, async (t) => {
    const workers = new TaskWorkers(threads);
    t.teardown(() => workers.close());
    const ctx = { workers, maxImagePixels: 1e8 } as unknown as TaskContext<unknown>;
    const image = (bytes: Buffer) => ({ kind: 'image' as const, bytes });
    const plain = async (bytes: Buffer) =>
      (await workers.run(imageTensor, { source: bytes, sizing, maxPixels: 1e8 })).data;
    const slots = new RowSlots(values, 1);
    const [a, b] = await Promise.all([
      imageRow(ctx, image(line), 'image-classification', sizing, slots),
      imageRow(ctx, image(other), 'image-classification', sizing, slots),
    ]);
    t.ok(a.tensor.data.buffer instanceof SharedArrayBuffer, 'the first row is in the slot');
    t.ok(b.tensor.data.buffer instanceof ArrayBuffer, 'the second, with the slot lent, in a buffer of its own');
    t.same([...a.tensor.data], [...(await plain(line))], 'the slot row is the image');
    t.same([...b.tensor.data], [...(await plain(other))], 'and so is the other');
    t.equal(slots.take(), undefined, 'the slot is still lent');
    a.release();
    a.release(); // twice is once
    const again = slots.take();
    t.ok(again, 'given back on release');
    t.equal(slots.take(), undefined, 'once');
    slots.give(again!);
    await t.rejects(imageRow(ctx, image(Buffer.from('not an image')), 'image-classification', sizing, slots));
    t.ok(slots.take(), 'a failed op gives its slot back');
  });
}
