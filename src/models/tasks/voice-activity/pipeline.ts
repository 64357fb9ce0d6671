import { SequenceScheduler } from '../../../batching/sequence.js';
import { audioFrames, audioFramesLength } from '../../../workers/ops.js';
import { Errors } from '../../../errors.js';
import { BatchBuffers, rowSlotsFor } from '../common/buffers.js';
import { ManifestError } from '../common/manifest.js';
import { FRAMED } from './graph.js';
import type { VoiceActivityManifest } from './manifest.js';
import type { TensorInfo } from '../../session.js';
import type { TaskContext, TaskPipeline } from '../task.js';

/**
 * One step of one request: `frames` consecutive frames from frame `first` of its padded samples (each frame's input
 * row is the context before it and its new samples), and the request's state before the first of them.
 */
export interface VadRow {
  readonly padded: Float32Array;
  readonly first: number;
  readonly frames: number;
  readonly state: Float32Array;
}

/** One step's output: the speech probability of each of its frames, and the state to carry into the next step. */
export interface VadStep {
  readonly probabilities: Float32Array;
  readonly state: Float32Array;
}

/**
 * Frames a request runs per graph call when the model is served wrapped in a Scan over frames (graph.ts): 32
 * frames are a second of audio at 16 kHz, a call of about 3 ms for one request.
 */
export const FRAMES_PER_CALL = 32;

/** Recordings up to this long are prepared into a row slot (3.8 MB at 16 kHz; see RowSlots). */
const SLOT_SECONDS = 60;

/** A decoded request: samples at the model's rate, with the context's zeros in front and the last frame padded. */
export interface VadRequest {
  readonly padded: Float32Array;
  readonly frames: number;
  /** Samples of the resampled audio, before padding. */
  readonly samples: number;
  readonly durationMs: number;
}

/** All of a request's frame probabilities. */
export interface VadResult {
  readonly probabilities: Float32Array;
  readonly request: VadRequest;
}

/** A speech segment in milliseconds from the start of the audio. */
export interface SpeechSegment {
  start_ms: number;
  end_ms: number;
}

/**
 * `voice-activity`: a WAV file in, speech segments out, with a Silero-VAD-style recurrent model
 * (`input` [B, context + window] float32, `state` [2, B, 128] float32, `sr` int64 scalar -> probability [B, 1] and
 * the new state). The audio runs frame by frame (512 samples at 16 kHz, with the previous frame's last 64 samples as
 * context, as Silero's own wrapper feeds it); each request carries its own state from one frame to the next, and a
 * {@link SequenceScheduler} stacks the current step of every request in progress into one batch. On a session of
 * the graph wrapped in a Scan over frames (graph.ts, what the server runs) a step is {@link FRAMES_PER_CALL} frames;
 * on the file's own graph (the compressor's calibration) it is one.
 */
export async function voiceActivity(
  ctx: TaskContext<VoiceActivityManifest>,
): Promise<TaskPipeline<VadRow, VadStep, { segments: SpeechSegment[]; duration_ms: number }, VadResult, VadRequest>> {
  const { manifest: m, session, where } = ctx;
  const framed = session.inputs.some((t) => t.name === FRAMED.frames);
  const named = (list: TensorInfo[], name: string) => list.find((t) => t.name === name)!;
  const find = (list: TensorInfo[], what: string, ok: (t: TensorInfo) => boolean, kind: string): TensorInfo => {
    const found = list.filter(ok);
    if (found.length !== 1) {
      throw new ManifestError(
        `${where}: voice-activity needs exactly one ${kind} ${what}; the graph has ${list.map((t) => `${t.name} ${t.type} [${t.shape.join(', ')}]`).join(', ')}`,
      );
    }
    return found[0];
  };
  const isAudioRow = (t: TensorInfo) => t.type === 'float32' && t.shape.length === 2;
  const audioIn = framed
    ? named(session.inputs, FRAMED.frames)
    : find(session.inputs, 'audio input', isAudioRow, 'float32 [batch, samples]');
  const stateIn = framed
    ? named(session.inputs, FRAMED.state)
    : find(
        session.inputs,
        'state input',
        (t) => t.type === 'float32' && t.shape.length === 3,
        'float32 [2, batch, 128]',
      );
  const srIn = find(
    session.inputs,
    'sample-rate input',
    (t) => t.type === 'int64' && t.shape.length === 0,
    'int64 scalar',
  );
  if (session.inputs.length !== 3)
    throw new ManifestError(`${where}: voice-activity expects 3 graph inputs (audio, state, sr)`);
  const probOut = framed
    ? named(session.outputs, FRAMED.probabilities)
    : m.output.name
      ? find(session.outputs, `output '${m.output.name}'`, (t) => t.name === m.output.name, 'named')
      : find(session.outputs, 'probability output', (t) => t.shape.length === 2, 'float32 [batch, 1]');
  const stateOut = framed
    ? named(session.outputs, FRAMED.stateOut)
    : find(session.outputs, 'state output', (t) => t !== probOut && t.shape.length === 3, 'float32 [2, batch, 128]');
  const [layers, , units] = stateIn.shape;
  if (typeof layers !== 'number' || typeof units !== 'number') {
    throw new ManifestError(`${where}: state input '${stateIn.name}' needs fixed first and last dimensions`);
  }
  const stateSize = layers * units;

  const rate = m.input.sampleRate;
  // Silero's framing: 512 new samples per frame at 16 kHz (256 at 8 kHz), plus 64 (32) samples of context
  const window = rate === 16000 ? 512 : 256;
  const context = rate === 16000 ? 64 : 32;
  const rowSize = context + window;
  const width = audioIn.shape.at(-1);
  if (typeof width === 'number' && width !== rowSize) {
    throw new ManifestError(
      `${where}: input '${audioIn.name}' takes ${width} samples; at ${rate} Hz frames are ${rowSize}`,
    );
  }
  const sr = { type: 'int64' as const, data: BigInt64Array.from([BigInt(rate)]), dims: [] };
  const { maxSeconds } = m.input;
  const v = m.vad;
  const post = {
    threshold: v.threshold,
    negThreshold: v.negThreshold ?? Math.max(v.threshold - 0.15, 0.01),
    minSpeechSamples: (rate * v.minSpeechDurationMs) / 1000,
    minSilenceSamples: (rate * v.minSilenceDurationMs) / 1000,
    speechPadSamples: (rate * v.speechPadMs) / 1000,
    window,
  };
  let scheduler: SequenceScheduler<VadRow, VadStep> | undefined;
  const perCall = framed ? FRAMES_PER_CALL : 1;
  const buffers = new BatchBuffers(m.batching.maxBatchSize * perCall * rowSize, session);
  // recordings up to a minute get a row slot (see RowSlots): most requests' samples never become external memory
  const slots = rowSlotsFor(context + Math.ceil((SLOT_SECONDS * rate) / window) * window, m.batching);
  /**
   * Writes a step's input rows at `at` in `input`, one after another (overlapping in the samples by the context), and
   * zeros for the frames a request's last step lacks (their probabilities and the state after them are not used).
   */
  const writeRows = (r: VadRow, input: Float32Array, at: number): void => {
    for (let j = 0; j < r.frames; j++) {
      const from = (r.first + j) * window;
      input.set(r.padded.subarray(from, from + rowSize), at + j * rowSize);
    }
    input.fill(0, at + r.frames * rowSize, at + perCall * rowSize);
  };

  return {
    accepts: ['audio'],
    inputSpec: {
      // the file graph's input, whose rows the pipeline runs `framesPerCall` at a time
      name: framed ? (ctx.fileGraph.inputs.find(isAudioRow)?.name ?? audioIn.name) : audioIn.name,
      datatype: 'FP32',
      shape: [-1, rowSize],
      framesPerCall: perCall,
      kind: 'audio',
      format: 'WAV (PCM 8/16/24/32-bit, IEEE float 32/64-bit), any rate and channel count',
      sampleRate: rate,
      frameSamples: window,
      contextSamples: context,
      maxSeconds,
    },
    graphMaxBatch: undefined,
    async prepare(req, signal) {
      if (req.kind !== 'audio') throw new Error(`voice-activity got ${req.kind} input; this is a bug`);
      const layout = { rate, context, window };
      const length = audioFramesLength(req.bytes, layout, maxSeconds);
      const { slot: out, release } = slots.lend(length ?? 0); // none for a header the op will refuse
      try {
        const row = await ctx.workers.run(audioFrames, { bytes: req.bytes, maxSeconds, ...layout, out }, { signal });
        if (row.frames === 0)
          throw new Errors.MISSING_INPUT('the audio is too short to hold one sample at the model rate');
        return { row, key: '', release };
      } catch (err) {
        // the op has ended (on a worker it runs to its end): nothing writes the slot any more
        release();
        throw err;
      }
    },
    async runBatch(rows) {
      const n = rows.length;
      // every row takes `perCall` frames (a request's last step may hold fewer: see writeRows)
      const out = await buffers.lend(n * perCall * rowSize, (input) => {
        const state = new Float32Array(n * stateSize);
        rows.forEach((r, b) => {
          writeRows(r, input, b * perCall * rowSize);
          // a row's state is [layers, units]; the batch's is [layers, batch, units]
          for (let l = 0; l < layers; l++) state.set(r.state.subarray(l * units, (l + 1) * units), (l * n + b) * units);
        });
        return session.run(
          {
            [audioIn.name]: { type: 'float32', data: input, dims: framed ? [n, perCall, rowSize] : [n, rowSize] },
            [stateIn.name]: { type: 'float32', data: state, dims: [layers, n, units] },
            [srIn.name]: sr,
          },
          [probOut.name, stateOut.name],
        );
      });
      const prob = out[probOut.name].data as Float32Array;
      const next = out[stateOut.name].data as Float32Array;
      return rows.map((r, b) => {
        const s = new Float32Array(stateSize);
        for (let l = 0; l < layers; l++) s.set(next.subarray((l * n + b) * units, (l * n + b + 1) * units), l * units);
        return { probabilities: prob.slice(b * perCall, b * perCall + r.frames), state: s };
      });
    },
    async sequence(request, opts, submit) {
      scheduler ??= new SequenceScheduler<VadRow, VadStep>(submit);
      const probabilities = new Float32Array(request.frames);
      let frame = 0;
      await scheduler.run((previous) => {
        if (previous) {
          probabilities.set(previous.probabilities, frame);
          frame += previous.probabilities.length;
        }
        if (frame === request.frames) return undefined;
        const frames = Math.min(perCall, request.frames - frame);
        return { padded: request.padded, first: frame, frames, state: previous?.state ?? new Float32Array(stateSize) };
      }, opts);
      return { probabilities, request };
    },
    finish({ probabilities, request }) {
      const toMs = (sample: number) => (sample / rate) * 1000;
      return {
        segments: speechSegments(probabilities, request.samples, post).map(([s, e]) => ({
          start_ms: toMs(s),
          end_ms: Math.min(toMs(e), request.durationMs),
        })),
        duration_ms: request.durationMs,
      };
    },
    warmupRow() {
      return {
        row: {
          padded: new Float32Array((perCall - 1) * window + rowSize),
          first: 0,
          frames: perCall,
          state: new Float32Array(stateSize),
        },
        key: '',
      };
    },
  };
}

/** Thresholds of {@link speechSegments}, in samples at the model rate. */
export interface SegmentOptions {
  readonly threshold: number;
  readonly negThreshold: number;
  readonly minSpeechSamples: number;
  readonly minSilenceSamples: number;
  readonly speechPadSamples: number;
  readonly window: number;
}

/**
 * Silero's `get_speech_timestamps` (utils_vad.py), without `max_speech_duration_s` (infinite, its default): speech
 * starts at the first frame at or above `threshold`, ends once the probability has stayed below `negThreshold` for
 * `minSilenceSamples`, segments shorter than `minSpeechSamples` are dropped, and each is padded by `speechPadSamples`
 * (half the gap when two are closer than twice the pad).
 * @returns [start, end) sample pairs
 */
export function speechSegments(probs: Float32Array, totalSamples: number, o: SegmentOptions): [number, number][] {
  const speeches: [number, number][] = [];
  let triggered = false;
  let start = 0;
  let tempEnd = 0;
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i];
    const cur = o.window * i;
    if (p >= o.threshold && tempEnd) tempEnd = 0;
    if (p >= o.threshold && !triggered) {
      triggered = true;
      start = cur;
      continue;
    }
    if (p < o.negThreshold && triggered) {
      if (!tempEnd) tempEnd = cur;
      if (cur - tempEnd < o.minSilenceSamples) continue;
      if (tempEnd - start > o.minSpeechSamples) speeches.push([start, tempEnd]);
      triggered = false;
      tempEnd = 0;
    }
  }
  if (triggered && totalSamples - start > o.minSpeechSamples) speeches.push([start, totalSamples]);
  const pad = o.speechPadSamples;
  for (let i = 0; i < speeches.length; i++) {
    const s = speeches[i];
    if (i === 0) s[0] = Math.max(0, Math.trunc(s[0] - pad));
    if (i < speeches.length - 1) {
      const next = speeches[i + 1];
      const gap = next[0] - s[1];
      if (gap < 2 * pad) {
        s[1] += Math.floor(gap / 2);
        next[0] = Math.max(0, Math.trunc(next[0] - Math.floor(gap / 2)));
      } else {
        s[1] = Math.min(totalSamples, Math.trunc(s[1] + pad));
        next[0] = Math.max(0, Math.trunc(next[0] - pad));
      }
    } else {
      s[1] = Math.min(totalSamples, Math.trunc(s[1] + pad));
    }
  }
  return speeches;
}
