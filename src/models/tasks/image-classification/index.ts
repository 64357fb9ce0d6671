import { Predictions } from '../common/answers.js';
import { checkNormalization } from '../common/manifest.js';
import { defineTask } from '../task.js';
import { ImageManifestSchema } from './manifest.js';
import { imageClassification } from './pipeline.js';

export const imageClassificationTask = defineTask({
  name: 'image-classification',
  summary: 'An image in, the top-k labels with their scores out.',
  manifest: ImageManifestSchema,
  check: (m, where) => checkNormalization(m.input, where),
  answer: { predictions: Predictions },
  create: imageClassification,
  gate: { metric: 'top1-agreement', measure: 'top1' },
});
