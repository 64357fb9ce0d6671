import { Predictions } from '../common/answers.js';
import { defineTask } from '../task.js';
import { TextManifestSchema } from './manifest.js';
import { languageId } from './pipeline.js';

export const languageIdTask = defineTask({
  name: 'language-id',
  summary: 'Text in, the top-k languages with their scores out (character n-gram features).',
  manifest: TextManifestSchema,
  answer: { predictions: Predictions },
  create: languageId,
  gate: { metric: 'top1-agreement', measure: 'top1' },
});
