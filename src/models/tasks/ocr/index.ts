import { TextLines } from '../common/answers.js';
import { DECODED_BYTES_PER_PIXEL } from '../common/image.js';
import { defineTask } from '../task.js';
import { OcrManifestSchema } from './manifest.js';
import { detectorSize, MAX_PAGE_SIDE, ocrLines, ocrPage } from './ops.js';
import { ocr } from './pipeline.js';

export const ocrTask = defineTask({
  name: 'ocr',
  summary: 'A page in, its text lines with their boxes out, in reading order (DB detector, then recognizer stages).',
  manifest: OcrManifestSchema,
  answer: { lines: TextLines },
  create: ocr,
  // text or not, per pixel of the map DB post-processing binarizes
  gate: { metric: 'text-mask-agreement', measure: 'decision', threshold: (m) => m.detection.thresh },
  cost: {
    // a page is shrunk as it is decoded; then the detector's tensor (3 floats a pixel) and its probability map
    image(w, h, m) {
      const s = Math.min(1, MAX_PAGE_SIDE / Math.max(w, h, 1));
      const [pw, ph] = [Math.round(w * s), Math.round(h * s)];
      const { limitSideLen, limitType, sizeMultiple } = m.input;
      const [dw, dh] = detectorSize(pw, ph, limitSideLen, limitType, sizeMultiple);
      return pw * ph * DECODED_BYTES_PER_PIXEL + dw * dh * 4 * Float32Array.BYTES_PER_ELEMENT;
    },
  },
  ops: [ocrPage, ocrLines],
});
