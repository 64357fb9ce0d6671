import path from 'node:path';
import ort from 'onnxruntime-node';
import { packageRoot } from '../../src/config.js';
import { readManifest, resolveFile } from '../../src/models/folder.js';
import { asImageManifest, type ImageManifest } from '../../src/models/tasks/image-classification/manifest.js';
import { dims, type ImageSpec } from '../../src/preprocess/image.js';

/** The benchmarked model as the server would load it: manifest, ONNX file and tensor names. */
export interface BenchModel {
  readonly name: string;
  readonly manifest: ImageManifest;
  /** The manifest's input block, which is the preprocessing spec. */
  readonly spec: ImageSpec;
  /** Absolute path of the ONNX file. */
  readonly file: string;
  readonly inputName: string;
  readonly outputName: string;
  /** Dimensions of one input row (no batch axis), e.g. [3, 48, 192]. */
  readonly rowDims: readonly number[];
}

/**
 * Reads and validates `models/<name>/manifest.json` with the server's own reader. The ONNX file is looked up the
 * way the server does (an installed npm package, or the model folder).
 */
export async function loadBenchModel(name: string): Promise<BenchModel> {
  const dir = path.join(packageRoot, 'models', name);
  const read = await readManifest(dir, { name });
  const where = read.where;
  const manifest = asImageManifest(read.manifest, where);
  const file = resolveFile(dir, manifest.model.path, manifest.model.package, '/model', where);
  if (!manifest.input.name || !manifest.output.name)
    throw new Error(`${where}: the bench needs /input/name and /output/name`);
  return {
    name,
    manifest,
    spec: manifest.input,
    file,
    inputName: manifest.input.name,
    outputName: manifest.output.name,
    rowDims: dims(manifest.input),
  };
}

/**
 * Opens a CPU session with the options `ModelSession.create` (src/models/session.ts) uses, so the raw numbers
 * are what the server's runtime can do at best.
 * @param intraOpThreads the server gives one model all cores (`availableParallelism()`)
 */
export async function openSession(model: BenchModel, intraOpThreads: number): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model.file, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: intraOpThreads,
    interOpNumThreads: 1,
    enableCpuMemArena: true,
  });
}

/** Runs one batch tensor through the session and returns the milliseconds `session.run` took. */
export async function runOnce(session: ort.InferenceSession, model: BenchModel, batch: ort.Tensor): Promise<number> {
  const t0 = performance.now();
  await session.run({ [model.inputName]: batch }, [model.outputName]);
  return performance.now() - t0;
}
