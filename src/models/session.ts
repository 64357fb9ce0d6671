import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { ExecutionProviderChoice } from '../config.js';

/**
 * float16 tensors as Uint16Array on every Node. Where Node has a native Float16Array (24 and later),
 * onnxruntime-common wraps float16 data in one, and onnxruntime-node 1.29's binding reads a Float16Array as empty
 * ("not enough space: expected 3072, got 0"). onnxruntime-common picks its typed arrays once, at its first tensor:
 * made here with Float16Array hidden, it keeps Uint16Array for float16, as on Node 20 and 22.
 */
function float16AsUint16(): void {
  const g = globalThis as { Float16Array?: unknown };
  const descriptor = Object.getOwnPropertyDescriptor(g, 'Float16Array');
  if (!descriptor) return;
  delete g.Float16Array;
  try {
    new ort.Tensor('float32', new Float32Array(1), [1]);
  } finally {
    Object.defineProperty(g, 'Float16Array', descriptor);
  }
}
float16AsUint16();

// The only module that imports onnxruntime-node: everything else sees plain typed arrays.

/** Element types the server feeds and reads. */
export type TensorType = 'float32' | 'int64' | 'int32' | 'float16' | 'uint8' | 'bool';

/** A graph input or output as the runtime reports it; symbolic dimensions are strings. */
export interface TensorInfo {
  readonly name: string;
  readonly type: string;
  readonly shape: readonly (number | string)[];
}

/** A dense tensor in plain JS. */
export interface HostTensor {
  readonly type: TensorType;
  readonly data: Float32Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array;
  readonly dims: readonly number[];
}

/**
 * An output reduced where its session ran (on a session worker, before it crosses to the event loop): along its last
 * axis, the best class and its score, then the scores of `classes`, as float32 `[..., 2 + classes.length]`. The
 * scores are the output's own (exact); a recognizer's 6,625 scores per step become 3 numbers.
 */
export interface ArgmaxReduction {
  readonly classes: readonly number[];
}

/** `t` reduced as {@link ArgmaxReduction} says (ties go to the lowest class, as a scan that keeps the first max). */
export function argmaxLastAxis(t: HostTensor, { classes }: ArgmaxReduction): HostTensor {
  if (!(t.data instanceof Float32Array)) throw new Error(`argmax of a ${t.type} output; this is a bug`);
  const n = t.dims.at(-1) ?? 1;
  const rows = t.data.length / n;
  const w = 2 + classes.length;
  const out = new Float32Array(rows * w);
  for (let r = 0; r < rows; r++) {
    const base = r * n;
    let best = 0;
    let max = t.data[base];
    for (let k = 1; k < n; k++) {
      if (t.data[base + k] > max) {
        max = t.data[base + k];
        best = k;
      }
    }
    out[r * w] = best;
    out[r * w + 1] = max;
    for (let c = 0; c < classes.length; c++) out[r * w + 2 + c] = t.data[base + classes[c]];
  }
  return { type: 'float32', data: out, dims: [...t.dims.slice(0, -1), w] };
}

/** How a session is placed and threaded. */
export interface SessionOptions {
  readonly provider: ExecutionProviderChoice;
  readonly intraOpThreads: number;
  /** Receives one line when `auto` falls back to CPU. */
  readonly onFallback?: (reason: string) => void;
  /** Graph optimization level; `all` for serving. The compression CLI uses `basic` to pre-process models. */
  readonly optimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Where onnxruntime writes the optimized graph (to see which fused kernels it chose). */
  readonly optimizedModelPath?: string;
}

/** How a fallback reason starts when the CUDA provider is simply not installed (a CPU machine), not broken. */
const NOT_INSTALLED = 'CUDA provider not installed';

/** Whether `auto` fell back to CPU only because the CUDA provider is not installed: expected, not a fault. */
export function cudaNotInstalled(reason: string): boolean {
  return reason.startsWith(NOT_INSTALLED);
}

/** Where the CUDA provider library must sit for onnxruntime-node to load it. */
export function cudaProviderPath(): string {
  const entry = createRequire(import.meta.url).resolve('onnxruntime-node');
  const binDir = path.resolve(path.dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
  return path.join(binDir, 'libonnxruntime_providers_cuda.so');
}

/** What a task pipeline needs of a session: its signature and `run` (the compression CLI wraps it to record feeds). */
export type SessionRunner = Pick<ModelSession, 'inputs' | 'outputs' | 'run'>;

/** A session as the repository holds it: on the event loop ({@link ModelSession}) or on worker threads. */
export type ServingSession = Pick<
  ModelSession,
  'inputs' | 'outputs' | 'run' | 'provider' | 'fallbackReason' | 'release'
>;

/**
 * A run's failure (a shape the graph refuses: a client's v2 request) is thrown to the caller, which answers and logs
 * it; onnxruntime would also print its own coloured line to stderr for each, outside the structured log.
 */
const RUN_OPTIONS: ort.InferenceSession.RunOptions = { logSeverityLevel: 4 };

/** One loaded ONNX model on one execution provider. */
export class ModelSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    /** The provider that actually runs the model. */
    readonly provider: 'cuda' | 'cpu',
    /** Why `auto` is on CPU, when it is. */
    readonly fallbackReason: string | undefined,
  ) {}

  /**
   * Creates a session. `cuda` fails when CUDA cannot be used; `auto` then falls back to CPU and reports why
   * through `onFallback` (onnxruntime does not fall back by itself: session creation throws).
   *
   * @param model the model bytes, or the path of a `.onnx` file: a path is needed for models with external data,
   *   which onnxruntime resolves relative to the file's folder (it cannot from bytes)
   */
  static async create(model: Uint8Array | string, opts: SessionOptions): Promise<ModelSession> {
    const base: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: opts.optimizationLevel ?? 'all',
      ...(opts.optimizedModelPath ? { optimizedModelFilePath: opts.optimizedModelPath } : {}),
      executionMode: 'sequential',
      intraOpNumThreads: opts.intraOpThreads,
      interOpNumThreads: 1,
      enableCpuMemArena: true,
      // onnxruntime's intra-op threads spin after a run by default, waiting for the next one: on a machine that also
      // decodes, parses HTTP and runs other models, that spinning takes cores from exactly that work
      extra: { session: { intra_op: { allow_spinning: '0' } } },
      // onnxruntime writes its own lines to stderr, outside the structured log: only errors (its warnings are about
      // model files, e.g. unused initializers in BlazeFace, which the operator cannot act on at run time)
      logSeverityLevel: 3,
    };
    // two calls, not one: TypeScript cannot pick an overload of InferenceSession.create for a union argument
    const load = (o: ort.InferenceSession.SessionOptions) =>
      typeof model === 'string' ? ort.InferenceSession.create(model, o) : ort.InferenceSession.create(model, o);
    const cpu = async (reason?: string) =>
      new ModelSession(await load({ ...base, executionProviders: ['cpu'] }), 'cpu', reason);
    if (opts.provider === 'cpu') return cpu();
    const lib = cudaProviderPath();
    let reason: string;
    if (!existsSync(lib)) {
      reason = `${NOT_INSTALLED} (${lib} is missing)`;
      if (opts.provider === 'cuda') throw new Error(`MUON_EXECUTION_PROVIDER=cuda but the ${reason}`);
    } else {
      try {
        const s = await load({ ...base, executionProviders: [{ name: 'cuda', deviceId: 0 }] });
        return new ModelSession(s, 'cuda', undefined);
      } catch (err) {
        reason = `CUDA provider failed to load: ${err instanceof Error ? err.message : String(err)}`;
        if (opts.provider === 'cuda') throw new Error(`MUON_EXECUTION_PROVIDER=cuda but the ${reason}`);
      }
    }
    opts.onFallback?.(reason);
    return cpu(reason);
  }

  /** Graph inputs with their types and shapes. */
  get inputs(): TensorInfo[] {
    return this.session.inputMetadata.map((m) => info(m));
  }

  /** Graph outputs with their types and shapes. */
  get outputs(): TensorInfo[] {
    return this.session.outputMetadata.map((m) => info(m));
  }

  /**
   * Runs the graph once on host tensors and returns the requested outputs as host tensors, those named in `reduce`
   * reduced (see {@link ArgmaxReduction}).
   */
  async run(
    feeds: Record<string, HostTensor>,
    outputNames: readonly string[],
    reduce: Readonly<Record<string, ArgmaxReduction>> = {},
  ): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(t.type, ownMemory(t.data), t.dims);
    const result = await this.session.run(ortFeeds, outputNames, RUN_OPTIONS);
    const out: Record<string, HostTensor> = {};
    for (const name of outputNames) {
      const t = result[name];
      const host = { type: t.type as TensorType, data: t.data as HostTensor['data'], dims: t.dims };
      out[name] = Object.hasOwn(reduce, name) ? argmaxLastAxis(host, reduce[name]) : host;
    }
    return out;
  }

  /** Frees the native session. */
  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * Whether a session takes feeds in shared memory as they are, copying them off the event loop (a pool of session
 * workers), so that a model's batch buffers are worth sharing; a session on the loop would copy them there.
 */
export function readsSharedMemory(session: SessionRunner): boolean {
  return (session as { readonly readsSharedMemory?: boolean }).readsSharedMemory === true;
}

/**
 * `data`, or a copy of it where it lives in shared memory (a model's pooled batch buffers, which the event loop lends
 * its session workers), which onnxruntime-node refuses as input ("Invalid argument").
 */
function ownMemory(data: HostTensor['data']): HostTensor['data'] {
  return data.buffer instanceof SharedArrayBuffer ? copyOf(data) : data;
}

/** A copy of a tensor's elements in a buffer of its own (a Node Buffer's `slice` would be a view of its slab). */
export function copyOf(data: HostTensor['data']): HostTensor['data'] {
  return Buffer.isBuffer(data) ? new Uint8Array(data) : data.slice();
}

function info(m: ort.InferenceSession.ValueMetadata): TensorInfo {
  if (!m.isTensor) return { name: m.name, type: 'non-tensor', shape: [] };
  return { name: m.name, type: m.type, shape: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : String(d))) };
}
