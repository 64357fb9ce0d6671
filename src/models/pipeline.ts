import { readFile } from 'node:fs/promises';
import { batchingOn, type Manifest } from './manifest.js';
import type { SessionRunner } from './session.js';
import { Errors } from '../errors.js';
import { inlineTaskWorkers, type TaskWorkers } from '../workers/task-workers.js';
import { resolveFile } from './folder.js';
import { taskDefinition } from './tasks/registry.js';
import type { StageModels, TaskPipeline } from './tasks/task.js';

// The pipeline factory: a manifest and a session in, its task's pipeline out (the task's definition builds it). What the server serves, and what the
// compressor runs calibration media through, so both see exactly the same preprocessing.

/** Outside a repository (the compression CLI) there are no other models to call. */
export const noStages: StageModels = {
  names: () => undefined,
  model: (name) => {
    throw new Errors.MODEL_NOT_FOUND(name);
  },
};

/**
 * Builds a model folder's task pipeline around a session: reads its labels and hands the task its manifest. Also
 * what the compression CLI runs calibration media through, so a calibration sample is exactly what the server feeds.
 */
export async function createPipeline(
  manifest: Manifest,
  session: SessionRunner,
  dir: string,
  where: string,
  opts: {
    readonly maxImagePixels: number;
    /** Where the task's CPU work runs; by default on the calling thread (tools). */
    readonly workers?: TaskWorkers;
    readonly stages?: StageModels;
    /** The file's graph, where `session` runs one the task built around it. */
    readonly fileGraph?: Pick<SessionRunner, 'inputs' | 'outputs'>;
    /** Where `session` runs: the task sizes its buffers for that provider's batching settings (default cpu). */
    readonly provider?: 'cuda' | 'cpu';
  },
): Promise<{ pipeline: TaskPipeline; labels: readonly string[] }> {
  const read = (ref: { readonly file: string; readonly package?: string }, field: string) =>
    readFile(resolveFile(dir, ref.file, ref.package, field, where), 'utf8');
  const labels = Array.isArray(manifest.labels)
    ? manifest.labels
    : parseLabels(await read(manifest.labels, '/labels/file'));
  // a parsed manifest names a registered task, and the definition's schema is what it was parsed with
  const definition = taskDefinition(manifest.task);
  if (!definition) throw new Error(`no task '${manifest.task}' is registered; this is a bug`);
  const pipeline: TaskPipeline = await definition.create({
    manifest: { ...manifest, batching: batchingOn(manifest.batching, opts.provider ?? 'cpu') },
    session,
    labels,
    maxImagePixels: opts.maxImagePixels,
    workers: opts.workers ?? inlineTaskWorkers,
    where,
    readFile: read,
    stages: opts.stages ?? noStages,
    fileGraph: opts.fileGraph ?? session,
  });
  return { pipeline, labels };
}

/** Label files: one label per line; a final newline does not make an extra label. */
function parseLabels(text: string): string[] {
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  if (lines.at(-1) === '') lines.pop();
  return lines;
}
