import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { metricValue, startApp } from '../helpers/app.js';

// A sequence task holds one queue slot per active request at every step, so its queue limit must be applied at the
// door: with more concurrent recordings than maxQueueSize, the extra ones get 429 before any of their frames runs.

const root = path.resolve(import.meta.dirname, '../..');
const repo = mkdtempSync(path.join(tmpdir(), 'muon-vad-limits-'));
t.teardown(() => rmSync(repo, { recursive: true, force: true }));
cpSync(path.join(root, 'models/voice-activity'), path.join(repo, 'voice-activity'), { recursive: true });
const file = path.join(repo, 'voice-activity/manifest.json');
const manifest = JSON.parse(readFileSync(file, 'utf8'));
writeFileSync(file, JSON.stringify({ ...manifest, batching: { ...manifest.batching, maxQueueSize: 2 } }));
const ctx = await startApp({ MUON_MODEL_REPOSITORY: repo, MUON_WARMUP: 'false' });
t.teardown(() => ctx.close());

t.test('recordings beyond maxQueueSize get 429 and cost no compute; admitted ones get the full answer', async (t) => {
  const wav = readFileSync(path.join(root, 'test/fixtures/audio/speech-16k-mono.wav'));
  const post = () =>
    ctx.app.inject({
      method: 'POST',
      url: '/predict?model=voice-activity',
      headers: { 'content-type': 'audio/wav' },
      payload: wav,
    });
  const alone = await post();
  t.equal(alone.statusCode, 200);
  const framesPerRequest = await metricValue(ctx.metrics, 'muon_batch_size_sum', { model: 'voice-activity' });
  const answers = await Promise.all(Array.from({ length: 6 }, post));
  const ok = answers.filter((r) => r.statusCode === 200);
  const refused = answers.filter((r) => r.statusCode === 429);
  t.equal(ok.length + refused.length, 6, 'only 200 and 429');
  t.ok(refused.length > 0, `${refused.length} refused`);
  t.equal(refused[0].json().code, 'MUON_ERR_QUEUE_FULL');
  t.same(ok[0].json(), alone.json(), 'admitted ones get the full answer');
  const frames = await metricValue(ctx.metrics, 'muon_batch_size_sum', { model: 'voice-activity' });
  t.equal(frames, framesPerRequest * (1 + ok.length), 'frames computed only for admitted requests');
});

t.test('a WAV of a million empty chunks before its data is refused at once, not parsed on the loop', async (t) => {
  // the header is read on the event loop to price the request: 8 MB of 8-byte chunks held it ~250 ms per read
  const junk = Buffer.alloc(8 * 1_000_000);
  for (let at = 0; at < junk.length; at += 8) junk.write('junk', at, 'latin1'); // each: id, size 0
  const body = Buffer.concat([Buffer.from('RIFF\0\0\0\0WAVE', 'latin1'), junk]);
  const started = performance.now();
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/predict?model=voice-activity',
    headers: { 'content-type': 'audio/wav' },
    payload: body,
  });
  t.equal(res.statusCode, 400);
  t.equal(res.json().code, 'MUON_ERR_INVALID_AUDIO');
  t.match(res.json().message, /more than 256 chunks before the 'data' chunk/);
  t.comment(`answered in ${(performance.now() - started).toFixed(0)} ms`);
});
