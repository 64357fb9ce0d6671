import { setTimeout as sleep } from 'node:timers/promises';

/** Totals of the server's batching histograms for one model, from `GET /metrics` (or differences of two readings). */
export interface BatchTotals {
  /** Sum and count of `muon_batch_size`: requests computed and batches run. */
  readonly batchSizeSum: number;
  readonly batchSizeCount: number;
  /** Sum (seconds) and count of `muon_queue_wait_seconds`: time requests spent queued before their batch was cut. */
  readonly queueWaitSum: number;
  readonly queueWaitCount: number;
}

/** How the server batched during some load. */
export interface BatchingStats {
  readonly batches: number;
  /** Mean requests per batch; NaN when no batch ran. */
  readonly meanBatchSize: number;
  /** Mean milliseconds a request waited in the queue; NaN when none was queued. */
  readonly meanQueueWaitMs: number;
}

/** A reading of {@link BatchTotals} and of the queue depth. */
interface MetricsReading extends BatchTotals {
  /** `muon_queue_depth`: requests waiting now. */
  readonly queueDepth: number;
}

/**
 * The value of the sample `name{...<label>...}` in Prometheus text (`label` written as `key="value"`), or 0 when
 * absent (prom-client omits a labelled histogram until its first observation).
 */
export function labelledValue(text: string, name: string, label: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(label));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

/** The value of the sample `name{...model="<model>"...}` in Prometheus text, or 0 when absent. */
export function sampleValue(text: string, name: string, model: string): number {
  return labelledValue(text, name, `model="${model}"`);
}

async function readMetrics(baseUrl: string, model: string): Promise<MetricsReading> {
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
 * Waits until the model's queue is empty and no batch has run for `quietMs`, and returns the totals then.
 * autocannon stops without waiting for the answers still owed, so without this the requests queued at the end
 * of one load run would be computed, and counted, during the next.
 */
export async function waitIdle(
  baseUrl: string,
  model: string,
  quietMs = 250,
  timeoutMs = 30_000,
): Promise<BatchTotals> {
  const deadline = performance.now() + timeoutMs;
  let last = await readMetrics(baseUrl, model);
  while (performance.now() < deadline) {
    await sleep(quietMs);
    const now = await readMetrics(baseUrl, model);
    if (now.queueDepth === 0 && now.batchSizeCount === last.batchSizeCount) return now;
    last = now;
  }
  throw new Error(`the server was still busy ${timeoutMs / 1000} s after the load stopped`);
}

/** What happened between two readings. */
export function diffTotals(before: BatchTotals, after: BatchTotals): BatchTotals {
  return {
    batchSizeSum: after.batchSizeSum - before.batchSizeSum,
    batchSizeCount: after.batchSizeCount - before.batchSizeCount,
    queueWaitSum: after.queueWaitSum - before.queueWaitSum,
    queueWaitCount: after.queueWaitCount - before.queueWaitCount,
  };
}

/** Mean batch size and queue wait over any number of {@link diffTotals} differences. */
export function batchingStats(deltas: readonly BatchTotals[]): BatchingStats {
  const total = (key: keyof BatchTotals) => deltas.reduce((sum, d) => sum + d[key], 0);
  const batches = total('batchSizeCount');
  return {
    batches,
    meanBatchSize: total('batchSizeSum') / batches,
    meanQueueWaitMs: (total('queueWaitSum') * 1000) / total('queueWaitCount'),
  };
}

/**
 * prom-client samples the event loop with a 10 ms timer (its default `eventLoopMonitoringPrecision`) and its
 * `nodejs_eventloop_lag_*` figures are the intervals between ticks, that period included: an idle loop reports
 * about 10 ms. The benches report the lag beyond it, the time the loop was really held.
 */
export const LAG_SAMPLING_MS = 10;

/** Event-loop lag from a `nodejs_eventloop_lag_*_seconds` value: milliseconds beyond the sampling period. */
export const lagBeyondSampling = (seconds: number): number => Math.max(0, seconds * 1000 - LAG_SAMPLING_MS);
