import { TextLines } from '../common/answers.js';
import { checkNormalization, ManifestError } from '../common/manifest.js';
import { defineTask } from '../task.js';
import { TextRecognitionManifestSchema } from './manifest.js';
import { textRecognition } from './pipeline.js';

export const textRecognitionTask = defineTask({
  name: 'text-recognition',
  summary: 'A cropped text line image in, its text out (a CTC recognizer such as PP-OCR).',
  manifest: TextRecognitionManifestSchema,
  check(m, where) {
    checkNormalization(m.input, where);
    if (m.input.maxWidth < m.input.minWidth)
      throw new ManifestError(`${where}: invalid manifest: /input/maxWidth must not be below /input/minWidth`);
  },
  answer: { lines: TextLines },
  create: textRecognition,
  // per time step: the greedy CTC decode is that argmax
  gate: { metric: 'ctc-argmax-agreement', measure: 'top1' },
});
