/** A count and the nanoseconds it took in all (Triton's StatisticDuration). */
export interface Duration {
  count: number;
  ns: number;
}

/** What one model version has done since the server started, kept where `/metrics` counts the same things. */
export interface VersionStatistics {
  /** Answers with a 2xx status, and their time from arrival to answer (`muon_requests_total`, 2xx codes). */
  readonly success: Duration;
  /** Answers with any other status (refusals included), as `muon_requests_total` counts them. */
  readonly fail: Duration;
  /** Rows cut into a batch and their time in the queue (`muon_queue_wait_seconds`). */
  readonly queue: Duration;
  /** Rows computed, each charged its whole batch's time (stack, run, split: `muon_inference_duration_seconds`). */
  readonly computeInfer: Duration;
  /** Batches by size: how many ran and their time in all (`muon_batch_size`, `muon_inference_duration_seconds`). */
  readonly batches: Map<number, Duration>;
  /** Rows computed (the sum of `muon_batch_size`). */
  inferenceCount: number;
  /** Batches computed (the count of `muon_batch_size`). */
  executionCount: number;
  /** When the last batch was cut (ms since the epoch), 0 before any. */
  lastInference: number;
}

const duration = (): Duration => ({ count: 0, ns: 0 });

/**
 * Per model and version counters for Triton's statistics extension. They are updated at the same points, with the
 * same values, as the per-model metrics (`Metrics`), so a model's versions add up to what `/metrics` says of it.
 */
export class InferenceStatistics {
  readonly #models = new Map<string, Map<string, VersionStatistics>>();

  /** The counters of one version (zero until it has done something). */
  of(model: string, version: string): VersionStatistics {
    let versions = this.#models.get(model);
    if (!versions) this.#models.set(model, (versions = new Map()));
    let s = versions.get(version);
    if (!s) {
      s = {
        success: duration(),
        fail: duration(),
        queue: duration(),
        computeInfer: duration(),
        batches: new Map(),
        inferenceCount: 0,
        executionCount: 0,
        lastInference: 0,
      };
      versions.set(version, s);
    }
    return s;
  }

  /** A request answered: 2xx is a success, anything else a failure. */
  answered(model: string, version: string, statusCode: number, seconds: number): void {
    const d = statusCode >= 200 && statusCode < 300 ? this.of(model, version).success : this.of(model, version).fail;
    d.count++;
    d.ns += Math.round(seconds * 1e9);
  }

  /** A batch was cut: its rows and how long each waited. */
  batchStarted(model: string, version: string, size: number, queueWaitMs: readonly number[]): void {
    const s = this.of(model, version);
    s.executionCount++;
    s.inferenceCount += size;
    s.lastInference = Date.now();
    for (const w of queueWaitMs) {
      s.queue.count++;
      s.queue.ns += Math.round(w * 1e6);
    }
  }

  /** A batch finished (or failed) after `ms` of compute. */
  batchFinished(model: string, version: string, size: number, ms: number): void {
    const s = this.of(model, version);
    const ns = Math.round(ms * 1e6);
    s.computeInfer.count += size;
    s.computeInfer.ns += size * ns;
    let b = s.batches.get(size);
    if (!b) s.batches.set(size, (b = duration()));
    b.count++;
    b.ns += ns;
  }
}
