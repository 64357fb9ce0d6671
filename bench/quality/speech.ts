/**
 * Speech for the voice-activity evaluation: utterances synthesized by espeak-ng (voices, rates and pitches of the
 * split), laid out with silences between them over a noise or music bed, with the truth of where each utterance
 * is. Each split has its own voices and texts. Deterministic for a seed and an espeak-ng version.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeWav, resample } from '../../src/preprocess/audio.js';
import type { Segment } from '../../src/quantize/task-metrics.js';
import type { Rng, Split } from './render.js';

/** The rate the recordings are written at. */
export const RATE = 16_000;

/** espeak-ng voices (voice file + variant) of each split: no voice file in both. */
export const VOICES: Record<Split, readonly string[]> = {
  calibration: ['en-us', 'en-gb-x-rp+f2', 'en-029+m3', 'en-us+f4'],
  evaluation: ['en', 'en-gb-scotland+m1', 'en-gb-x-gbclan+m7', 'en-gb-x-gbcwmd+f1', 'en-us-nyc+f3', 'en+m4'],
};

/** True when espeak-ng can be run here. */
export function haveEspeak(): boolean {
  try {
    execFileSync('espeak-ng', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** One utterance at RATE, trimmed to its first and last sample above the noise floor. */
function speak(text: string, voice: string, wpm: number, pitch: number): Float32Array {
  const dir = mkdtempSync(path.join(tmpdir(), 'muon-speech-'));
  try {
    const file = path.join(dir, 'u.wav');
    execFileSync('espeak-ng', ['-v', voice, '-s', String(wpm), '-p', String(pitch), '-w', file, text]);
    const audio = decodeWav(readFileSync(file), 600);
    const samples = resample(audio.samples, audio.sampleRate, RATE);
    let first = 0;
    let last = samples.length - 1;
    while (first < last && Math.abs(samples[first]) < 0.01) first++;
    while (last > first && Math.abs(samples[last]) < 0.01) last--;
    return samples.slice(first, last + 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A recording and where its speech is. */
export interface SpeechSample {
  readonly samples: Float32Array;
  readonly bed: string;
  readonly segments: Segment[];
}

/**
 * 3 to 6 utterances of 3 to 14 words from `words`, each in a voice of the split at 120 to 220 words a minute,
 * separated by 0.6 to 3 s of silence (and 0.5 to 2 s before the first and after the last), over a bed of white
 * noise, pink-ish noise, a hum, or synthetic music (chords of sines), from 30 dB below the speech to 5 dB.
 */
export function renderSpeech(words: readonly string[], split: Split, rng: Rng): SpeechSample {
  const parts: Float32Array[] = [];
  const segments: Segment[] = [];
  let at = Math.round(rng.range(0.5, 2) * RATE);
  const gaps = [at];
  for (let k = rng.int(3, 6); k > 0; k--) {
    const n = rng.int(3, 14);
    const from = rng.int(0, words.length - n);
    const utterance = speak(
      words.slice(from, from + n).join(' '),
      rng.pick(VOICES[split]),
      rng.int(120, 220),
      rng.int(30, 70),
    );
    parts.push(utterance);
    segments.push({ start: at / RATE, end: (at + utterance.length) / RATE });
    const gap = Math.round(rng.range(k === 1 ? 0.5 : 0.6, k === 1 ? 2 : 3) * RATE);
    gaps.push(gap);
    at += utterance.length + gap;
  }
  const out = new Float32Array(at);
  let cursor = gaps[0];
  parts.forEach((p, i) => {
    out.set(p, cursor);
    cursor += p.length + gaps[i + 1];
  });
  const speechRms = rms(parts);
  const snrDb = rng.range(5, 30);
  const bedKind = rng.pick(['white noise', 'brown noise', 'hum', 'music'] as const);
  const bed = makeBed(bedKind, out.length, rng);
  const gain = speechRms / Math.max(1e-9, rms([bed])) / 10 ** (snrDb / 20);
  for (let i = 0; i < out.length; i++) out[i] = Math.max(-1, Math.min(1, out[i] + gain * bed[i]));
  return { samples: out, bed: `${bedKind} at ${snrDb.toFixed(0)} dB SNR`, segments };
}

function rms(parts: readonly Float32Array[]): number {
  let sum = 0;
  let n = 0;
  for (const p of parts) for (const v of p) ((sum += v * v), n++);
  return Math.sqrt(sum / Math.max(1, n));
}

function makeBed(kind: 'white noise' | 'brown noise' | 'hum' | 'music', n: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  if (kind === 'white noise') for (let i = 0; i < n; i++) out[i] = rng.normal();
  else if (kind === 'brown noise') {
    let v = 0;
    for (let i = 0; i < n; i++) out[i] = v = 0.98 * v + rng.normal() * 0.2;
  } else if (kind === 'hum') {
    const f = rng.pick([50, 60]);
    for (let i = 0; i < n; i++)
      out[i] = Math.sin((2 * Math.PI * f * i) / RATE) + 0.3 * Math.sin((6 * Math.PI * f * i) / RATE);
  } else {
    // a chord every half second to two seconds: three sines of a major triad, with a soft attack and decay
    let i = 0;
    while (i < n) {
      const length = Math.round(rng.range(0.5, 2) * RATE);
      const root = 110 * 2 ** (rng.int(0, 24) / 12);
      const notes = [root, root * 2 ** (4 / 12), root * 2 ** (7 / 12)];
      for (let j = 0; j < length && i + j < n; j++) {
        const env = Math.min(1, j / 800) * Math.exp(-j / length);
        out[i + j] = env * notes.reduce((s, f) => s + Math.sin((2 * Math.PI * f * j) / RATE), 0);
      }
      i += length;
    }
  }
  return out;
}
