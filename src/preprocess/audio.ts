import { Errors } from '../errors.js';

/** Decoded audio: mono float samples in [-1, 1] at `sampleRate`. */
export interface MonoAudio {
  readonly samples: Float32Array;
  readonly sampleRate: number;
  /** Duration of the input as sent, in milliseconds. */
  readonly durationMs: number;
}

/** The WAV header fields the decoder needs. */
export interface WavInfo {
  readonly format: 'pcm' | 'float';
  readonly channels: number;
  readonly sampleRate: number;
  readonly bitsPerSample: number;
  /** Sample frames (one sample per channel) in the data chunk. */
  readonly frames: number;
  /** Offset and length of the data chunk's payload. */
  readonly dataOffset: number;
  readonly dataBytes: number;
}

/** Chunks a WAV file may have before its `data` chunk (real files have a handful: fmt, fact, LIST, bext, ...). */
const MAX_CHUNKS = 256;

const WAVE_FORMAT_PCM = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT = 0x0003;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/** True when the bytes start like a RIFF/WAVE file (the route sniffs with this; content types can lie). */
export function isWav(bytes: Uint8Array): boolean {
  return bytes.length >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 4) === 'WAVE';
}

function ascii(b: Uint8Array, at: number, n: number): string {
  return String.fromCharCode(...b.subarray(at, at + n));
}

/**
 * Reads the chunks of a RIFF/WAVE file up to its `data` chunk, checking every size against the bytes present.
 * @throws MUON_ERR_INVALID_AUDIO for a truncated or inconsistent header or an unsupported encoding
 */
export function readWavHeader(bytes: Uint8Array): WavInfo {
  const bad = (why: string) => new Errors.INVALID_AUDIO(why);
  if (!isWav(bytes)) throw bad('not a RIFF/WAVE file');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let fmt: Omit<WavInfo, 'frames' | 'dataOffset' | 'dataBytes'> | undefined;
  let at = 12;
  for (let chunks = 0; at + 8 <= bytes.length; chunks++) {
    // the header is read on the event loop (to price a request): a file of millions of tiny chunks must not hold it
    if (chunks === MAX_CHUNKS) throw bad(`more than ${MAX_CHUNKS} chunks before the 'data' chunk`);
    const id = ascii(bytes, at, 4);
    let size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === 'data') {
      if (!fmt) throw bad("the 'data' chunk comes before the 'fmt ' chunk");
      // streaming writers (ffmpeg to a pipe) cannot know the size and write 0xFFFFFFFF: the data runs to the end
      if (size === 0xffffffff) size = bytes.length - body;
      if (body + size > bytes.length) {
        throw bad(`the 'data' chunk declares ${size} bytes but only ${bytes.length - body} follow (truncated?)`);
      }
      const blockAlign = (fmt.channels * fmt.bitsPerSample) / 8;
      if (size % blockAlign !== 0) {
        throw bad(`the 'data' chunk holds ${size} bytes, not a whole number of ${blockAlign}-byte sample frames`);
      }
      return { ...fmt, frames: size / blockAlign, dataOffset: body, dataBytes: size };
    }
    if (body + size > bytes.length) throw bad(`the '${id.replace(/[^\x20-\x7e]/g, '?')}' chunk is truncated`);
    if (id === 'fmt ') fmt = parseFmt(view, body, size, bad);
    at = body + size + (size & 1); // chunks are padded to an even size
  }
  throw bad(fmt ? "no 'data' chunk" : "no 'fmt ' chunk");
}

function parseFmt(
  view: DataView,
  at: number,
  size: number,
  bad: (why: string) => Error,
): Omit<WavInfo, 'frames' | 'dataOffset' | 'dataBytes'> {
  if (size < 16) throw bad(`the 'fmt ' chunk has ${size} bytes (at least 16 needed)`);
  let tag = view.getUint16(at, true);
  const channels = view.getUint16(at + 2, true);
  const sampleRate = view.getUint32(at + 4, true);
  const blockAlign = view.getUint16(at + 12, true);
  const bitsPerSample = view.getUint16(at + 14, true);
  if (tag === WAVE_FORMAT_EXTENSIBLE) {
    // the real format is the first two bytes of the SubFormat GUID
    if (size < 40) throw bad("WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk is shorter than 40 bytes");
    tag = view.getUint16(at + 24, true);
  }
  let format: 'pcm' | 'float';
  if (tag === WAVE_FORMAT_PCM && [8, 16, 24, 32].includes(bitsPerSample)) format = 'pcm';
  else if (tag === WAVE_FORMAT_IEEE_FLOAT && (bitsPerSample === 32 || bitsPerSample === 64)) format = 'float';
  else {
    throw bad(
      `unsupported encoding (format tag 0x${tag.toString(16).padStart(4, '0')}, ${bitsPerSample} bits); ` +
        'send PCM 8/16/24/32-bit or IEEE float 32/64-bit',
    );
  }
  if (channels < 1) throw bad('the header declares 0 channels');
  if (sampleRate < 1000 || sampleRate > 384_000) throw bad(`unsupported sample rate ${sampleRate} Hz`);
  if (blockAlign !== (channels * bitsPerSample) / 8) {
    throw bad(`block align ${blockAlign} does not match ${channels} channels of ${bitsPerSample} bits`);
  }
  return { format, channels, sampleRate, bitsPerSample };
}

/** Samples decoded or resampled between two yields to the event loop (a few milliseconds of work). */
const SLICE = 1 << 14;

/**
 * Long computations are generators that yield between slices of about SLICE samples: {@link runNow} runs one to its
 * end at once, {@link runSliced} lets the event loop answer other requests (health checks first) between slices.
 */
type Sliced<T> = Generator<void, T, void>;

function runNow<T>(work: Sliced<T>): T {
  for (;;) {
    const step = work.next();
    if (step.done) return step.value;
  }
}

/** Sliced work in progress, run round-robin by one pump. */
const sliced: {
  work: Sliced<unknown>;
  signal: AbortSignal | undefined;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}[] = [];
/** Time the pump may use per event-loop turn, whatever the number of jobs: the lag it adds stays this small. */
const TURN_MS = 4;

/**
 * Runs sliced work in the background: one pump per process takes a slice of each job in turn, for at most TURN_MS
 * per event-loop turn, then lets the loop go round. Ten concurrent recordings cost the loop as little as one; they
 * share the pump's time.
 */
function runSliced<T>(work: Sliced<T>, signal: AbortSignal | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    sliced.push({ work, signal, resolve: resolve as (v: unknown) => void, reject });
    if (sliced.length === 1) setImmediate(pump);
  });
}

function pump(): void {
  const until = performance.now() + TURN_MS;
  while (sliced.length > 0 && performance.now() < until) {
    const job = sliced.shift()!;
    // work whose client went away stops at its next slice: nobody would read it, and it holds memory
    if (job.signal?.aborted) {
      job.reject(job.signal.reason);
      continue;
    }
    try {
      const step = job.work.next();
      if (step.done) job.resolve(step.value);
      else sliced.push(job); // to the back of the line
    } catch (err) {
      job.reject(err);
    }
  }
  if (sliced.length > 0) setImmediate(pump);
}

/**
 * Decodes a WAV file to mono float samples at its own rate, mixing channels down by averaging.
 * @param maxSeconds longest duration accepted (checked from the header, before decoding)
 * @throws MUON_ERR_INVALID_AUDIO, MUON_ERR_MISSING_INPUT (no samples), MUON_ERR_AUDIO_TOO_LONG
 */
export function decodeWav(bytes: Uint8Array, maxSeconds: number): MonoAudio {
  return runNow(decodeSlices(bytes, maxSeconds));
}

/**
 * {@link decodeWav} in slices with the event loop free in between: a 10-minute recording stalls nobody. Stops at
 * the next slice, rejecting with the signal's reason, once `signal` aborts.
 */
export function decodeWavSliced(bytes: Uint8Array, maxSeconds: number, signal?: AbortSignal): Promise<MonoAudio> {
  return runSliced(decodeSlices(bytes, maxSeconds), signal);
}

function* decodeSlices(bytes: Uint8Array, maxSeconds: number): Sliced<MonoAudio> {
  const info = readWavHeader(bytes);
  const { channels, frames, sampleRate, bitsPerSample, format, dataOffset } = info;
  if (frames === 0) throw new Errors.MISSING_INPUT('the WAV file has no samples');
  const seconds = frames / sampleRate;
  if (seconds > maxSeconds) {
    throw new Errors.AUDIO_TOO_LONG(`${seconds.toFixed(1)} s is over this model's limit of ${maxSeconds} s`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + dataOffset, info.dataBytes);
  const width = bitsPerSample / 8;
  const read: (at: number) => number =
    format === 'float'
      ? width === 4
        ? (at) => view.getFloat32(at, true)
        : (at) => view.getFloat64(at, true)
      : width === 1
        ? (at) => (view.getUint8(at) - 128) / 128 // 8-bit PCM is unsigned
        : width === 2
          ? (at) => view.getInt16(at, true) / 32768
          : width === 3
            ? (at) => (view.getUint8(at) | (view.getUint8(at + 1) << 8) | (view.getInt8(at + 2) << 16)) / 8388608
            : (at) => view.getInt32(at, true) / 2147483648;
  const samples = new Float32Array(frames);
  const frameBytes = width * channels;
  // slices of about SLICE values read, whatever the channel count
  const slice = Math.max(1, Math.floor(SLICE / channels));
  for (let start = 0; start < frames; start += slice) {
    if (start > 0) yield;
    const end = Math.min(frames, start + slice);
    for (let i = start; i < end; i++) {
      let sum = 0;
      for (let c = 0; c < channels; c++) sum += read(i * frameBytes + c * width);
      const v = sum / channels;
      // NaN or inf in a float file would poison the model's recurrent state for the rest of the request
      samples[i] = Number.isFinite(v) ? v : 0;
    }
  }
  return { samples, sampleRate, durationMs: seconds * 1000 };
}

/** Samples a recording of `frames` at `from` Hz has once resampled to `to` Hz. */
export function resampledLength(frames: number, from: number, to: number): number {
  return from === to ? frames : Math.ceil((frames * to) / from);
}

/** Largest interpolation factor accepted: every common rate (8 k to 192 k, 11.025 k family) needs at most 640. */
const MAX_UP = 1024;
const filters = new Map<string, { up: number; down: number; half: number; taps: number; table: Float32Array }>();

/**
 * The polyphase filter for one rate pair, built once and kept: building it costs `up x taps` Bessel evaluations,
 * which for an odd client-chosen rate (say 383 999 Hz) would block the event loop for most of a second per request.
 */
function resamplingFilter(from: number, to: number) {
  const key = `${from}->${to}`;
  const cached = filters.get(key);
  if (cached) return cached;
  const g = gcd(from, to);
  const up = to / g;
  const down = from / g;
  if (up > MAX_UP) {
    throw new Errors.INVALID_AUDIO(
      `sample rate ${from} Hz is not supported (use a standard rate such as 16000, 44100 or 48000)`,
    );
  }
  const scale = Math.min(1, to / from) * 0.95; // cut-off, in cycles per input sample x 2
  const zeroCrossings = 16;
  const half = Math.ceil(zeroCrossings / scale); // filter half-width in input samples
  const taps = 2 * half;
  const beta = 8.6;
  const i0beta = besselI0(beta);
  // phase p: output position n*down/up has fractional part p/up; taps k = -half+1 .. half around floor(position)
  const table = new Float32Array(up * taps);
  for (let p = 0; p < up; p++) {
    const frac = p / up;
    let sum = 0;
    for (let j = 0; j < taps; j++) {
      const x = j - half + 1 - frac; // input sample offset from the output position
      const w = Math.abs(x) >= half ? 0 : besselI0(beta * Math.sqrt(1 - (x / half) ** 2)) / i0beta;
      const v = w * sinc(scale * x);
      table[p * taps + j] = v;
      sum += v;
    }
    for (let j = 0; j < taps; j++) table[p * taps + j] /= sum; // unit gain at DC
  }
  const filter = { up, down, half, taps, table };
  if (filters.size >= 32) filters.delete(filters.keys().next().value!); // a handful of rate pairs in practice
  filters.set(key, filter);
  return filter;
}

/**
 * Band-limited resampling by a windowed sinc (Kaiser window, 16 zero crossings, cut-off at 0.95 of the lower
 * Nyquist frequency), polyphase: the ratio is reduced to `up/down` and one filter per output phase is tabulated.
 * Written here rather than taken from npm: the WASM libsamplerate port loads asynchronously and `wave-resampler`
 * works on whole WAV files. Rate pairs whose reduced interpolation factor exceeds 1024 are refused (400).
 */
export function resample(input: Float32Array, from: number, to: number): Float32Array {
  return runNow(resampleSlices(input, from, to));
}

/** {@link resample} in slices with the event loop free in between (stopped as {@link decodeWavSliced} is). */
export function resampleSliced(
  input: Float32Array,
  from: number,
  to: number,
  signal?: AbortSignal,
): Promise<Float32Array> {
  return runSliced(resampleSlices(input, from, to), signal);
}

function* resampleSlices(input: Float32Array, from: number, to: number): Sliced<Float32Array> {
  if (from === to) return input;
  const { up, down, half, taps, table } = resamplingFilter(from, to);
  const outLength = Math.ceil((input.length * up) / down);
  const out = new Float32Array(outLength);
  const last = input.length - 1;
  // each slice's cost is its output samples x taps: sized so a slice is a few milliseconds
  const slice = Math.max(256, Math.floor((SLICE * 32) / taps));
  for (let start = 0; start < outLength; start += slice) {
    if (start > 0) yield;
    const end = Math.min(outLength, start + slice);
    for (let n = start; n < end; n++) {
      const pos = n * down;
      const base = Math.floor(pos / up);
      const p = pos - base * up;
      const first = base - half + 1;
      let acc = 0;
      const t = p * taps;
      if (first >= 0 && first + taps - 1 <= last) {
        for (let j = 0; j < taps; j++) acc += input[first + j] * table[t + j];
      } else {
        for (let j = 0; j < taps; j++) {
          const k = first + j;
          if (k >= 0 && k <= last) acc += input[k] * table[t + j];
        }
      }
      out[n] = acc;
    }
  }
  return out;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 50; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
