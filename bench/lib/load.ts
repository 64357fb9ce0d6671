import autocannon from 'autocannon';
import { summarize, type LatencySummary } from './stats.js';

/** One closed-loop load run: `connections` clients, each sending its next request as soon as the last is answered. */
export interface LoadOptions {
  readonly url: string;
  readonly body: Buffer;
  readonly contentType: string;
  readonly connections: number;
  readonly durationS: number;
}

/** What one load run measured, from the client side. */
export interface LoadResult {
  readonly connections: number;
  readonly durationS: number;
  /** 2xx answers per second over the run. */
  readonly rps: number;
  /** Latency of 2xx answers in milliseconds, at sub-millisecond resolution. */
  readonly latency: LatencySummary;
  readonly non2xx: number;
  /** Requests that got no answer: connection errors and timeouts (autocannon counts timeouts as errors). */
  readonly errors: number;
}

/**
 * Loads the server with autocannon and records every 2xx answer's latency itself: autocannon's own histogram
 * rounds to whole milliseconds, too coarse for a model that answers in a few.
 */
export function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: opts.url,
        method: 'POST',
        headers: { 'content-type': opts.contentType },
        body: opts.body,
        connections: opts.connections,
        duration: opts.durationS,
      },
      (err, result) => {
        if (err) return reject(err);
        resolve({
          connections: opts.connections,
          durationS: result.duration,
          rps: latencies.length / result.duration,
          latency: summarize(latencies),
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
