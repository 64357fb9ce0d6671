import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { lineSpec } from '../helpers/image-spec.js';
import { audioFrames, defineOp, imageTensor, ping, type Sizing } from '../../src/workers/ops.js';
import { ocrLines, ocrPage, type DetectorSizing } from '../../src/models/tasks/ocr/ops.js';
import { TaskWorkers } from '../../src/workers/task-workers.js';

// The task workers run the tasks' CPU work off the event loop. What they answer must be what the same op answers
// on the event loop (MUON_TASK_THREADS=0), bit for bit; client errors keep their code across the thread; a thread
// that dies fails only its own ops.

const fixtures = path.join(import.meta.dirname, '../fixtures');
const line = readFileSync(path.join(fixtures, 'text-lines/line-03.png'));
const photo = readFileSync(path.join(fixtures, 'photos/chelsea.jpg'));
const page = readFileSync(path.join(fixtures, 'photos/page.png'));
const speech = readFileSync(path.join(fixtures, 'audio/speech-44k-stereo.wav'));

const spec = lineSpec;
const lineSizing: Sizing = { kind: 'line', spec, minWidth: 64, maxWidth: 4096, widthStep: 32 };
const detector: DetectorSizing = {
  limitSideLen: 960,
  limitType: 'max',
  sizeMultiple: 32,
  spec: { ...spec, resize: 'stretch', channels: 'RGB', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
};

const inline = new TaskWorkers(0);
const workers = new TaskWorkers(2);
t.teardown(() => workers.close());

t.test('ops answer on a worker exactly as on the event loop', async (t) => {
  await workers.warm();
  for (const [name, source, sizing] of [
    ['line, fixed size', line, { kind: 'fixed', spec: { ...spec, resize: 'stretch' } }],
    ['line, width bucket', line, lineSizing],
    [
      'photo, letterbox NHWC',
      photo,
      { kind: 'fixed', spec: { ...spec, layout: 'NHWC', resize: 'letterbox', width: 128, height: 128 } },
    ],
  ] as const) {
    const a = await inline.run(imageTensor, { source, sizing: sizing as Sizing, maxPixels: 1e8 });
    const b = await workers.run(imageTensor, { source, sizing: sizing as Sizing, maxPixels: 1e8 });
    t.same(b.dims, a.dims, `${name}: dims`);
    t.same(b.original, a.original, `${name}: original size`);
    t.ok(Buffer.from(b.data.buffer).equals(Buffer.from(a.data.buffer)), `${name}: the same floats`);
  }
  const p = await inline.run(ocrPage, { source: page, maxPixels: 1e8, detector });
  const q = await workers.run(ocrPage, { source: page, maxPixels: 1e8, detector });
  t.same([q.w, q.h, q.scale, q.image.width, q.image.height], [p.w, p.h, p.scale, p.image.width, p.image.height]);
  t.ok(Buffer.from(q.data.buffer).equals(Buffer.from(p.data.buffer)), 'page tensor');
  t.ok(Buffer.from(q.image.data).equals(Buffer.from(p.image.data)), 'page pixels');

  const audio = { bytes: speech, maxSeconds: 60, rate: 16000, context: 64, window: 512 };
  const x = await inline.run(audioFrames, audio);
  const y = await workers.run(audioFrames, audio);
  t.same([y.frames, y.samples, y.durationMs], [x.frames, x.samples, x.durationMs]);
  t.ok(Buffer.from(y.padded.buffer).equals(Buffer.from(x.padded.buffer)), 'audio samples');
});

t.test('client errors cross the thread with their code and message', async (t) => {
  for (const pool of [inline, workers]) {
    const where = pool.size === 0 ? 'inline' : 'worker';
    const garbage = Buffer.concat([line.subarray(0, 40), Buffer.alloc(40)]);
    await t.rejects(
      pool.run(imageTensor, { source: garbage, sizing: lineSizing, maxPixels: 1e8 }),
      { code: 'MUON_ERR_INVALID_IMAGE', statusCode: 400 },
      `${where}: a cut PNG`,
    );
    await t.rejects(
      pool.run(imageTensor, { source: Buffer.from('GIF89a....'), sizing: lineSizing, maxPixels: 1e8 }),
      { code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE', statusCode: 415, message: /gif images are not accepted/ },
      `${where}: a GIF`,
    );
    await t.rejects(
      pool.run(imageTensor, { source: Buffer.from('not an image'), sizing: lineSizing, maxPixels: 1e8 }),
      {
        code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
        statusCode: 415,
        message: 'Unsupported media type: the body is not an image in an accepted format (send jpeg, png, webp)',
      },
      `${where}: bytes of no image format`,
    );
    await t.rejects(
      pool.run(imageTensor, { source: photo, sizing: lineSizing, maxPixels: 1000 }),
      { code: 'MUON_ERR_IMAGE_DIMENSIONS', statusCode: 422 },
      `${where}: over the pixel limit`,
    );
    await t.rejects(
      pool.run(audioFrames, { bytes: speech, maxSeconds: 1, rate: 16000, context: 64, window: 512 }),
      { code: 'MUON_ERR_AUDIO_TOO_LONG', statusCode: 413 },
      `${where}: audio over the limit`,
    );
  }
});

t.test('moved arrays travel without a copy; views of a larger buffer are copied', async (t) => {
  const prob = new Float32Array(64 * 32);
  const image = { data: new Uint8Array(64 * 32 * 3), width: 64, height: 32 };
  const lines = await workers.run(
    ocrLines,
    { prob, w: 64, h: 32, detection: {}, image, readingOrder: 'rows' },
    { move: [prob, image.data] },
  );
  t.same(lines, { boxes: [], crops: [] });
  t.equal(prob.length, 0, 'the map moved (detached here)');
  t.equal(image.data.length, 0, 'the pixels moved');
  const whole = new Float32Array(2 * 64 * 32);
  const view = whole.subarray(0, 64 * 32);
  await workers.run(
    ocrLines,
    {
      prob: view,
      w: 64,
      h: 32,
      detection: {},
      image: { data: new Uint8Array(64 * 32 * 3), width: 64, height: 32 },
      readingOrder: 'rows',
    },
    { move: [view] },
  );
  t.equal(whole.length, 2 * 64 * 32, 'a view of a larger buffer was copied, its buffer kept');
});

t.test(
  'answers arrive in buffers of the event loop (small ones copied, large ones moved: see postToLoop)',
  async (t) => {
    const a = await workers.run(imageTensor, { source: line, sizing: lineSizing, maxPixels: 1e8 });
    t.ok(a.data.buffer instanceof ArrayBuffer);
    t.equal(a.data.byteOffset, 0);
  },
);

t.test(
  'an inline op runs on the event loop only for a lone request, while nothing else is being prepared',
  async (t) => {
    const pool = new TaskWorkers(1);
    t.teardown(() => pool.close());
    await pool.warm();
    // an op the workers do not know: on a thread it fails, on the loop it answers
    const here = defineOp('where-am-i', async () => 'event loop');
    const slow = defineOp(
      'slow-where-am-i',
      () => new Promise((resolve) => setTimeout(() => resolve('event loop'), 50)),
    );
    t.equal(await pool.run(here, {}, { inline: true }), 'event loop', 'alone: on the loop');
    const onThread = pool.run(ping, {});
    await t.rejects(
      pool.run(here, {}, { inline: true }),
      /no op 'where-am-i'/,
      'beside an op on a thread: on a thread',
    );
    await onThread;
    const first = pool.run(slow, {}, { inline: true });
    await t.rejects(pool.run(here, {}, { inline: true }), /no op/, 'beside an op running inline: on a thread');
    t.equal(await first, 'event loop');
    t.equal(await pool.run(here, {}, { inline: true }), 'event loop', 'idle again: on the loop');
    // requests in progress (LoadedModel counts them): the request itself is one; beside another, on a thread
    pool.requestStarted();
    t.equal(await pool.run(here, {}, { inline: true }), 'event loop', 'one request in progress: on the loop');
    pool.requestStarted();
    await t.rejects(pool.run(here, {}, { inline: true }), /no op/, 'beside another request: on a thread');
    pool.requestEnded();
    t.equal(await pool.run(here, {}, { inline: true }), 'event loop', 'alone again: on the loop');
    pool.requestEnded();
    // an op that throws before it returns its promise is a rejection, and leaves the loop free for the next
    const throws = defineOp('throws-at-once', (): Promise<string> => {
      throw new Error('at once');
    });
    await t.rejects(pool.run(throws, {}, { inline: true }), /at once/);
    t.equal(await pool.run(here, {}, { inline: true }), 'event loop', 'after a throw: on the loop again');
  },
);

t.test('a thread that dies fails only its own ops, and is replaced', async (t) => {
  const entry = new URL('../helpers/crashing-task-worker.ts', import.meta.url);
  const pool = new TaskWorkers(1, 1, entry);
  t.teardown(() => pool.close());
  const audio = { bytes: speech, maxSeconds: 60, rate: 16000, context: 64, window: 512 };
  const before = await pool.run(audioFrames, audio);
  await t.rejects(
    pool.run(audioFrames, { ...audio, bytes: Buffer.alloc(13) }),
    { message: /task worker .*code 9/ },
    'the op that killed it fails',
  );
  const after = await pool.run(audioFrames, audio);
  t.same(after.frames, before.frames, 'the next op runs on a new thread');
});

t.test('many ops in flight, answered out of order, each reach their own caller (op ids are reused)', async (t) => {
  const pool = new TaskWorkers(2);
  t.teardown(() => pool.close());
  const audio = { bytes: speech, maxSeconds: 60, rate: 16000, context: 64, window: 512 };
  const want = await inline.run(audioFrames, audio);
  const lineWant = await inline.run(imageTensor, { source: line, sizing: lineSizing, maxPixels: 1e8 });
  for (let round = 0; round < 3; round++) {
    // long and short ops mixed, so that replies come back in another order than the ops were sent
    const ops = Array.from({ length: 24 }, (_, i) =>
      i % 3 === 0
        ? pool.run(audioFrames, audio).then((r) => ['audio', r.frames] as const)
        : pool
            .run(imageTensor, { source: line, sizing: lineSizing, maxPixels: 1e8 })
            .then((r) => ['line', r.dims] as const),
    );
    const got = await Promise.all(ops);
    got.forEach(([kind, value], i) => {
      t.equal(kind, i % 3 === 0 ? 'audio' : 'line', `round ${round}, op ${i}: its own kind of answer`);
      t.same(value, kind === 'audio' ? want.frames : lineWant.dims);
    });
  }
});

t.test('a closed pool refuses ops', async (t) => {
  const pool = new TaskWorkers(1);
  await pool.warm();
  await pool.close();
  await t.rejects(pool.run(ping, {}), /closed/);
  t.throws(() => new TaskWorkers(-1), RangeError);
});

t.test(
  'an image row written into a shared slot: the same floats, in the slot, on a worker and on the loop',
  async (t) => {
    for (const [name, sizing] of [
      ['fixed size', { kind: 'fixed', spec: { ...spec, resize: 'stretch' } }],
      ['width bucket (the slot holds the widest)', lineSizing],
    ] as const) {
      const plain = await inline.run(imageTensor, { source: line, sizing: sizing as Sizing, maxPixels: 1e8 });
      for (const [where, pool] of [
        ['loop', inline],
        ['worker', workers],
      ] as const) {
        const out = new Float32Array(new SharedArrayBuffer(4 * 3 * 48 * 4096));
        const got = await pool.run(imageTensor, { source: line, sizing: sizing as Sizing, maxPixels: 1e8, out });
        t.same(got.dims, plain.dims);
        t.ok(
          Buffer.from(got.data.slice().buffer).equals(Buffer.from(plain.data.buffer)),
          `${name}, ${where}: same floats`,
        );
        out[0] = 12345; // the row is the slot's memory (a worker's answer brings another handle on the same memory)
        t.equal(got.data[0], 12345, `${name}, ${where}: written into the slot, not copied back`);
        t.equal(got.data.byteOffset, 0);
      }
    }
    const small = new Float32Array(new SharedArrayBuffer(4 * 10));
    const own = await workers.run(imageTensor, { source: line, sizing: lineSizing, maxPixels: 1e8, out: small });
    t.ok(own.data.length > small.length, 'a row larger than the slot gets a buffer of its own');
    t.ok(own.data.buffer instanceof ArrayBuffer && small.every((v) => v === 0), 'and the slot is left alone');
    // a slot is reused with what its last row left in it: padding must be written, not assumed
    const boxed = { kind: 'fixed', spec: { ...spec, resize: 'letterbox', width: 128, height: 128, padValue: -1 } };
    const fresh = await inline.run(imageTensor, { source: line, sizing: boxed as Sizing, maxPixels: 1e8 });
    for (const pool of [inline, workers]) {
      const dirty = new Float32Array(new SharedArrayBuffer(4 * fresh.data.length)).fill(7);
      const got = await pool.run(imageTensor, { source: line, sizing: boxed as Sizing, maxPixels: 1e8, out: dirty });
      t.ok(
        Buffer.from(got.data.slice().buffer).equals(Buffer.from(fresh.data.buffer)),
        'a reused slot is padded like a fresh row',
      );
    }
  },
);
