import { Type } from 'typebox';
import { Point } from '../common/answers.js';
import { checkNormalization } from '../common/manifest.js';
import { defineTask } from '../task.js';
import { FaceDetectionManifestSchema } from './manifest.js';
import { faceDetection } from './pipeline.js';

const Face = Type.Object({
  box: Type.Array(Type.Number(), { minItems: 4, maxItems: 4, description: '[x1, y1, x2, y2] in original pixels' }),
  score: Type.Number(),
  keypoints: Type.Array(Point),
});

export const faceDetectionTask = defineTask({
  name: 'face-detection',
  summary: 'An image in, face boxes with keypoints out (an SSD detector such as BlazeFace).',
  manifest: FaceDetectionManifestSchema,
  check: (m, where) => checkNormalization(m.input, where),
  answer: { faces: Type.Array(Face) },
  create: faceDetection,
  gate: { metric: 'cosine-mean', measure: 'cosine' },
});
