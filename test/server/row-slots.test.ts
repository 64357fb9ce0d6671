import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { readWavHeader } from '../../src/preprocess/audio.js';
import { startApp } from '../helpers/app.js';
import { wavFile } from '../helpers/wav.js';

// Image rows and recordings' samples are written into shared slots that are lent again as soon as their request is
// done (tasks/common/buffers.ts RowSlots). Many requests with different inputs at once must each get the answer their
// input gets alone: no row read after its slot was lent again, none written into another request's slot. (Scores
// are compared to 1e-5: a batch may sum in another order than a lone row.) A row that finds every slot lent gets an
// ordinary buffer: test/workers/image-row.test.ts.

const root = path.resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(path.join(tmpdir(), 'muon-row-slots-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
for (const m of ['text-orientation', 'face-detection', 'voice-activity'])
  cpSync(path.join(root, 'models', m), path.join(dir, m), { recursive: true });

const ctx = await startApp({ MUON_MODEL_REPOSITORY: dir, MUON_WARMUP: 'false' });
t.teardown(() => ctx.close());

const fixture = (f: string) => readFileSync(path.join(root, 'test/fixtures', f));
const predict = async (model: string, body: Buffer, type: string) => {
  const res = await ctx.app.inject({
    method: 'POST',
    url: `/predict?model=${model}`,
    headers: { 'content-type': type },
    payload: body,
  });
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`);
  return res.json() as unknown;
};

const speech = fixture('audio/speech-16k-mono.wav');
const head = readWavHeader(speech);
/** The first `seconds` of the speech fixture. */
const speechCut = (seconds: number) => {
  const block = (head.channels * head.bitsPerSample) / 8;
  const bytes = block * Math.round(seconds * head.sampleRate);
  const f = { tag: 1, channels: head.channels, sampleRate: head.sampleRate, bits: head.bitsPerSample };
  return wavFile(f, speech.subarray(head.dataOffset, head.dataOffset + bytes));
};

const cases: { model: string; type: string; bodies: Buffer[]; concurrent: number }[] = [
  {
    model: 'text-orientation',
    type: 'image/png',
    bodies: [
      'line-01.png',
      'line-01-rot180.png',
      'line-02.png',
      'line-02-rot180.png',
      'hard-01.png',
      'hard-01-rot180.png',
    ].map((f) => fixture(`text-lines/${f}`)),
    concurrent: 96,
  },
  {
    model: 'face-detection',
    type: 'image/jpeg',
    bodies: ['astronaut.jpg', 'chelsea.jpg', 'coffee.jpg'].map((f) => fixture(`photos/${f}`)),
    concurrent: 12,
  },
  // recordings of different lengths share slots of one size class: a shorter one written where a longer one was
  // must not read its samples (the zeros after its last frame are written, not assumed)
  {
    model: 'voice-activity',
    type: 'audio/wav',
    bodies: [
      speech,
      speechCut(1.3),
      fixture('audio/silence-16k.wav'),
      speechCut(3.7),
      fixture('audio/speech-44k-stereo.wav'),
    ],
    concurrent: 20,
  },
];

for (const { model, type, bodies, concurrent } of cases) {
  t.test(`${model}: ${concurrent} requests at once each get their own input's answer`, async (t) => {
    const alone: unknown[] = [];
    for (const b of bodies) alone.push(await predict(model, b, type));
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(
        Array.from({ length: concurrent }, (_, i) => predict(model, bodies[i % bodies.length], type)),
      );
      const wrong = answers.filter((a, i) => !close(a, alone[i % bodies.length]));
      t.equal(wrong.length, 0, `round ${round}: every answer is its input's`);
    }
  });
}

/** The same answer: equal but for numbers, which may differ by 1e-5. */
function close(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'number') return Math.abs(a - b) <= 1e-5;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => close(x, b[i]));
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const [ka, kb] = [Object.keys(a).sort(), Object.keys(b).sort()];
    return (
      close(ka, kb) && ka.every((k) => close((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
    );
  }
  return a === b;
}
