import { Type, type TSchema } from 'typebox';
import { commonOps, type Op } from '../../workers/ops.js';
import { faceDetectionTask } from './face-detection/index.js';
import { imageClassificationTask } from './image-classification/index.js';
import { languageIdTask } from './language-id/index.js';
import { ocrTask } from './ocr/index.js';
import type { TaskDefinition } from './task.js';
import { textRecognitionTask } from './text-recognition/index.js';
import { voiceActivityTask } from './voice-activity/index.js';

// Every task the server knows, one line each. A new task is a folder beside these (its manifest schema, pipeline and
// definition) and one line here; the manifest schema, the predict route's answer schema, the compressor's gate,
// the memory budget's estimate and the task workers' ops are all built from this list.

export const taskDefinitions = [
  imageClassificationTask,
  languageIdTask,
  faceDetectionTask,
  voiceActivityTask,
  textRecognitionTask,
  ocrTask,
] as const;

/** The definitions with their manifest types erased, for code that looks a task up by name. */
const byName = new Map<string, TaskDefinition<any>>(taskDefinitions.map((t) => [t.name, t]));
if (byName.size !== taskDefinitions.length) throw new Error('two tasks share a name; this is a bug');

/** The task a manifest names, or undefined for an unknown name. */
export function taskDefinition(name: string): TaskDefinition<any> | undefined {
  return byName.get(name);
}

/** Every task's own ops, for the task workers. */
export const taskOps: readonly Op<unknown, unknown>[] = taskDefinitions.flatMap((t) => t.ops ?? []);
const opNames = new Set([...commonOps, ...taskOps].map((o) => o.name));
if (opNames.size !== commonOps.length + taskOps.length) throw new Error('two ops share a name; this is a bug');

/**
 * The fields tasks add to a `/predict` answer, each optional (a task answers only its own). A name two tasks use
 * must have one schema (the same object): otherwise this throws as the server starts.
 */
export function answerFields(tasks: readonly TaskDefinition<any>[] = taskDefinitions): Record<string, TSchema> {
  const fields: Record<string, TSchema> = {};
  const owner: Record<string, string> = {};
  for (const t of tasks) {
    for (const [name, schema] of Object.entries(t.answer)) {
      const seen = fields[name];
      if (seen && seen !== schema)
        throw new Error(`tasks '${owner[name]}' and '${t.name}' answer '${name}' with different schemas`);
      fields[name] = schema;
      owner[name] ??= t.name;
    }
  }
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, Type.Optional(v)]));
}
