import { setTimeout as sleep } from 'node:timers/promises';

/** The counters of the server's batching histograms for one model, read from `GET /metrics`. */
export interface BatchCounters {
  /** Sum and count of `muon_batch_size`: requests computed and batches run. */
  readonly batchSizeSum: number;
  readonly batchSizeCount: number;
  /** Sum (seconds) and count of `muon_queue_wait_seconds`: time requests spent queued before their batch was cut. */
  readonly queueWaitSum: number;
  readonly queueWaitCount: number;
  /** `muon_queue_depth`: requests waiting now. */
  readonly queueDepth: number;
}

/** What the server did between two {@link BatchCounters} readings. */
export interface BatchingDelta {
  readonly batches: number;
  /** Mean requests per batch; NaN when no batch ran. */
  readonly meanBatchSize: number;
  /** Mean milliseconds a request waited in the queue; NaN when none was queued. */
  readonly meanQueueWaitMs: number;
}

/**
 * The value of the sample `name{...model="<model>"...}` in Prometheus text, or 0 when absent (prom-client omits a
 * labelled histogram until its first observation).
 */
export function sampleValue(text: string, name: string, model: string): number {
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`${name}{`) && l.includes(`model="${model}"`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

/** Fetches `GET /metrics` and reads the batching counters of `model`. */
export async function readBatchCounters(baseUrl: string, model: string): Promise<BatchCounters> {
  const res = await fetch(`${baseUrl}/metrics`);
  if (!res.ok) throw new Error(`GET /metrics answered ${res.status}`);
  const text = await res.text();
  return {
    batchSizeSum: sampleValue(text, 'muon_batch_size_sum', model),
    batchSizeCount: sampleValue(text, 'muon_batch_size_count', model),
    queueWaitSum: sampleValue(text, 'muon_queue_wait_seconds_sum', model),
    queueWaitCount: sampleValue(text, 'muon_queue_wait_seconds_count', model),
    queueDepth: sampleValue(text, 'muon_queue_depth', model),
  };
}

/**
 * Waits until the model's queue is empty and no batch has run for `quietMs`, and returns the counters then.
 * autocannon stops without waiting for the answers still owed, so without this the requests queued at the end
 * of one load run would be computed, and counted, during the next.
 */
export async function waitIdle(baseUrl: string, model: string, quietMs = 250, timeoutMs = 30_000): Promise<BatchCounters> {
  const deadline = performance.now() + timeoutMs;
  let last = await readBatchCounters(baseUrl, model);
  while (performance.now() < deadline) {
    await sleep(quietMs);
    const now = await readBatchCounters(baseUrl, model);
    if (now.queueDepth === 0 && now.batchSizeCount === last.batchSizeCount) return now;
    last = now;
  }
  throw new Error(`the server was still busy ${timeoutMs / 1000} s after the load stopped`);
}

/** Mean batch size and queue wait between two readings. */
export function batchingDelta(before: BatchCounters, after: BatchCounters): BatchingDelta {
  const batches = after.batchSizeCount - before.batchSizeCount;
  const waits = after.queueWaitCount - before.queueWaitCount;
  return {
    batches,
    meanBatchSize: (after.batchSizeSum - before.batchSizeSum) / batches,
    meanQueueWaitMs: ((after.queueWaitSum - before.queueWaitSum) * 1000) / waits,
  };
}
