import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeModel, type ModelProto } from '../onnx/model.js';
import { ModelSession, type SessionOptions } from '../models/session.js';

/**
 * The graph onnxruntime runs after its CPU graph optimizations at `level`: a session is created (single-threaded)
 * with `optimizedModelPath` in a fresh temporary folder, released, and the file it wrote decoded. The folder is
 * removed before returning, so the model's raw_data is a copy that aliases no file.
 *
 * @param bytes - a serialized model (no external data)
 * @param level - the optimization level to apply
 * @param tempPrefix - prefix of the temporary folder's name, e.g. `muon-optimize-`
 */
export async function ortOptimizedModel(
  bytes: Uint8Array,
  level: NonNullable<SessionOptions['optimizationLevel']>,
  tempPrefix: string,
): Promise<ModelProto> {
  const dir = await mkdtemp(path.join(tmpdir(), tempPrefix));
  try {
    const optimizedModelPath = path.join(dir, 'optimized.onnx');
    const session = await ModelSession.create(bytes, {
      provider: 'cpu',
      intraOpThreads: 1,
      optimizationLevel: level,
      optimizedModelPath,
    });
    await session.release();
    return decodeModel(new Uint8Array(await readFile(optimizedModelPath)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
