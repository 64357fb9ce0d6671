import os from 'node:os';
import type { LoadResult } from './load.js';
import type { MachineInfo } from './machine.js';
import type { BatchingStats } from './metrics.js';
import type { PipelineResult } from './pipeline.js';
import type { Watched } from './quiet.js';
import type { RawResult } from './raw.js';

/** One way of running the server: batching off, or on with a fixed maxQueueDelayMs for every model. */
export interface ServerConfig {
  /** Short name used in tables, e.g. `off` or `delay 2 ms`. */
  readonly name: string;
  readonly batching: boolean;
  /** MUON_MAX_QUEUE_DELAY_MS; absent leaves the manifest's value (irrelevant when batching is off). */
  readonly maxQueueDelayMs?: number;
}

/** One configuration under one concurrency: the client's view plus the server's batching counters. */
export type ServerMeasurement = Watched<
  LoadResult &
    BatchingStats & {
      readonly config: string;
      /** Server requests/s over the best raw `session.run` throughput of any batch size. */
      readonly rpsVsBestRaw: number;
    }
>;

/** Everything one bench run measured; written as JSON and rendered as markdown. */
export interface BenchResults {
  /** ISO time the run started. */
  readonly startedAt: string;
  readonly quick: boolean;
  readonly machine: MachineInfo;
  readonly settings: {
    readonly model: string;
    /** The PNG sent to the server and through the pipeline, relative to the project root. */
    readonly image: string;
    readonly intraOpThreads: number;
    /** Raw batch sizes and server configurations are measured this many times each, in alternating order. */
    readonly rounds: number;
    /** Seconds of one load run (one round of one configuration at one concurrency). */
    readonly loadDurationS: number;
    readonly warmupS: number;
    /** Percent of one core other processes may use during a measurement before it is made again. */
    readonly maxOthersPct: number;
    /** Most measurements made of one thing in one round. */
    readonly attempts: number;
  };
  readonly raw: Watched<RawResult>[];
  readonly pipeline: Watched<PipelineResult>;
  readonly serverConfigs: ServerConfig[];
  /** What the server answered for the image (top label and score), checked once per configuration. */
  readonly prediction: string;
  readonly server: ServerMeasurement[];
}

/** Environment variables that put the server in `config`. */
export function serverEnv(config: ServerConfig): Record<string, string> {
  // the same intra-op threads as the raw baseline, whatever else the default repository loads (its other models
  // sit idle during the run but would otherwise halve the benchmarked model's share of the cores)
  const env: Record<string, string> = {
    MUON_BATCHING: String(config.batching),
    MUON_INTRA_OP_THREADS: String(os.availableParallelism()),
  };
  if (config.maxQueueDelayMs !== undefined) env.MUON_MAX_QUEUE_DELAY_MS = String(config.maxQueueDelayMs);
  return env;
}
