import { Type, type Static } from 'typebox';
import { commonFields, modelNamePattern } from '../common/manifest.js';

/**
 * A page for a DB text detector (PaddleOCR's `DetResizeForTest` + `NormalizeImage`): scaled so the longer side
 * (`limitType: max`) is at most `limitSideLen`, or the shorter side (`min`) at least that, each side then rounded to
 * a multiple of `sizeMultiple`; values `(pixel * scale - mean) / std` in `channels` order (PaddleOCR reads BGR and
 * applies the ImageNet mean/std in that order).
 */
const PageInput = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1 })),
    limitSideLen: Type.Integer({ minimum: 32, maximum: 8192, default: 960 }),
    limitType: Type.Enum(['max', 'min'], { default: 'max' }),
    sizeMultiple: Type.Integer({ minimum: 1, maximum: 256, default: 32 }),
    channels: Type.Enum(['RGB', 'BGR'], { default: 'BGR' }),
    interpolation: Type.Enum(['nearest', 'linear', 'cubic', 'lanczos3'], { default: 'linear' }),
    scale: Type.Number({ default: 1 / 255 }),
    mean: Type.Array(Type.Number(), { minItems: 3, maxItems: 3, default: [0.485, 0.456, 0.406] }),
    std: Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 3, maxItems: 3, default: [0.229, 0.224, 0.225] }),
  },
  { additionalProperties: false, default: {} },
);

/** DB post-processing (PaddleOCR's `DBPostProcess` defaults). */
const DbSection = Type.Object(
  {
    thresh: Type.Number({ minimum: 0, maximum: 1, default: 0.3, description: 'A pixel is text above this.' }),
    boxThresh: Type.Number({ minimum: 0, maximum: 1, default: 0.6, description: 'Minimum mean probability in a box.' }),
    maxCandidates: Type.Integer({ minimum: 1, default: 1000 }),
    unclipRatio: Type.Number({ exclusiveMinimum: 0, default: 1.5, description: 'How far boxes are grown back.' }),
    minSize: Type.Number({ minimum: 0, default: 3 }),
    useDilation: Type.Boolean({ default: false }),
    minBoxSide: Type.Number({ minimum: 0, default: 3, description: 'Boxes with a side <= this (pixels) are dropped.' }),
  },
  { additionalProperties: false, default: {} },
);

/** The models an OCR pipeline calls after detection, by their names in the repository. */
const OcrStages = Type.Object(
  {
    recognizer: Type.String({ pattern: modelNamePattern, description: 'A text-recognition model.' }),
    orientation: Type.Optional(
      Type.String({
        pattern: modelNamePattern,
        description: 'An image-classification model that tells upright lines from upside-down ones (optional).',
      }),
    ),
    rotatedLabel: Type.String({ default: '180', description: "The orientation model's label for upside down." }),
    orientationThreshold: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.9,
      description: 'A line is turned when the upside-down score is above this (PaddleOCR cls_thresh).',
    }),
    orientationPolicy: Type.Union([Type.Literal('line'), Type.Literal('page')], {
      default: 'page',
      description:
        "'line' turns each line the orientation model finds upside down (PaddleOCR); 'page' turns every line when " +
        'more than half of them are found upside down, and none otherwise (a page is upright or not: a lone ' +
        "misjudged line is not turned), reading an upside-down page's lines in its own order.",
    }),
    dropScore: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.5,
      description: 'Lines recognized with a lower score are dropped (PaddleOCR drop_score).',
    }),
    readingOrder: Type.Union([Type.Literal('columns'), Type.Literal('rows')], {
      default: 'columns',
      description:
        "Order of the lines returned: 'columns' reads each column of text to its end before the next (XY-cut); " +
        "'rows' reads top to bottom, left to right across the page (PaddleOCR's sorted_boxes), as forms often want.",
    }),
  },
  { additionalProperties: false },
);

/**
 * A manifest for `ocr`: a page in, its text lines out. `model` is the detector; the recognizer (and the optional
 * orientation classifier) are other models of the repository, each batching on its own queue.
 */
export const OcrManifestSchema = Type.Object(
  {
    ...commonFields,
    task: Type.Literal('ocr'),
    input: PageInput,
    labels: Type.Array(Type.String(), { default: ['text'] }),
    detection: DbSection,
    stages: OcrStages,
  },
  { additionalProperties: false },
);

export type OcrManifest = Static<typeof OcrManifestSchema>;
