import type { Static, TObject, TSchema } from 'typebox';
import type { ImageSource, RawImage } from '../../preprocess/image.js';
import type { ModelProto } from '../../onnx/model.js';
import type { Op } from '../../workers/ops.js';
import type { TaskWorkers } from '../../workers/task-workers.js';
import type { SessionRunner } from '../session.js';
import type { BaseManifest } from './common/manifest.js';

/**
 * A task: everything the server, the compressor and the docs know about it, in one place. Each task's folder exports
 * one (its index.ts) and `registry.ts` lists them; nothing outside a task's folder branches on a task's name.
 */
export interface TaskDefinition<S extends TObject = TObject> {
  /** The manifest's `task`. */
  readonly name: string;
  /** What the task does, in one line, for a reader of the registry. */
  readonly summary: string;
  /** The whole manifest schema of this task: `commonFields`, `task: Literal(name)` and the task's own sections. */
  readonly manifest: S;
  /** Checks the schema cannot express (one field against another); throws ManifestError. */
  check?(manifest: Static<S>, where: string): void;
  /**
   * The fields this task adds to a `/predict` answer. Tasks that answer a field of the same name share its schema
   * (the same object, from `common/answers.ts`): the predict route's response schema is their union.
   */
  readonly answer: Readonly<Record<string, TSchema>>;
  /** Builds the task's pipeline around a loaded session (what the server serves and the compressor calibrates on). */
  create(
    ctx: TaskContext<Static<S>>,
  ): TaskPipeline<any, any, any, any, any> | Promise<TaskPipeline<any, any, any, any, any>>;
  /**
   * What the compressor's gate measures for this task, comparing the compressed model's outputs with the original's
   * on the evaluation set: top-1 agreement (per time step for a CTC recognizer), agreement of the decision at
   * `threshold` (a probability thresholded per frame or per pixel), or mean output cosine.
   */
  readonly gate:
    | { readonly metric: string; readonly measure: 'top1' | 'cosine' }
    | { readonly metric: string; readonly measure: 'decision'; threshold(manifest: Static<S>): number };
  /** Bytes an input costs once decoded, for the memory budget, where the common estimate does not fit (see request-cost.ts). */
  readonly cost?: {
    /** A `width` x `height` image (default: its decoded pixels). */
    image?(width: number, height: number, manifest: Static<S>): number;
    /** The rate audio is resampled to (default: the file's own). */
    sampleRate?(manifest: Static<S>): number;
  };
  /**
   * A graph built around the model file's for the pipeline to run, when the task runs better on one (voice-activity
   * wraps its frame model in a Scan over frames); undefined keeps the file's. The raw tensor API (v2 infer) and the
   * model's metadata always use the file's own graph.
   */
  pipelineGraph?(model: ModelProto, manifest: Static<S>): ModelProto | undefined;
  /** The task's own ops for the task workers (beyond the common image and audio ones). */
  readonly ops?: readonly Op<any, any>[];
}

/** Declares a task; the identity, for inference of the manifest type from the schema. */
export function defineTask<S extends TObject>(definition: TaskDefinition<S>): TaskDefinition<S> {
  return definition;
}

/**
 * A request body as the route decoded it; tasks say which kinds they take. Images stay encoded bytes (the format is
 * sniffed from them); text is already decoded (strict UTF-8).
 */
export type ModelInput =
  | { readonly kind: 'image'; readonly bytes: Uint8Array }
  | { readonly kind: 'text'; readonly text: string }
  /** A RIFF/WAVE file, still encoded (the task decodes it: the limits are the model's). */
  | { readonly kind: 'audio'; readonly bytes: Uint8Array }
  /** Pixels another model's pipeline already decoded (the OCR pipeline's line crops); never sent by clients. */
  | { readonly kind: 'pixels'; readonly image: RawImage };

/** What a client can send: everything but decoded pixels. */
export type WireInput = Exclude<ModelInput, { kind: 'pixels' }>;

/** The image of an image or pixels input, for image tasks' `prepare`; anything else is a routing bug. */
export function imageOf(req: ModelInput, task: string): ImageSource {
  if (req.kind === 'image') return req.bytes;
  if (req.kind === 'pixels') return req.image;
  throw new Error(`${task} got ${req.kind} input; this is a bug`);
}

/** Per-request knobs from the query string. */
export interface PredictParams {
  readonly topK?: number;
}

/** What a task needs to build its pipeline; everything comes from the manifest and the loaded session. */
export interface TaskContext<M = BaseManifest> {
  readonly manifest: M;
  readonly session: SessionRunner;
  readonly labels: readonly string[];
  readonly maxImagePixels: number;
  /** Where the task's CPU work runs (decoding, sampling, post-processing): off the event loop in the server. */
  readonly workers: TaskWorkers;
  /** Where errors are reported ("models/foo/manifest.json"). */
  readonly where: string;
  /**
   * Reads a file the manifest names (relative to the model folder, or to an npm package), refusing paths that
   * escape it. `field` is the manifest path shown in errors ("/input/vocabulary/file").
   */
  readFile(ref: { readonly file: string; readonly package?: string }, field: string): Promise<string>;
  /** The repository's other models, for pipelines that call them as stages (OCR). */
  readonly stages: StageModels;
  /**
   * The model file's graph, as the raw tensor API and the metadata show it: `session`'s own, unless the task built
   * its pipeline a graph of its own (see {@link TaskDefinition.pipelineGraph}).
   */
  readonly fileGraph: Pick<SessionRunner, 'inputs' | 'outputs'>;
}

/** A model another pipeline calls as a stage: its request goes through that model's own queue and batcher. */
export interface StageModel {
  readonly task: string;
  infer(
    input: ModelInput,
    opts: StepOptions & PredictParams & { readonly timeoutMs: number; readonly admitted?: boolean },
  ): Promise<unknown>;
}

/**
 * The repository as a multi-model pipeline sees it. Stages are looked up per request (models load in name order,
 * so a stage may load after the pipeline that calls it); `model` throws MODEL_NOT_FOUND or MODEL_NOT_READY.
 */
export interface StageModels {
  /**
   * Names of the model folders found (loaded or not), to check a manifest's stage names at load; undefined outside
   * a repository (the compression CLI), where stages are not called.
   */
  names(): readonly string[] | undefined;
  model(name: string): StageModel;
}

/** One preprocessed request, ready to be batched. `key` groups rows that can be stacked together. */
export interface Prepared<Row> {
  readonly row: Row;
  readonly key: string;
  /** Called once the request is done with its row (answered or failed): gives back memory lent to it. */
  readonly release?: () => void;
}

/** Queue options of one row a task submits itself (see {@link TaskPipeline.sequence}). */
export interface StepOptions {
  /** Absolute deadline in `performance.now()` milliseconds. */
  readonly deadline: number;
  readonly signal?: AbortSignal;
}

/**
 * Queues rows on the model's batcher, all before its next cut, so rows submitted together share a batch. Each
 * promise settles with its row's output, or rejects as the batcher does (deadline, cancelled, queue full, closed).
 */
export type SubmitRows<Row, Out> = (
  rows: readonly { readonly row: Row; readonly opts: StepOptions; readonly key?: string }[],
) => Promise<Out>[];

/**
 * A task pipeline: bytes to a batchable row, a batch of rows through the session, one output back to an answer.
 * The server wires `runBatch` behind the model's batcher; code never branches on a model's name, only on
 * `manifest.task`.
 */
export interface TaskPipeline<Row = unknown, Out = unknown, Answer = unknown, Result = Out, Request = Row> {
  /** Input kinds clients may send (checked by the route before any decoding); image tasks also take `pixels`. */
  readonly accepts: readonly WireInput['kind'][];
  /** Input description for `/v1/models`. */
  readonly inputSpec: Record<string, unknown>;
  /** Largest batch the graph accepts (1 for a fixed batch axis of 1), or undefined when dynamic. */
  readonly graphMaxBatch: number | undefined;
  /**
   * Decodes and checks one input; the result is a batchable row, or for a sequence task its whole request. Long
   * decoding stops when `signal` aborts (the client went away).
   */
  prepare(input: ModelInput, signal?: AbortSignal): Promise<Prepared<Request>>;
  runBatch(rows: Row[]): Promise<Out[]>;
  /**
   * Optional, for tasks whose request is a sequence of dependent rows (a stateful model run frame by frame): runs
   * the prepared request through as many `submit` steps as it needs and returns what `finish` takes. Without it, a
   * request is one row and one submit, and `finish` takes that row's output.
   */
  sequence?(request: Request, opts: StepOptions, submit: SubmitRows<Row, Out>): Promise<Result>;
  finish(out: Result, params: PredictParams): Answer;
  /** A row to warm the model up with (zeros of the right shape). */
  warmupRow(): Prepared<Row>;
}
