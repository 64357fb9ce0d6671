import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { resolveFile } from './folder.js';
import type { LoadedModel } from './loaded-model.js';
import { mediaInput, mediaKind } from './media.js';

// The rollout check: before a new version of a model replaces the serving one, it must answer the manifest's
// rollout samples as the serving model does.

/**
 * The checks a new model passes before it replaces a serving one: the same task (clients read its answers), and,
 * when its manifest lists rollout samples, answers that agree with the serving model's on at least `minAgreement` of
 * them. Answers agree when they are equal once scores are ignored, numbers (boxes, milliseconds) rounded to integers,
 * and only the first prediction kept: the same top-1 label, text, boxes, faces or segments.
 */
export async function checkSwap(serving: LoadedModel, fresh: LoadedModel): Promise<void> {
  if (fresh.task !== serving.task) {
    throw new Error(`the new manifest's task is ${fresh.task}; the serving model's is ${serving.task}`);
  }
  const rollout = fresh.manifest.rollout;
  if (!rollout) return;
  const dir = resolveFile(
    fresh.dir,
    rollout.samples,
    undefined,
    '/rollout/samples',
    path.join(fresh.dir, 'manifest.json'),
  );
  const files = (await readdir(dir)).filter((f) => mediaKind(f) !== undefined).sort();
  if (files.length === 0) throw new Error(`/rollout/samples: no media files in ${dir}`);
  let agree = 0;
  const wrong = files.filter((f) => !(fresh.pipeline.accepts as readonly string[]).includes(mediaKind(f)!));
  if (wrong.length) throw new Error(`/rollout/samples: ${wrong.join(', ')} cannot be sent to a ${fresh.task} model`);
  for (const file of files) {
    const input = mediaInput(mediaKind(file)!, await readFile(path.join(dir, file)), file);
    // a check, not traffic: not refused at the doors of a busy serving model
    const opts = { deadline: performance.now() + 60_000, timeoutMs: 60_000, admitted: true };
    const [a, b] = await Promise.all([serving.infer(input, opts), fresh.infer(input, opts)]);
    if (JSON.stringify(comparable(a)) === JSON.stringify(comparable(b))) agree++;
  }
  const rate = agree / files.length;
  if (rate < rollout.minAgreement) {
    throw new Error(
      `the new model agrees with the serving one on ${agree} of ${files.length} rollout samples (${rate.toFixed(3)} < /rollout/minAgreement ${rollout.minAgreement})`,
    );
  }
}

/** An answer reduced to what {@link checkSwap} compares. */
function comparable(v: unknown, key = ''): unknown {
  if (Array.isArray(v)) return (key === 'predictions' ? v.slice(0, 1) : v).map((x) => comparable(x));
  if (typeof v === 'number') return Math.round(v);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.entries(v)
        .filter(([k]) => k !== 'score')
        .map(([k, x]) => [k, comparable(x, k)]),
    );
  return v;
}
