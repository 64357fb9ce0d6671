import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { cgroupCpuLimit, defaultBudget, type BudgetSource } from './server/memory-budget.js';

/** Where the runtime executes models. `auto` tries CUDA and falls back to CPU, saying why. */
export type ExecutionProviderChoice = 'auto' | 'cuda' | 'cpu';

/** The whole, validated, frozen configuration of one server process. */
export interface Config {
  readonly host: string;
  readonly port: number;
  /**
   * The gRPC endpoint (KServe v2 / Triton `inference.GRPCInferenceService`), on `host` and with `tls` like HTTP:
   * its port (0 = any free port) and the largest message it reads. Undefined = off (MUON_GRPC_PORT unset).
   */
  readonly grpc: { readonly port: number; readonly maxMessageBytes: number } | undefined;
  /** HTTPS certificate and key (PEM, read at start); undefined = plain HTTP. */
  readonly tls: { readonly cert: Buffer; readonly key: Buffer } | undefined;
  /** Origins allowed to call the API from a browser (CORS); empty = no CORS headers at all. */
  readonly corsOrigins: readonly string[];
  readonly logLevel: string;
  /** Folder holding one sub-folder per model. */
  readonly modelRepository: string;
  /** Model used by `POST /predict` without `?model=`. */
  readonly defaultModel: string;
  readonly executionProvider: ExecutionProviderChoice;
  /**
   * Threads each ONNX session may use for one operator. `undefined` means: split the cores evenly across the
   * loaded models (at least 1 each), so several models never oversubscribe the CPU.
   */
  readonly intraOpThreads: number | undefined;
  /** Largest accepted request body, and largest uploaded file, in bytes. */
  readonly maxBodyBytes: number;
  /** Largest accepted image, in pixels (width x height), checked from the header before decoding. */
  readonly maxImagePixels: number;
  /** Default per-request deadline when neither the request nor the manifest sets one. */
  readonly requestTimeoutMs: number;
  /** A whole request (headers and body) must arrive within this, or the connection is closed (slow uploads). */
  readonly uploadTimeoutMs: number;
  /** Once its body is in, a request not answered within this gets a 503 (a safety net behind the deadlines). */
  readonly handlerTimeoutMs: number;
  /** Bytes requests may hold at once (bodies, decoded media, tensors, responses), and where the number came from. */
  readonly memoryBudget: { readonly bytes: number; readonly source: BudgetSource };
  /** How long a request may wait for room in the memory budget before it is refused with 429. */
  readonly memoryWaitMs: number;
  /** First wait before a model whose sessions broke is reloaded in the background (doubling after each failure). */
  readonly reloadBackoffMs: number;
  /** Liveness fails for a minute after the event loop was blocked longer than this (a wedged process). */
  readonly livenessMaxBlockMs: number;
  /**
   * Client errors (4xx but 429) per second a client address gets at once (twice as many in a burst); beyond, each
   * further one is held back up to a second (see server/error-pacing.ts). 0 turns pacing off.
   */
  readonly clientErrorRate: number;
  /** `false` forces every model's maxBatchSize to 1 (for comparisons); manifests decide otherwise. */
  readonly batching: boolean;
  /** Overrides every manifest's maxQueueDelayMs when set. */
  readonly maxQueueDelayMs: number | undefined;
  /** Threads sharp (libvips) may use per image; images are decoded in parallel across requests anyway. */
  readonly preprocessThreads: number;
  /** Worker threads for the tasks' CPU work (decoding, sampling, post-processing); 0 runs it on the event loop. */
  readonly taskThreads: number;
  /**
   * How much lower the worker threads' CPU priority (Linux nice) is than the event loop's: task workers, session
   * workers and the onnxruntime threads a session worker starts (not libuv's shared pool). 0 leaves them equal.
   */
  readonly workerNice: number;
  /** Run one batch through each model before reporting ready. */
  readonly warmup: boolean;
  /** After SIGTERM: readiness is 503 at once, new requests are still served for this long (load balancers catch up). */
  readonly shutdownGraceMs: number;
  /** Bearer token for model management (`/v2/repository/models/{name}/load|unload`); undefined = disabled. */
  readonly adminToken: string | undefined;
  /** After SIGTERM: the whole drain (grace, then finishing admitted requests) must end within this, or exit 1. */
  readonly shutdownTimeoutMs: number;
  /** Cores the thread budget is split over. */
  readonly cpuCount: number;
  /** Opt-in capture of real request inputs for calibration (user data!); undefined = off. */
  readonly capture: { readonly dir: string; readonly rate: number; readonly maxBytes: number } | undefined;
}

/** The package's root folder, so default paths work whatever the working directory. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** MUON_TLS_CERT_FILE and MUON_TLS_KEY_FILE: both or neither, read now so a bad path stops the start. */
function tls(env: NodeJS.ProcessEnv): Config['tls'] {
  const certFile = env.MUON_TLS_CERT_FILE?.trim();
  const keyFile = env.MUON_TLS_KEY_FILE?.trim();
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) throw new ConfigError('MUON_TLS_CERT_FILE and MUON_TLS_KEY_FILE go together: set both');
  const read = (name: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ConfigError(`${name}: cannot read ${file}: ${(err as Error).message}`);
    }
  };
  return { cert: read('MUON_TLS_CERT_FILE', certFile), key: read('MUON_TLS_KEY_FILE', keyFile) };
}

/** MUON_MEMORY_BUDGET_BYTES (at least 16 MiB), else derived from the cgroup limit or the machine's RAM. */
function memoryBudget(env: Env): Config['memoryBudget'] {
  const bytes = int(env, 'MUON_MEMORY_BUDGET_BYTES', undefined, 16 * 2 ** 20);
  return bytes === undefined ? defaultBudget() : { bytes, source: 'MUON_MEMORY_BUDGET_BYTES' };
}

/** MUON_ADMIN_TOKEN: at least 16 characters when set, so a guessable token is refused at start. */
function adminToken(env: NodeJS.ProcessEnv): string | undefined {
  const token = env.MUON_ADMIN_TOKEN?.trim();
  if (!token) return undefined;
  if (token.length < 16) throw new ConfigError('MUON_ADMIN_TOKEN must be at least 16 characters');
  return token;
}

/**
 * MUON_GRPC_PORT turns gRPC on (off when unset: a second port is opened only when asked for); its largest message is
 * MUON_GRPC_MAX_MESSAGE_BYTES, by default MUON_MAX_BODY_BYTES, the HTTP body limit.
 */
function grpc(env: Env, httpPort: number, maxBodyBytes: number): Config['grpc'] {
  const port = int(env, 'MUON_GRPC_PORT', undefined, 0, 65535);
  if (port === undefined) return undefined;
  if (port !== 0 && port === httpPort) throw new ConfigError(`MUON_GRPC_PORT must differ from PORT (both ${port})`);
  return Object.freeze({
    port,
    maxMessageBytes: int(env, 'MUON_GRPC_MAX_MESSAGE_BYTES', maxBodyBytes, 1, 2 ** 31 - 1)!,
  });
}

/** The server's name and version, from package.json (OpenAPI, `GET /v2`). */
export const serverInfo: { readonly name: string; readonly version: string } = (() => {
  const pkg = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  return { name: 'muon-serve', version: pkg.version };
})();

/** Defaults in one place; the README's configuration table lists the same values. */
export const defaults = Object.freeze({
  HOST: '0.0.0.0',
  PORT: 8080,
  MUON_LOG_LEVEL: 'info',
  MUON_MODEL_REPOSITORY: path.join(packageRoot, 'models'),
  MUON_DEFAULT_MODEL: 'ocr',
  MUON_EXECUTION_PROVIDER: 'auto' as ExecutionProviderChoice,
  MUON_MAX_BODY_BYTES: 8 * 1024 * 1024,
  MUON_MAX_IMAGE_PIXELS: 40_000_000,
  MUON_REQUEST_TIMEOUT_MS: 10_000,
  MUON_UPLOAD_TIMEOUT_MS: 60_000,
  MUON_HANDLER_TIMEOUT_MS: 120_000,
  MUON_MEMORY_WAIT_MS: 1_000,
  MUON_LIVENESS_MAX_BLOCK_MS: 5_000,
  MUON_CLIENT_ERROR_RATE: 20,
  MUON_RELOAD_BACKOFF_MS: 5_000,
  MUON_BATCHING: true,
  MUON_PREPROCESS_THREADS: 1,
  MUON_WARMUP: true,
  MUON_CAPTURE_RATE: 0.01,
  MUON_SHUTDOWN_GRACE_MS: 5_000,
  MUON_SHUTDOWN_TIMEOUT_MS: 30_000,
  MUON_CAPTURE_MAX_BYTES: 256 * 1024 * 1024,
});

/** Thrown for a bad setting; the message names the variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, fallback: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`${name} must be an integer in [${min}, ${max}], got '${raw}'`);
  }
  return v;
}

function fraction(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < 0 || v > 1) throw new ConfigError(`${name} must be a number in [0, 1], got '${raw}'`);
  return v;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'on', 'yes'].includes(raw)) return true;
  if (['0', 'false', 'off', 'no'].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false (or on/off, 1/0), got '${env[name]}'`);
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got '${raw}'`);
  }
  return raw as T;
}

/**
 * Reads the configuration from environment variables (the only place that does), validates it and freezes it.
 * @param env usually `process.env`; tests pass their own
 */
export function loadConfig(env: Env = process.env): Config {
  const d = defaults;
  const repo = env.MUON_MODEL_REPOSITORY?.trim() || d.MUON_MODEL_REPOSITORY;
  // the cores this process may use: the machine's, or fewer under a container's CPU quota
  const cpus = Math.max(1, Math.min(availableParallelism(), cgroupCpuLimit() ?? Infinity));
  const port = int(env, 'PORT', d.PORT, 0, 65535)!;
  const maxBodyBytes = int(env, 'MUON_MAX_BODY_BYTES', d.MUON_MAX_BODY_BYTES, 1)!;
  const config: Config = Object.freeze({
    host: env.HOST?.trim() || d.HOST,
    port,
    grpc: grpc(env, port, maxBodyBytes),
    tls: tls(env),
    corsOrigins: (env.MUON_CORS_ORIGINS ?? '')
      .split(',')
      .map((o) => o.trim())
      .filter(Boolean),
    logLevel: oneOf(
      env,
      'MUON_LOG_LEVEL',
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      d.MUON_LOG_LEVEL,
    ),
    modelRepository: path.resolve(repo),
    defaultModel: env.MUON_DEFAULT_MODEL?.trim() || d.MUON_DEFAULT_MODEL,
    executionProvider: oneOf(env, 'MUON_EXECUTION_PROVIDER', ['auto', 'cuda', 'cpu'], d.MUON_EXECUTION_PROVIDER),
    intraOpThreads: int(env, 'MUON_INTRA_OP_THREADS', undefined, 1, 1024),
    maxBodyBytes,
    maxImagePixels: int(env, 'MUON_MAX_IMAGE_PIXELS', d.MUON_MAX_IMAGE_PIXELS, 1)!,
    requestTimeoutMs: int(env, 'MUON_REQUEST_TIMEOUT_MS', d.MUON_REQUEST_TIMEOUT_MS, 1)!,
    uploadTimeoutMs: int(env, 'MUON_UPLOAD_TIMEOUT_MS', d.MUON_UPLOAD_TIMEOUT_MS, 1)!,
    handlerTimeoutMs: int(env, 'MUON_HANDLER_TIMEOUT_MS', d.MUON_HANDLER_TIMEOUT_MS, 1)!,
    memoryBudget: memoryBudget(env),
    memoryWaitMs: int(env, 'MUON_MEMORY_WAIT_MS', d.MUON_MEMORY_WAIT_MS, 0, 600_000)!,
    livenessMaxBlockMs: int(env, 'MUON_LIVENESS_MAX_BLOCK_MS', d.MUON_LIVENESS_MAX_BLOCK_MS, 100)!,
    clientErrorRate: int(env, 'MUON_CLIENT_ERROR_RATE', d.MUON_CLIENT_ERROR_RATE, 0, 1_000_000)!,
    reloadBackoffMs: int(env, 'MUON_RELOAD_BACKOFF_MS', d.MUON_RELOAD_BACKOFF_MS, 1, 300_000)!,
    batching: bool(env, 'MUON_BATCHING', d.MUON_BATCHING),
    maxQueueDelayMs: int(env, 'MUON_MAX_QUEUE_DELAY_MS', undefined, 0, 60_000),
    preprocessThreads: int(env, 'MUON_PREPROCESS_THREADS', d.MUON_PREPROCESS_THREADS, 0, 1024)!,
    taskThreads: int(env, 'MUON_TASK_THREADS', cpus, 0, 1024)!,
    workerNice: int(env, 'MUON_WORKER_NICE', 5, 0, 19)!,
    warmup: bool(env, 'MUON_WARMUP', d.MUON_WARMUP),
    adminToken: adminToken(env),
    shutdownGraceMs: int(env, 'MUON_SHUTDOWN_GRACE_MS', d.MUON_SHUTDOWN_GRACE_MS, 0, 600_000)!,
    shutdownTimeoutMs: int(env, 'MUON_SHUTDOWN_TIMEOUT_MS', d.MUON_SHUTDOWN_TIMEOUT_MS, 1, 3_600_000)!,
    cpuCount: cpus,
    capture: env.MUON_CAPTURE_DIR?.trim()
      ? {
          dir: path.resolve(env.MUON_CAPTURE_DIR.trim()),
          rate: fraction(env, 'MUON_CAPTURE_RATE', d.MUON_CAPTURE_RATE),
          maxBytes: int(env, 'MUON_CAPTURE_MAX_BYTES', d.MUON_CAPTURE_MAX_BYTES, 0)!,
        }
      : undefined,
  });
  if (config.shutdownGraceMs >= config.shutdownTimeoutMs) {
    throw new ConfigError(
      'MUON_SHUTDOWN_GRACE_MS must be below MUON_SHUTDOWN_TIMEOUT_MS (the drain needs time after the grace)',
    );
  }
  return config;
}
