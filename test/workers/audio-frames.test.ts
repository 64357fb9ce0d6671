import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { audioFrames, audioFramesLength } from '../../src/workers/ops.js';
import { TaskWorkers } from '../../src/workers/task-workers.js';
import { encodeWav } from '../helpers/wav.js';

// audioFrames writes a recording's samples into a row slot when the caller lends one (voice-activity's prepare).
// A slot holds what its last row left: the result must be exactly what a fresh buffer gets, the zeros before the
// samples and after them included, and audioFramesLength (read from the header on the loop) must say its length.

const fixtures = path.join(import.meta.dirname, '../fixtures/audio');
const layout = { rate: 16000, context: 64, window: 512 };
const recordings: [string, Uint8Array][] = [
  ['16 kHz mono', readFileSync(path.join(fixtures, 'speech-16k-mono.wav'))],
  ['44.1 kHz stereo (resampled)', readFileSync(path.join(fixtures, 'speech-44k-stereo.wav'))],
  [
    '8 kHz, 1001 samples (upsampled, a part frame)',
    encodeWav([Float32Array.from({ length: 1001 }, (_, i) => Math.sin(i / 7))], 8000),
  ],
  ['one sample', encodeWav([new Float32Array([0.5])], 16000)],
];

for (const [where, threads] of [
  ['on a task worker', 1],
  ['on the event loop', 0],
] as const) {
  t.test(`${where}: into a dirty slot, the same values as into a fresh buffer`, async (t) => {
    const workers = new TaskWorkers(threads);
    t.teardown(() => workers.close());
    for (const [name, bytes] of recordings) {
      const args = { bytes, maxSeconds: 600, ...layout };
      const fresh = await workers.run(audioFrames, args);
      t.equal(audioFramesLength(bytes, layout, 600), fresh.padded.length, `${name}: the header says the length`);
      const slot = new Float32Array(new SharedArrayBuffer(4 * (fresh.padded.length + 100))).fill(Number.NaN);
      const slotted = await workers.run(audioFrames, { ...args, out: slot });
      t.same([...slot.subarray(0, fresh.padded.length)], [...fresh.padded], `${name}: written into the slot`);
      t.same({ ...slotted, padded: [...slotted.padded] }, { ...fresh, padded: [...fresh.padded] }, `${name}: same`);
      const small = new Float32Array(new SharedArrayBuffer(4 * (fresh.padded.length - 1)));
      const own = await workers.run(audioFrames, { ...args, out: small });
      t.ok(own.padded.buffer instanceof ArrayBuffer, `${name}: a slot too small is not used`);
    }
  });
}

t.test('audioFramesLength: undefined for what the op will refuse', async (t) => {
  t.equal(audioFramesLength(new Uint8Array([1, 2, 3]), layout, 600), undefined);
  t.equal(audioFramesLength(Buffer.from('RIFF\0\0\0\0WAVEjunk'), layout, 600), undefined);
  t.equal(audioFramesLength(encodeWav([new Float32Array(0)], 16000), layout, 600), undefined, 'no samples');
  const twoSeconds = encodeWav([new Float32Array(32000)], 16000);
  t.equal(audioFramesLength(twoSeconds, layout, 1), undefined, 'over the longest accepted');
  t.ok(audioFramesLength(twoSeconds, layout, 2), 'at the longest accepted');
});
