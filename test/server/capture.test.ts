import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { startApp } from '../helpers/app.js';

// Opt-in capture of real request inputs: successful requests only, content-addressed, bounded in bytes, in the
// layout the compression CLI takes as --calibration.

const dir = mkdtempSync(path.join(tmpdir(), 'muon-capture-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const lines = path.resolve(import.meta.dirname, '../fixtures/text-lines');
const files = ['line-01.png', 'line-02.png', 'line-03.png', 'line-04.png'];
const sizes = files.map((f) => readFileSync(path.join(lines, f)).length);
// room for the first two files only
const ctx = await startApp({
  MUON_CAPTURE_DIR: dir,
  MUON_CAPTURE_RATE: '1',
  MUON_CAPTURE_MAX_BYTES: String(sizes[0] + sizes[1]),
});
t.teardown(() => ctx.close());

const post = (payload: Buffer, type = 'image/png') =>
  ctx.app.inject({ method: 'POST', url: '/predict', headers: { 'content-type': type }, payload });
const captured = () => readdirSync(path.join(dir, 'text-orientation')).sort();

t.test('successful inputs are stored once each, up to the byte cap; failures are not stored', async (t) => {
  for (const f of files.slice(0, 2)) t.equal((await post(readFileSync(path.join(lines, f)))).statusCode, 200);
  await post(readFileSync(path.join(lines, files[0]))); // the same bytes again
  t.equal((await post(Buffer.from('not an image'), 'image/png')).statusCode, 415);
  for (let i = 0; i < 100 && captured().length < 2; i++) await sleep(10);
  t.equal(captured().length, 2);
  t.ok(
    captured().every((f) => /^[0-9a-f]{32}\.png$/.test(f)),
    'content-addressed names with the real extension',
  );
  for (const f of files.slice(2)) await post(readFileSync(path.join(lines, f)));
  await sleep(50);
  t.equal(captured().length, 2, 'nothing more once the cap is reached');
});
