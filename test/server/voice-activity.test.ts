import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { metricValue, multipart, startApp } from '../helpers/app.js';
import { encodeWav, wavFile } from '../helpers/wav.js';

// The default `voice-activity` model (Silero VAD v6) through HTTP, on real synthesized speech padded with 1 s of
// silence on each side (test/fixtures/audio, made by scripts/make-speech-fixtures.sh): segments, batching of the
// frames of concurrent requests, and the audio errors.

const capture = mkdtempSync(path.join(tmpdir(), 'muon-vad-capture-'));
t.teardown(() => rmSync(capture, { recursive: true, force: true }));
const ctx = await startApp({ MUON_CAPTURE_DIR: capture, MUON_CAPTURE_RATE: '1' });
t.teardown(() => ctx.close());
const { app, metrics } = ctx;

const fixture = (name: string) => readFileSync(path.resolve(import.meta.dirname, '../fixtures/audio', name));
const speech16 = fixture('speech-16k-mono.wav');
const speech44 = fixture('speech-44k-stereo.wav');
const silence = fixture('silence-16k.wav');
const url = '/predict?model=voice-activity';
const post = (payload: Buffer, type = 'audio/wav', to = url) =>
  app.inject({ method: 'POST', url: to, headers: { 'content-type': type }, payload });

interface Answer {
  segments: { start_ms: number; end_ms: number }[];
  duration_ms: number;
}

/** Speech is the middle of each fixture: 1 s of digital silence before it and after it. */
function checkSpeech(t: { ok(value: unknown, message: string): unknown }, a: Answer, label: string) {
  t.ok(a.segments.length >= 1, `${label}: speech found`);
  const first = a.segments[0];
  const last = a.segments.at(-1)!;
  // one 32 ms frame and the 30 ms pad may reach slightly into the silence, no more
  t.ok(first.start_ms >= 1000 - 100, `${label}: nothing in the leading silence (${first.start_ms})`);
  t.ok(last.end_ms <= a.duration_ms - 1000 + 100, `${label}: nothing in the trailing silence (${last.end_ms})`);
  const spoken = a.segments.reduce((s, g) => s + (g.end_ms - g.start_ms), 0);
  t.ok(spoken >= 2000, `${label}: ${spoken} ms of the ~3.5 s sentence is speech`);
  for (const g of a.segments) t.ok(g.start_ms < g.end_ms, `${label}: ordered segment`);
}

t.test('the model loads and describes its input', async (t) => {
  t.same(ctx.failures, []);
  t.match((await app.inject({ url: '/v1/models/voice-activity' })).json(), {
    task: 'voice-activity',
    state: 'READY',
    // what the pipeline runs: the frame graph wrapped in a Scan, 32 frames of each request per call
    input: {
      name: 'input',
      shape: [-1, 576],
      framesPerCall: 32, // the frame graph wrapped in a Scan: 32 frames of each request per call
      kind: 'audio',
      sampleRate: 16000,
      frameSamples: 512,
      maxSeconds: 600,
    },
    outputs: [{ name: 'output' }, { name: 'stateN' }],
  });
});

t.test('speech padded with silence: segments cover the speech and none the silence', async (t) => {
  const a = await post(speech16);
  t.equal(a.statusCode, 200, a.body);
  t.match(a.json(), { model: 'voice-activity', version: '6', task: 'voice-activity' });
  t.ok(Math.abs(a.json().duration_ms - 5582.75) < 0.01);
  checkSpeech(t, a.json(), '16 kHz mono');
  const b = await post(speech44, 'audio/x-wav');
  t.equal(b.statusCode, 200, b.body);
  checkSpeech(t, b.json(), '44.1 kHz stereo');
  // the resampled file finds the same speech, to within a frame or two
  t.equal(b.json().segments[0].start_ms, a.json().segments[0].start_ms);
  t.ok(Math.abs(b.json().segments.at(-1).end_ms - a.json().segments.at(-1).end_ms) <= 64);
  for (const type of ['audio/wave', 'audio/vnd.wave', 'application/octet-stream']) {
    t.same((await post(speech16, type)).json(), a.json(), type);
  }
  const form = multipart([{ name: 'file', filename: 'speech.wav', type: 'audio/wav', data: speech16 }]);
  const m = await app.inject({ method: 'POST', url: '/v1/models/voice-activity/predict', ...form });
  t.same(m.json(), a.json(), 'multipart upload');
});

t.test('silence has no segments', async (t) => {
  const r = await post(silence);
  t.equal(r.statusCode, 200, r.body);
  t.same(r.json().segments, []);
  t.equal(r.json().duration_ms, 2000);
  const noise = encodeWav([Float32Array.from({ length: 8000 }, (_, i) => 0.001 * Math.sin(i))], 8000);
  t.same((await post(noise)).json().segments, [], 'quiet tone');
});

t.test('steps of concurrent requests share batches, and answers equal the one-by-one answers', async (t) => {
  const files = [speech16, speech44, silence, speech16];
  const alone: unknown[] = [];
  for (const f of files) alone.push((await post(f)).json());
  const labels = { model: 'voice-activity' };
  const countBefore = await metricValue(metrics, 'muon_batch_size_count', labels);
  const sumBefore = await metricValue(metrics, 'muon_batch_size_sum', labels);
  const all = [...files, ...files];
  const together = await Promise.all(all.map((f) => post(f)));
  const batches = (await metricValue(metrics, 'muon_batch_size_count', labels)) - countBefore;
  const steps = (await metricValue(metrics, 'muon_batch_size_sum', labels)) - sumBefore;
  // a request runs 32 frames (of 512 samples at 16 kHz) per step
  const expected = all.reduce((n, f) => n + Math.ceil(Math.ceil(((f === silence ? 2 : 5.5828) * 16000) / 512) / 32), 0);
  t.ok(
    Math.abs(steps - expected) <= all.length,
    `every step went through the batcher (${steps}, ${expected} expected)`,
  );
  // the recordings are decoded on the task workers, whose answers come back at different moments: the steps of
  // requests decoded together share batches from the start, the others join them once they arrive
  t.ok(batches < steps / 2, `${steps} steps ran in ${batches} batches (mean batch ${(steps / batches).toFixed(1)})`);
  together.forEach((r, i) => {
    t.equal(r.statusCode, 200);
    t.same(r.json(), alone[i % files.length], `request ${i} answers as when alone`);
  });
});

t.test('audio errors', async (t) => {
  const expect = async (
    res: Promise<{ statusCode: number; json(): any }>,
    status: number,
    code: string,
    why: string,
  ) => {
    const r = await res;
    t.equal(r.statusCode, status, why);
    t.equal(r.json().code, code, why);
    t.notOk(r.json().stack);
  };
  const f = { tag: 1, channels: 1, sampleRate: 16000, bits: 16 };
  await expect(
    post(Buffer.from('ID3\x04 not a wav at all')),
    415,
    'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
    'mp3 as audio/wav',
  );
  await expect(post(Buffer.from('RIFF\x10')), 400, 'MUON_ERR_INVALID_AUDIO', 'cut in the RIFF header');
  const png = readFileSync(path.resolve(import.meta.dirname, '../fixtures/text-lines/line-03.png'));
  await expect(post(png, 'image/png'), 415, 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE', 'an image to the audio model');
  await expect(
    post(speech16, 'audio/wav', '/predict?model=text-orientation'),
    415,
    'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
    'audio to an image model',
  );
  await expect(post(speech16.subarray(0, 5000)), 400, 'MUON_ERR_INVALID_AUDIO', 'truncated file');
  await expect(post(wavFile(f, Buffer.alloc(1000), 64000)), 400, 'MUON_ERR_INVALID_AUDIO', 'data size lies');
  await expect(post(wavFile({ ...f, tag: 0x55 }, Buffer.alloc(1000))), 400, 'MUON_ERR_INVALID_AUDIO', 'MP3 in WAV');
  await expect(post(wavFile(f, Buffer.alloc(0))), 400, 'MUON_ERR_MISSING_INPUT', '0 samples');
  await expect(post(Buffer.alloc(0)), 400, 'MUON_ERR_MISSING_INPUT', 'empty body');
  // 601 s at 1 kHz, 8-bit: small enough to send, over the manifest's maxSeconds of 600
  await expect(
    post(wavFile({ ...f, sampleRate: 1000, bits: 8 }, Buffer.alloc(601_000, 128))),
    413,
    'MUON_ERR_AUDIO_TOO_LONG',
    'too long',
  );
  await expect(post(speech16, 'audio/wav', `${url}&timeout_ms=1`), 504, 'MUON_ERR_DEADLINE_EXCEEDED', 'deadline');
});

t.test('captured audio is stored as the .wav file sent', async (t) => {
  await post(speech16);
  const dir = path.join(capture, 'voice-activity');
  for (let i = 0; i < 50 && !(existsSync(dir) && readdirSync(dir).some((f) => f.endsWith('.wav'))); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const stored = readdirSync(dir).filter((f) => f.endsWith('.wav'));
  t.ok(stored.length >= 1, 'stored as .wav');
  t.ok(
    stored.some((f) => readFileSync(path.join(dir, f)).equals(speech16)),
    'byte for byte',
  );
});
