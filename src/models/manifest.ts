import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';
import type { FaceDetectionManifest } from './tasks/face-detection/manifest.js';
import type { ImageManifest } from './tasks/image-classification/manifest.js';
import type { TextManifest } from './tasks/language-id/manifest.js';
import type { OcrManifest } from './tasks/ocr/manifest.js';
import type { TextRecognitionManifest } from './tasks/text-recognition/manifest.js';
import type { VoiceActivityManifest } from './tasks/voice-activity/manifest.js';
import { taskDefinition, taskDefinitions } from './tasks/registry.js';
import { ManifestError } from './tasks/common/manifest.js';

// The manifest as a whole: the union of the registered tasks' schemas (tasks/registry.ts), validation with defaults
// filled in, and the JSON Schema file generated from it. The fields and sections themselves live with the tasks
// (tasks/common/manifest.ts for the shared ones).

export { ManifestError, modelNamePattern, npmPackagePattern } from './tasks/common/manifest.js';
export type {
  FaceDetectionManifest,
  ImageManifest,
  OcrManifest,
  TextManifest,
  TextRecognitionManifest,
  VoiceActivityManifest,
};

/** Tasks a manifest may declare: the registry's. */
export const taskNames: readonly string[] = taskDefinitions.map((t) => t.name);

/**
 * JSON schema of `manifest.json`, a union discriminated by `task`; `models/manifest.schema.json` is generated
 * from it.
 */
export const ManifestSchema = Type.Union(taskDefinitions.map((t) => t.manifest));

/** A validated manifest with every default filled in: one of the registered tasks'. */
export type Manifest = Static<(typeof taskDefinitions)[number]['manifest']>;

/** A manifest's batching settings on `provider`: on CUDA its `cuda` settings replace the CPU ones. */
export function batchingOn(batching: Manifest['batching'], provider: 'cuda' | 'cpu'): Manifest['batching'] {
  return provider === 'cuda' && batching.cuda ? { ...batching, ...batching.cuda } : batching;
}

/**
 * Validates a parsed `manifest.json` and fills in defaults.
 * @param json the parsed file
 * @param where shown in error messages (the file path)
 */
export function parseManifest(json: unknown, where: string): Manifest {
  // dispatch on the discriminator first, so errors are about the right task's fields, not a union's mismatch
  const task = (json as { task?: unknown } | null)?.task;
  const definition = typeof task === 'string' ? taskDefinition(task) : undefined;
  if (!definition) {
    throw new ManifestError(`${where}: invalid manifest: /task must be one of: ${taskNames.join(', ')}`);
  }
  const schema = definition.manifest;
  const value = Value.Default(schema, Value.Clone(json));
  const errors = [...Value.Errors(schema, value)]
    // `additionalProperties: false` reports each extra key twice; keep the readable one
    .filter((e) => e.keyword !== 'boolean' && e.keyword !== 'anyOf')
    .map(
      (e) =>
        `${e.instancePath || '/'} ${e.message}${e.keyword === 'additionalProperties' ? `: ${JSON.stringify(e.params)}` : ''}`,
    );
  if (errors.length > 0 || !Value.Check(schema, value)) {
    throw new ManifestError(
      `${where}: invalid manifest: ${errors.length ? errors.join('; ') : 'does not match the schema'}`,
    );
  }
  const m = value as Manifest;
  definition.check?.(m, where);
  if (m.batching.preferredBatchSizes.some((p) => p > m.batching.maxBatchSize)) {
    throw new ManifestError(`${where}: invalid manifest: /batching/preferredBatchSizes must not exceed maxBatchSize`);
  }
  return m;
}

/**
 * The manifest schema as a standalone JSON Schema document (what `models/manifest.schema.json` holds). Fields with
 * a default are not required in the file, so they are dropped from `required` here.
 */
export function manifestJsonSchema(): string {
  const relax = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(relax);
    if (node === null || typeof node !== 'object') return node;
    const o = Object.fromEntries(Object.entries(node).map(([k, v]) => [k, relax(v)])) as Record<string, any>;
    if (Array.isArray(o.required) && o.properties) {
      o.required = o.required.filter((k: string) => !('default' in (o.properties[k] ?? {})));
      if (o.required.length === 0) delete o.required;
    }
    return o;
  };
  const schema = {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://muon.dev/schemas/manifest.schema.json',
    title: 'Muon Serve model manifest',
    ...(relax(JSON.parse(JSON.stringify(ManifestSchema))) as object),
  };
  return JSON.stringify(schema, null, 2) + '\n';
}
