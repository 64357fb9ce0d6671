import { Errors } from '../errors.js';
import type { Manifest } from '../models/manifest.js';
import { detectorSize, MAX_PAGE_SIDE } from '../workers/ops.js';
import type { WireInput } from '../models/tasks/task.js';
import { readWavHeader, resampledLength } from '../preprocess/audio.js';
import { imageHeaderSize } from '../preprocess/image-header.js';
import { isAcceptedImageFormat, sniffImageFormat } from '../preprocess/image.js';

// What one predict input will hold in memory once decoded, estimated from its header before anything is decoded,
// so it can be admitted against the memory budget (the body itself is already counted).

/** Decoded pixels are at most 4 bytes each (RGBA before the alpha is dropped) while libvips works on them. */
const BYTES_PER_PIXEL = 4;
/** A JS string holds 2 bytes per UTF-16 unit; its tensors and answer are small next to it. */
const BYTES_PER_CHAR = 8;

/**
 * Bytes a predict input costs to decode and run: pixels from the image header, samples from the WAV header (at the
 * file's rate and at the model's), a small multiple of a text. A WAV header that cannot be read costs nothing here
 * (the decoder refuses it at once with its own 4xx); a PNG, JPEG or WebP header that cannot be read costs the most an
 * image may. An image over `maxImagePixels` is refused here (422).
 */
export function inputCost(input: WireInput, manifest: Manifest, maxImagePixels: number): number {
  switch (input.kind) {
    case 'text':
      return input.text.length * BYTES_PER_CHAR;
    case 'image': {
      const stored = imageHeaderSize(input.bytes);
      // an image whose size cannot be read costs what the largest image may (other formats are refused at once);
      // the decoder refuses one whose frame is not the size read here, so the price holds
      if (!stored) return isAcceptedImageFormat(sniffImageFormat(input.bytes)) ? maxImagePixels * BYTES_PER_PIXEL : 0;
      const { width: w, height: h } = stored;
      // the decoder would refuse it after reading the same header: refused here, before it costs anything
      if (w * h > maxImagePixels)
        throw new Errors.IMAGE_DIMENSIONS(`${w}x${h} is over the limit of ${maxImagePixels} pixels`);
      if (manifest.task !== 'ocr') return w * h * BYTES_PER_PIXEL;
      // a page is shrunk as it is decoded; then the detector's tensor (3 floats a pixel) and its probability map
      const s = Math.min(1, MAX_PAGE_SIDE / Math.max(w, h, 1));
      const [pw, ph] = [Math.round(w * s), Math.round(h * s)];
      const { limitSideLen, limitType, sizeMultiple } = manifest.input;
      const [dw, dh] = detectorSize(pw, ph, limitSideLen, limitType, sizeMultiple);
      return pw * ph * BYTES_PER_PIXEL + dw * dh * 4 * Float32Array.BYTES_PER_ELEMENT;
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
      // mono samples at the file's rate, and twice at the model's (resampled, then padded with the model's context)
      return (frames + 2 * resampledLength(frames, rate, modelRate)) * Float32Array.BYTES_PER_ELEMENT;
    }
  }
}
