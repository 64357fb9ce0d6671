// autocannon ships no type declarations and @types/autocannon is not a dependency: this declares the small part
// of its programmatic API that the bench uses (see node_modules/autocannon/README.md, "API").
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  namespace autocannon {
    interface Options {
      url: string;
      method?: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';
      headers?: Record<string, string>;
      body?: string | Buffer;
      /** Concurrent connections, each with one request in flight (no pipelining). */
      connections?: number;
      /** Seconds. */
      duration?: number;
      /** Seconds before a request counts as a timeout. */
      timeout?: number;
      /** Requests per second over all connections (an open-loop offered load). */
      overallRate?: number;
    }

    interface Result {
      /** Seconds the run lasted. */
      duration: number;
      /** Requests that got no answer, timeouts included. */
      errors: number;
      timeouts: number;
      non2xx: number;
      '2xx': number;
      /** Milliseconds, autocannon's own (whole-millisecond) histogram. */
      latency: { p50: number; p99: number; max: number };
    }

    /** Emits `response` (client, statusCode, bytes, responseTimeMs) for every answer. */
    type Instance = EventEmitter & { stop(): void };
  }

  function autocannon(
    opts: autocannon.Options,
    cb: (err: Error | null, result: autocannon.Result) => void,
  ): autocannon.Instance;

  export default autocannon;
}
