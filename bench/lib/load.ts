import autocannon from 'autocannon';
import { summarize, type LatencySummary } from './stats.js';

/** One closed-loop load run: `connections` clients, each sending its next request as soon as the last is answered. */
export interface LoadOptions {
  readonly url: string;
  /** POST (default) with `body`, or GET without one. */
  readonly method?: 'GET' | 'POST';
  readonly body: Buffer;
  readonly contentType: string;
  readonly connections: number;
  readonly durationS: number;
}

/** What one load run recorded, from the client side. */
export interface LoadSample {
  readonly connections: number;
  readonly durationS: number;
  /** Milliseconds of every 2xx answer, at sub-millisecond resolution. */
  readonly latencies: number[];
  readonly non2xx: number;
  /** Requests that got no answer: connection errors and timeouts (autocannon counts timeouts as errors). */
  readonly errors: number;
}

/** Load runs of one configuration and concurrency, pooled. */
export interface LoadResult {
  readonly connections: number;
  /** Seconds of load, all runs together. */
  readonly durationS: number;
  /** 2xx answers per second. */
  readonly rps: number;
  /** Latency of 2xx answers in milliseconds. */
  readonly latency: LatencySummary;
  readonly non2xx: number;
  readonly errors: number;
}

/**
 * Loads the server with autocannon and records every 2xx answer's latency itself: autocannon's own histogram
 * rounds to whole milliseconds, too coarse for a model that answers in a few.
 */
export function runLoad(opts: LoadOptions): Promise<LoadSample> {
  const latencies: number[] = [];
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: opts.url,
        ...(opts.method === 'GET'
          ? { method: 'GET' as const }
          : { method: 'POST' as const, headers: { 'content-type': opts.contentType }, body: opts.body }),
        connections: opts.connections,
        duration: opts.durationS,
      },
      (err, result) => {
        if (err) return reject(err);
        resolve({
          connections: opts.connections,
          durationS: result.duration,
          latencies,
          non2xx: result.non2xx,
          errors: result.errors,
        });
      },
    );
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status >= 200 && status < 300) latencies.push(ms);
    });
  });
}

/** Pools load runs made at the same concurrency: answers over total time, percentiles over all answers. */
export function poolLoad(samples: readonly LoadSample[]): LoadResult {
  const latencies = samples.flatMap((s) => s.latencies);
  const durationS = samples.reduce((sum, s) => sum + s.durationS, 0);
  return {
    connections: samples[0].connections,
    durationS,
    rps: latencies.length / durationS,
    latency: summarize(latencies),
    non2xx: samples.reduce((sum, s) => sum + s.non2xx, 0),
    errors: samples.reduce((sum, s) => sum + s.errors, 0),
  };
}
