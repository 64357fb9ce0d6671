import { Type, type Static } from 'typebox';
import { commonFields, ImageInput } from '../common/manifest.js';

/**
 * SSD anchors as MediaPipe's SsdAnchorsCalculator makes them; the defaults are BlazeFace front (128x128): 896
 * anchors, 2 per cell at stride 8 and 6 per cell at stride 16.
 */
const Anchors = Type.Object(
  {
    strides: Type.Array(Type.Integer({ minimum: 1 }), { minItems: 1, default: [8, 16, 16, 16] }),
    minScale: Type.Number({ exclusiveMinimum: 0, default: 0.1484375 }),
    maxScale: Type.Number({ exclusiveMinimum: 0, default: 0.75 }),
    offset: Type.Number({ minimum: 0, maximum: 1, default: 0.5 }),
    aspectRatios: Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 1, default: [1] }),
    interpolatedScaleAspectRatio: Type.Number({ default: 1, description: 'Adds one anchor per layer; 0 = none.' }),
    fixedAnchorSize: Type.Boolean({ default: true, description: 'Anchors of size 1 (regressors are absolute).' }),
  },
  { additionalProperties: false, default: {} },
);

/** How raw SSD outputs become faces: decoding, thresholds, weighted NMS. */
const DetectionSection = Type.Object(
  {
    scoreThreshold: Type.Number({ minimum: 0, maximum: 1, default: 0.75 }),
    iouThreshold: Type.Number({ minimum: 0, maximum: 1, default: 0.3, description: 'Overlap that merges boxes.' }),
    maxFaces: Type.Integer({ minimum: 1, maximum: 1000, default: 20 }),
    scoreClip: Type.Number({ exclusiveMinimum: 0, default: 100, description: 'Logits are clipped to ±this.' }),
    keypoints: Type.Integer({ minimum: 0, maximum: 64, default: 6 }),
    scores: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        description: 'Graph outputs of score logits [1, n, 1], concatenated in anchor order.',
      }),
    ),
    boxes: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        description: 'Graph outputs of regressors [1, n, 4 + 2 * keypoints], in the same order as `scores`.',
      }),
    ),
    anchors: Anchors,
  },
  { additionalProperties: false, default: {} },
);

/** A manifest for `face-detection`: an image in (`input` as for classification), boxes and keypoints out. */
export const FaceDetectionManifestSchema = Type.Object(
  {
    ...commonFields,
    task: Type.Literal('face-detection'),
    input: ImageInput,
    labels: Type.Array(Type.String(), { minItems: 1, default: ['face'] }),
    detection: DetectionSection,
  },
  { additionalProperties: false },
);

export type FaceDetectionManifest = Static<typeof FaceDetectionManifestSchema>;
