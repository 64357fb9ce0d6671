import sharp from 'sharp';
import type { Manifest } from '../models/manifest.js';
import { MAX_PAGE_SIDE } from '../models/tasks/ocr.js';
import type { WireInput } from '../models/tasks/task.js';
import { readWavHeader, resampledLength } from '../preprocess/audio.js';

// What one predict input will hold in memory once decoded, estimated from its header before anything is decoded,
// so it can be admitted against the memory budget (the body itself is already counted).

/** Decoded pixels are at most 4 bytes each (RGBA before the alpha is dropped) while libvips works on them. */
const BYTES_PER_PIXEL = 4;
/** A JS string holds 2 bytes per UTF-16 unit; its tensors and answer are small next to it. */
const BYTES_PER_CHAR = 8;

/**
 * Bytes a predict input costs to decode and run: pixels from the image header, samples from the WAV header (at the
 * file's rate and at the model's), a small multiple of a text. A header that cannot be read costs nothing here: the
 * decoder refuses it at once with its own 4xx.
 */
export async function inputCost(input: WireInput, manifest: Manifest): Promise<number> {
  switch (input.kind) {
    case 'text':
      return input.text.length * BYTES_PER_CHAR;
    case 'image': {
      const meta = await sharp(input.bytes)
        .metadata()
        .catch(() => undefined);
      const [w, h] = [meta?.width ?? 0, meta?.height ?? 0];
      if (manifest.task !== 'ocr') return w * h * BYTES_PER_PIXEL;
      // a page is shrunk as it is decoded; then the detector's tensor and its probability map
      const s = Math.min(1, MAX_PAGE_SIDE / Math.max(w, h, 1));
      const side = manifest.input.limitSideLen;
      return Math.round(w * s) * Math.round(h * s) * BYTES_PER_PIXEL + side * side * 4 * 4;
    }
    case 'audio': {
      let frames = 0;
      let rate = 1;
      try {
        ({ frames, sampleRate: rate } = readWavHeader(input.bytes));
      } catch {
        return 0;
      }
      const modelRate = manifest.task === 'voice-activity' ? manifest.input.sampleRate : rate;
      // mono samples at the file's rate, and again at the model's (the frames are views of those)
      return (frames + resampledLength(frames, rate, modelRate)) * Float32Array.BYTES_PER_ELEMENT;
    }
  }
}
