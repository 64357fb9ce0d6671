import { Errors } from '../errors.js';
import type { Manifest } from '../models/manifest.js';
import { taskDefinition } from '../models/tasks/registry.js';
import { DECODED_BYTES_PER_PIXEL as BYTES_PER_PIXEL } from '../models/tasks/common/image.js';
import type { WireInput } from '../models/tasks/task.js';
import { readWavHeader, resampledLength } from '../preprocess/audio.js';
import { imageHeaderSize } from '../preprocess/image-header.js';
import { isAcceptedImageFormat, sniffImageFormat } from '../preprocess/image.js';

// What one predict input will hold in memory once decoded, estimated from its header before anything is decoded,
// so it can be admitted against the memory budget (the body itself is already counted).

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
      // a task whose images cost more than their pixels (an OCR page: the detector's tensor too) says so
      return taskDefinition(manifest.task)?.cost?.image?.(w, h, manifest) ?? w * h * BYTES_PER_PIXEL;
    }
    case 'audio': {
      let frames = 0;
      let rate = 1;
      try {
        ({ frames, sampleRate: rate } = readWavHeader(input.bytes));
      } catch {
        return 0;
      }
      const modelRate = taskDefinition(manifest.task)?.cost?.sampleRate?.(manifest) ?? rate;
      // mono samples at the file's rate, and twice at the model's (resampled, then padded with the model's context)
      return (frames + 2 * resampledLength(frames, rate, modelRate)) * Float32Array.BYTES_PER_ELEMENT;
    }
  }
}
