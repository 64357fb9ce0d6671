import type { Manifest } from '../manifest.js';
import type { ModelSession } from '../session.js';

/**
 * A request body as the route decoded it; tasks say which kinds they take. Images stay encoded bytes (the format is
 * sniffed from them); text is already decoded (strict UTF-8).
 */
export type ModelInput =
  { readonly kind: 'image'; readonly bytes: Uint8Array } | { readonly kind: 'text'; readonly text: string };

/** Per-request knobs from the query string. */
export interface PredictParams {
  readonly topK?: number;
}

/** What a task needs to build its pipeline; everything comes from the manifest and the loaded session. */
export interface TaskContext<M extends Manifest = Manifest> {
  readonly manifest: M;
  readonly session: ModelSession;
  readonly labels: readonly string[];
  readonly maxImagePixels: number;
  /** Where errors are reported ("models/foo/manifest.json"). */
  readonly where: string;
  /**
   * Reads a file the manifest names (relative to the model folder, or to an npm package), refusing paths that
   * escape it. `field` is the manifest path shown in errors ("/input/vocabulary/file").
   */
  readFile(ref: { readonly file: string; readonly package?: string }, field: string): Promise<string>;
}

/** One preprocessed request, ready to be batched. `key` groups rows that can be stacked together. */
export interface Prepared<Row> {
  readonly row: Row;
  readonly key: string;
}

/**
 * A task pipeline: bytes to a batchable row, a batch of rows through the session, one output back to an answer.
 * The server wires `runBatch` behind the model's batcher; code never branches on a model's name, only on
 * `manifest.task`.
 */
export interface TaskPipeline<Row = unknown, Out = unknown, Answer = unknown> {
  /** Input kinds accepted (checked by the route before any decoding). */
  readonly accepts: readonly ModelInput['kind'][];
  /** Input description for `/v1/models`. */
  readonly inputSpec: Record<string, unknown>;
  /** Largest batch the graph accepts (1 for a fixed batch axis of 1), or undefined when dynamic. */
  readonly graphMaxBatch: number | undefined;
  prepare(input: ModelInput): Promise<Prepared<Row>>;
  runBatch(rows: Row[]): Promise<Out[]>;
  finish(out: Out, params: PredictParams): Answer;
  /** A row to warm the model up with (zeros of the right shape). */
  warmupRow(): Prepared<Row>;
}
