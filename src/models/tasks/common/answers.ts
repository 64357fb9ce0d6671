import { Type } from 'typebox';

// Schemas of the answer fields more than one task returns: tasks that answer a field of the same name use the same
// schema object, so that the predict route's response schema (built from every task's fields) has one per name.

/** One class with its score (classification, language-id). */
export const Prediction = Type.Object({ label: Type.String(), index: Type.Integer(), score: Type.Number() });

/** A point in the original image's pixels. */
export const Point = Type.Array(Type.Number(), {
  minItems: 2,
  maxItems: 2,
  description: '[x, y] in original image pixels',
});

/** One line of text (text-recognition; ocr adds its box). */
export const TextLine = Type.Object({
  text: Type.String(),
  score: Type.Number({ description: "Mean probability of the line's characters (0 when it has none)" }),
  box: Type.Optional(
    Type.Array(Point, {
      minItems: 4,
      maxItems: 4,
      description: 'ocr: the line in page pixels, corners clockwise from top-left of the text',
    }),
  ),
});

/** `predictions`: classes, best first. */
export const Predictions = Type.Array(Prediction);

/** `lines`: text lines (ocr: in reading order, with boxes). */
export const TextLines = Type.Array(TextLine);
