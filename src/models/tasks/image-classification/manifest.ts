import { Type, type Static } from 'typebox';
import { commonFields, ImageInput } from '../common/manifest.js';

/** A manifest for `image-classification`: `input` says how an image becomes a tensor. */
export const ImageManifestSchema = Type.Object(
  { ...commonFields, task: Type.Literal('image-classification'), input: ImageInput },
  { additionalProperties: false },
);

export type ImageManifest = Static<typeof ImageManifestSchema>;
