import { decodeWavSliced, readWavHeader, resampledLength, resampleSliced } from '../preprocess/audio.js';
import { dims, imageToTensorSized, type ImageSource, type ImageSpec, type ImageTensor } from '../preprocess/image.js';
import { imageHeaderSize } from '../preprocess/image-header.js';
import { decodeInferBody, encodeInferBody, type AnswerModel, type AnswerRequest } from '../protocol/v2-codec.js';
import type { HostTensor } from '../models/session.js';

// The CPU work that is worth a thread hop and more than one task needs: decoding and sampling images, decoding and
// resampling audio, decoding large v2 infer bodies. A task's own ops live in its folder (the OCR pipeline's in tasks/ocr/ops.ts).

/** How an image's tensor size follows from its upright size. */
export type Sizing =
  /** Always the spec's width x height. */
  | { readonly kind: 'fixed'; readonly spec: ImageSpec }
  /**
   * A text line: scaled to `spec.height`, its width rounded up to a multiple of `widthStep`, at least `minWidth`, at
   * most `maxWidth` (see {@link bucketWidth}).
   */
  | {
      readonly kind: 'line';
      readonly spec: Omit<ImageSpec, 'width'>;
      readonly minWidth: number;
      readonly maxWidth: number;
      readonly widthStep: number;
    };

/**
 * The width bucket of a w x h line: its width once scaled to `height` (PaddleOCR: ceil(H * w / h)), rounded up to a
 * multiple of `widthStep`, at least `minWidth`, at most `maxWidth` (wider lines are squeezed).
 */
export function bucketWidth(
  w: number,
  h: number,
  o: { readonly height: number; readonly minWidth: number; readonly maxWidth: number; readonly widthStep: number },
): number {
  const resized = Math.max(1, Math.ceil((o.height * w) / h));
  return Math.min(o.maxWidth, Math.max(o.minWidth, Math.ceil(resized / o.widthStep) * o.widthStep));
}

/**
 * Pixels up to which an image is prepared on the event loop rather than on a task worker: a text line or a small
 * crop decodes and samples in a few tenths of a millisecond, about what the hop to a worker and back costs on a busy
 * machine (text-orientation at one connection: 230 req/s on the loop, 202 through a worker); larger images go to
 * the workers, where their milliseconds do not hold up HTTP. A small one is prepared on the loop only for a lone
 * request, while nothing else is being prepared (see TaskWorkers.run's `inline`): under load those tenths of a
 * millisecond would add up.
 */
export const SMALL_IMAGE_PIXELS = 1 << 16;

/** Whether an image (its header, for encoded bytes) is small enough to prepare on the event loop. */
export function isSmallImage(source: ImageSource): boolean {
  if (!(source instanceof Uint8Array)) return source.width * source.height <= SMALL_IMAGE_PIXELS;
  const size = imageHeaderSize(source);
  return size !== undefined && size.width * size.height <= SMALL_IMAGE_PIXELS;
}

/**
 * A piece of a task's CPU work that is worth a thread hop: plain data in, plain data out (typed arrays the caller
 * gives up travel without a copy; results come back as wire.ts's postToLoop sends them), so the same op runs on a
 * task worker or, inline or with MUON_TASK_THREADS=0, on the event loop.
 * Workers find an op by its name: the common ops below and those a task's definition lists (see tasks/registry.ts).
 */
export interface Op<A, R> {
  readonly name: string;
  run(args: A, signal?: AbortSignal): Promise<R>;
}

/** An op named `name`: unique across the common ops and every task's. */
export function defineOp<A, R>(name: string, run: (args: A, signal?: AbortSignal) => Promise<R>): Op<A, R> {
  return { name, run };
}

/** A v2 infer body, parsed and decoded (see {@link decodeInferBody}). */
export const inferBody = defineOp('inferBody', async (a: Parameters<typeof decodeInferBody>[0]) => decodeInferBody(a));

/** A v2 infer answer's body, encoded (see {@link encodeInferBody}): for outputs large enough to write as JSON. */
export const inferAnswer = defineOp(
  'inferAnswer',
  async (a: { model: AnswerModel; request: AnswerRequest; outputs: Record<string, HostTensor> }) =>
    encodeInferBody(a.model, a.request, a.outputs),
);

/** Nothing: a thread's first answer, once its modules are loaded. */
export const ping = defineOp('ping', async (_: Record<string, never>): Promise<null> => null);

/** An image (encoded, or pixels) to one normalized tensor row sized by `sizing`. */
export const imageTensor = defineOp(
  'imageTensor',
  async (a: { source: ImageSource; sizing: Sizing; maxPixels: number; out?: Float32Array }): Promise<ImageTensor> => {
    const { sizing } = a;
    return imageToTensorSized(a.source, a.maxPixels, (w, h) => {
      const spec =
        sizing.kind === 'fixed'
          ? sizing.spec
          : { ...sizing.spec, width: bucketWidth(w, h, { ...sizing, height: sizing.spec.height }) };
      // written into the caller's slot (shared memory: no copy back) when the row fits it
      const values = dims(spec).reduce((x, y) => x * y, 1);
      return { spec, out: a.out !== undefined && a.out.length >= values ? a.out.subarray(0, values) : undefined };
    });
  },
);

/** How a voice-activity model reads a recording: `context` zeros, then the samples, then zeros up to whole frames. */
export interface AudioLayout {
  readonly rate: number;
  readonly context: number;
  readonly window: number;
}

/** Values of a recording of `samples` (at the layout's rate) laid out as {@link audioFrames} lays it out. */
const paddedLength = (samples: number, l: AudioLayout) => l.context + Math.ceil(samples / l.window) * l.window;

/**
 * The values {@link audioFrames} will return for a WAV file, read from its header (cheap enough for the loop), or
 * undefined when it will refuse the file (the op says why): a header it does not decode, no samples, or more than
 * `maxSeconds`.
 */
export function audioFramesLength(bytes: Uint8Array, l: AudioLayout, maxSeconds: number): number | undefined {
  let header: ReturnType<typeof readWavHeader>;
  try {
    header = readWavHeader(bytes);
  } catch {
    return undefined;
  }
  const { frames, sampleRate } = header;
  if (frames === 0 || frames / sampleRate > maxSeconds) return undefined;
  return paddedLength(resampledLength(frames, sampleRate, l.rate), l);
}

/**
 * A WAV file to mono samples at `rate`, laid out as a voice-activity model reads them (see {@link AudioLayout}):
 * written into `out` (a row slot: shared memory, no copy back) when it is long enough.
 */
export const audioFrames = defineOp(
  'audioFrames',
  async (
    a: AudioLayout & { bytes: Uint8Array; maxSeconds: number; out?: Float32Array },
    signal?: AbortSignal,
  ): Promise<{ padded: Float32Array; frames: number; samples: number; durationMs: number }> => {
    const audio = await decodeWavSliced(a.bytes, a.maxSeconds, signal);
    const samples = await resampleSliced(audio.samples, audio.sampleRate, a.rate, signal);
    const length = paddedLength(samples.length, a);
    let padded: Float32Array;
    if (a.out !== undefined && a.out.length >= length) {
      // a slot holds what its last row left: the zeros are written
      padded = a.out.subarray(0, length);
      padded.fill(0, 0, a.context);
      padded.fill(0, a.context + samples.length);
    } else padded = new Float32Array(length); // zeros: the first context, the last frame's tail
    padded.set(samples, a.context);
    return { padded, frames: (length - a.context) / a.window, samples: samples.length, durationMs: audio.durationMs };
  },
);

/** The ops every worker runs whatever the tasks. */
export const commonOps: readonly Op<any, any>[] = [ping, imageTensor, audioFrames, inferBody, inferAnswer];
