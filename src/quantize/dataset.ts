import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Manifest } from '../models/manifest.js';
import { readManifest, resolveFile } from '../models/folder.js';
import { createPipeline } from '../models/pipeline.js';
import { ModelSession, type HostTensor, type SessionRunner, type TensorInfo } from '../models/session.js';
import { mediaInput, mediaKind } from '../models/media.js';
import type { StageModels, SubmitRows, WireInput } from '../models/tasks/task.js';

/** One calibration or evaluation sample: the feeds of one `session.run`. */
export interface Sample {
  /** File it came from, for reports. */
  readonly name: string;
  readonly feeds: Record<string, HostTensor>;
}

/**
 * Turns one media file into the feeds of every `session.run` the server would make for it (one for an image or a
 * text, one per frame for a recording).
 */
export type MediaFeeds = (input: WireInput, file: string) => Promise<Record<string, HostTensor>[]>;

/** What the loader needs to know about the model. */
export interface DatasetContext {
  /** The graph inputs (names, types, shapes). */
  readonly inputs: readonly TensorInfo[];
  /** Take at most this many files (in name order). */
  readonly maxSamples?: number;
  /** How media files become feeds; only model folders (with a manifest) have one, see {@link pipelineFeeds}. */
  readonly media?: MediaFeeds;
}

/** Thrown for a sample the loader cannot turn into feeds; the message names the file. */
export class DatasetError extends Error {
  override name = 'DatasetError';
}

/**
 * Loads a folder of samples in name order: media files (images, `.wav` recordings, `.txt` texts, one request each)
 * through the model's own task pipeline, exactly as the server preprocesses them, so the capture folder of a running
 * server can be used as is; `.npy` arrays (NumPy format v1-v3, little-endian float32/float64/int64/int32/uint8/bool)
 * for single-input models; and `.json` files `{"<input>": {"dims": [...], "data": [...], "type": "float32"}}` for any
 * model. `manifest.json` is skipped. A recording gives one sample per frame the model runs.
 */
export async function loadSamples(dir: string, ctx: DatasetContext): Promise<Sample[]> {
  const files = (await readdir(dir, { withFileTypes: true }))
    // a model or fixture folder's manifest.json describes the folder; it is not a sample
    .filter((e) => e.isFile() && !e.name.startsWith('.') && e.name !== 'manifest.json')
    .map((e) => e.name)
    .sort()
    .slice(0, ctx.maxSamples ?? Infinity);
  const samples: Sample[] = [];
  for (const name of files) {
    const file = path.join(dir, name);
    const ext = path.extname(name).toLowerCase();
    const bytes = await readFile(file);
    const kind = mediaKind(name);
    if (kind) {
      const runs = await mediaFeeds(kind, bytes, file, ctx);
      runs.forEach((feeds, i) => samples.push({ name: runs.length === 1 ? name : `${name}#${i}`, feeds }));
    } else if (ext === '.npy')
      samples.push({ name, feeds: { [single(ctx, file)]: withBatch(parseNpy(bytes, file), ctx, file) } });
    else if (ext === '.json') samples.push({ name, feeds: jsonFeeds(bytes, file, ctx) });
  }
  if (samples.length === 0)
    throw new DatasetError(`${dir}: no samples (.jpg, .png, .webp, .wav, .txt, .npy or .json files)`);
  return samples;
}

function mediaFeeds(
  kind: WireInput['kind'],
  bytes: Buffer,
  file: string,
  ctx: DatasetContext,
): Promise<Record<string, HostTensor>[]> {
  if (!ctx.media)
    throw new DatasetError(`${file}: media files need the model's folder (its manifest says how to preprocess them)`);
  let input: WireInput;
  try {
    input = mediaInput(kind, bytes, file);
  } catch (err) {
    throw new DatasetError((err as Error).message);
  }
  return ctx.media(input, file);
}

/**
 * The media loader of a model folder: its own task pipeline around `session`, which records the feeds of every run.
 * Sequence tasks (a stateful model run frame by frame) go through all their steps, each frame's state coming from
 * the model itself, so every frame the server would run is a sample.
 */
export async function pipelineFeeds(
  manifest: Manifest,
  session: SessionRunner,
  dir: string,
  where: string,
): Promise<MediaFeeds> {
  let recorded: Record<string, HostTensor>[] = [];
  const recorder: SessionRunner = {
    get inputs() {
      return session.inputs;
    },
    get outputs() {
      return session.outputs;
    },
    run(feeds, names, reduce) {
      // pipelines reuse their batch buffers, so keep a copy
      const copy = Object.entries(feeds).map(([k, t]) => [k, { ...t, dims: [...t.dims], data: t.data.slice() }]);
      recorded.push(Object.fromEntries(copy));
      return session.run(feeds, names, reduce);
    },
  };
  // a multi-model pipeline (ocr) stops at its first stage call: the samples are what this model itself runs
  const stop = new Error('stage reached');
  const stages: StageModels = {
    names: () => undefined,
    model: () => ({ task: 'stage', infer: () => Promise.reject(stop) }),
  };
  const { pipeline } = await createPipeline(manifest, recorder, dir, where, {
    maxImagePixels: Number.MAX_SAFE_INTEGER,
    stages,
  });
  const submit: SubmitRows<unknown, unknown> = (rows) => {
    const batch = rows.map((r) => r.row);
    const outs = pipeline.runBatch(batch);
    return rows.map((_, i) => outs.then((o) => o[i]));
  };
  return async (input, file) => {
    if (!pipeline.accepts.includes(input.kind)) {
      throw new DatasetError(
        `${file}: task '${manifest.task}' takes ${pipeline.accepts.join(' or ')}, not ${input.kind}`,
      );
    }
    recorded = [];
    let prepared;
    try {
      prepared = await pipeline.prepare(input);
    } catch (err) {
      throw new DatasetError(`${file}: ${(err as Error).message}`);
    }
    try {
      if (pipeline.sequence) {
        await pipeline.sequence(prepared.row, { deadline: Infinity }, submit).catch((err: unknown) => {
          if (err !== stop) throw err;
        });
      } else {
        await pipeline.runBatch([prepared.row]);
      }
    } finally {
      prepared.release?.(); // the recorder kept copies of what ran
    }
    return recorded;
  };
}

/** A model folder opened for loading media samples (scripts and tests); `release` frees its session. */
export async function folderMedia(
  dir: string,
): Promise<{ manifest: Manifest; media: MediaFeeds; inputs: TensorInfo[]; release(): Promise<void> }> {
  const { manifest, where } = await readManifest(dir);
  const file = resolveFile(dir, manifest.model.path, manifest.model.package, '/model', where);
  const session = await ModelSession.create(file, { provider: 'cpu', intraOpThreads: 1 });
  try {
    const media = await pipelineFeeds(manifest, session, dir, where);
    return { manifest, media, inputs: session.inputs, release: () => session.release() };
  } catch (err) {
    await session.release();
    throw err;
  }
}

function single(ctx: DatasetContext, file: string): string {
  if (ctx.inputs.length !== 1) {
    throw new DatasetError(`${file}: the model has ${ctx.inputs.length} inputs; use .json samples that name them`);
  }
  return ctx.inputs[0].name;
}

/** Adds a batch axis of 1 when the array has one axis fewer than the graph input. */
function withBatch(t: HostTensor, ctx: DatasetContext, file: string): HostTensor {
  const rank = ctx.inputs.find((i) => i.name === single(ctx, file))?.shape.length;
  return rank !== undefined && t.dims.length === rank - 1 ? { ...t, dims: [1, ...t.dims] } : t;
}

const npyTypes: Record<string, { type: HostTensor['type']; make: (b: ArrayBuffer, n: number) => HostTensor['data'] }> =
  {
    '<f4': { type: 'float32', make: (b, n) => new Float32Array(b, 0, n) },
    '<f8': { type: 'float32', make: (b, n) => Float32Array.from(new Float64Array(b, 0, n)) },
    '<i8': { type: 'int64', make: (b, n) => new BigInt64Array(b, 0, n) },
    '<i4': { type: 'int32', make: (b, n) => new Int32Array(b, 0, n) },
    '|u1': { type: 'uint8', make: (b, n) => new Uint8Array(b, 0, n) },
    '|b1': { type: 'bool', make: (b, n) => new Uint8Array(b, 0, n) },
  };

/** Parses a NumPy `.npy` file (C order only). */
export function parseNpy(bytes: Uint8Array, file = 'array.npy'): HostTensor {
  const magic = String.fromCharCode(...bytes.subarray(1, 6));
  if (bytes[0] !== 0x93 || magic !== 'NUMPY') throw new DatasetError(`${file}: not a .npy file`);
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  const kind = descr ? npyTypes[descr] : undefined;
  if (!kind)
    throw new DatasetError(`${file}: dtype ${descr} is not supported (use ${Object.keys(npyTypes).join(', ')})`);
  if (fortran) throw new DatasetError(`${file}: Fortran-ordered arrays are not supported`);
  const n = shape.reduce((a, b) => a * b, 1);
  const body = new Uint8Array(bytes.subarray(start + headerLen)); // a copy (Buffer.slice would be a view), aligned
  return { type: kind.type, data: kind.make(body.buffer, n), dims: shape };
}

function jsonFeeds(bytes: Buffer, file: string, ctx: DatasetContext): Record<string, HostTensor> {
  let json: Record<string, { dims?: number[]; data?: unknown[]; type?: string }>;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new DatasetError(`${file}: ${(err as Error).message}`);
  }
  const feeds: Record<string, HostTensor> = {};
  for (const info of ctx.inputs) {
    const entry = json[info.name];
    if (!entry?.dims || !Array.isArray(entry.data))
      throw new DatasetError(`${file}: missing input '${info.name}' {dims, data}`);
    const type = (entry.type ?? (info.type === 'int64' ? 'int64' : 'float32')) as HostTensor['type'];
    const data =
      type === 'int64'
        ? BigInt64Array.from(entry.data as number[], (v) => BigInt(v))
        : type === 'int32'
          ? Int32Array.from(entry.data as number[])
          : Float32Array.from(entry.data as number[]);
    feeds[info.name] = { type, data, dims: entry.dims };
  }
  return feeds;
}
