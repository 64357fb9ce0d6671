import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { startApp } from '../helpers/app.js';

// Image rows are written into shared slots that are lent again as soon as their request is done
// (tasks/common/buffers.ts RowSlots). Many requests with different images at once must each get the answer their
// image gets alone: no row read after its slot was lent again, none written into another request's slot. Face
// detection's rows (4.7 MB) have only three slots, so most of its concurrent rows take ordinary buffers.

const root = path.resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(path.join(tmpdir(), 'muon-row-slots-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
for (const m of ['text-orientation', 'face-detection'])
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

for (const [model, type, files, concurrent] of [
  [
    'text-orientation',
    'image/png',
    ['line-01.png', 'line-01-rot180.png', 'line-02.png', 'line-02-rot180.png', 'hard-01.png', 'hard-01-rot180.png'],
    96,
  ],
  ['face-detection', 'image/jpeg', ['astronaut.jpg', 'chelsea.jpg', 'coffee.jpg'], 12],
] as const) {
  t.test(`${model}: ${concurrent} requests at once each get their own image's answer`, async (t) => {
    const dirOf = model === 'face-detection' ? 'photos' : 'text-lines';
    const bodies = files.map((f) => fixture(`${dirOf}/${f}`));
    const alone: unknown[] = [];
    for (const b of bodies) alone.push(await predict(model, b, type));
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(
        Array.from({ length: concurrent }, (_, i) => predict(model, bodies[i % bodies.length], type)),
      );
      const wrong = answers.filter((a, i) => JSON.stringify(a) !== JSON.stringify(alone[i % bodies.length]));
      t.equal(wrong.length, 0, `round ${round}: every answer is its image's`);
    }
  });
}
