import { Type, type Static } from 'typebox';
import type { Manifest } from '../../manifest.js';
import { commonFields, ImageInput, ManifestError } from '../common/manifest.js';

/** A manifest for `image-classification`: `input` says how an image becomes a tensor. */
export const ImageManifestSchema = Type.Object(
  { ...commonFields, task: Type.Literal('image-classification'), input: ImageInput },
  { additionalProperties: false },
);

export type ImageManifest = Static<typeof ImageManifestSchema>;

/**
 * Narrows a manifest to an image task's, for code that preprocesses images (the compression CLI's calibration
 * images, the bench).
 * @throws ManifestError naming the task when it takes something else
 */
export function asImageManifest(m: Manifest, where: string): ImageManifest {
  if (m.task !== 'image-classification') {
    throw new ManifestError(`${where}: task '${m.task}' does not take images (needs image-classification)`);
  }
  return m;
}
