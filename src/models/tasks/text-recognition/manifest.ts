import { Type, type Static } from 'typebox';
import { commonFields, PackageName, Sha256 } from '../common/manifest.js';

/**
 * A text line's image for a recognizer with a dynamic width axis (PaddleOCR's `RecResizeImg`): scaled to `height`
 * keeping the aspect ratio, image on the left, `padValue` on the right, NCHW. The padded width is a bucket: the
 * resized width rounded up to a multiple of `widthStep`, at least `minWidth`; rows of one bucket batch together.
 */
const TextLineInput = Type.Object(
  {
    name: Type.Optional(
      Type.String({ minLength: 1, description: "Graph input to feed; the model's only input when absent." }),
    ),
    height: Type.Integer({ minimum: 1, maximum: 1024, default: 48 }),
    minWidth: Type.Integer({
      minimum: 1,
      maximum: 8192,
      default: 320,
      description: 'Narrowest tensor width: shorter lines are padded to it (PaddleOCR rec_image_shape width).',
    }),
    maxWidth: Type.Integer({
      minimum: 1,
      maximum: 8192,
      default: 1600,
      description: 'Widest tensor width: lines whose resized width is larger are squeezed to it.',
    }),
    widthStep: Type.Integer({
      minimum: 1,
      maximum: 8192,
      default: 32,
      description: 'Width buckets: the resized width is rounded up to a multiple of this (and padded).',
    }),
    channels: Type.Enum(['RGB', 'BGR', 'GRAY'], { default: 'BGR' }),
    interpolation: Type.Enum(['nearest', 'linear', 'cubic', 'lanczos3'], { default: 'linear' }),
    scale: Type.Number({ default: 1 / 255, description: 'Multiplies 0..255 pixels before mean/std.' }),
    mean: Type.Array(Type.Number(), { minItems: 1, maxItems: 3, default: [0.5, 0.5, 0.5] }),
    std: Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 1, maxItems: 3, default: [0.5, 0.5, 0.5] }),
    padValue: Type.Number({ default: 0, description: 'Tensor value of padded areas, after normalization.' }),
  },
  { additionalProperties: false, default: {} },
);

/** How per-time-step class probabilities become text: CTC greedy decoding, PaddleOCR's `CTCLabelDecode`. */
const CtcSection = Type.Object(
  {
    useSpaceChar: Type.Boolean({
      default: true,
      description: "Class after the last dictionary line is a space ' ' (PaddleOCR use_space_char). Class 0 is blank.",
    }),
    spaceThreshold: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        maximum: 1,
        description:
          'A blank time step whose space probability is at least this is read as a space (between words only, never doubled). ' +
          'Recovers the spaces PP-OCR recognizers drop on English lines; without it, plain greedy decoding.',
      }),
    ),
  },
  { additionalProperties: false, default: {} },
);

/** A manifest for `text-recognition`: one cropped text line image in, its text out (a CTC recognizer). */
export const TextRecognitionManifestSchema = Type.Object(
  {
    ...commonFields,
    task: Type.Literal('text-recognition'),
    input: TextLineInput,
    labels: Type.Object(
      {
        file: Type.String({
          minLength: 1,
          description: 'The character dictionary, one character per line; relative to the model folder or package.',
        }),
        package: Type.Optional(PackageName()),
        sha256: Type.Optional(Sha256),
      },
      { additionalProperties: false },
    ),
    ctc: CtcSection,
  },
  { additionalProperties: false },
);

export type TextRecognitionManifest = Static<typeof TextRecognitionManifestSchema>;
