import { Worker } from 'node:worker_threads';

/**
 * The probe loop, on a thread of its own: a probe timed on the load generator's event loop also counted the time that
 * loop was busy sending the load (in the hostile mix, up to a few hundred milliseconds), as a kubelet, a process of its
 * own, would not. Keep-alive `node:http`, one probe at a time; the worst time in microseconds and the failures go to
 * a shared Int32Array that {@link LivenessProber.take} swaps for zeros.
 */
const probeLoop = `
const http = require('node:http');
const { workerData, parentPort } = require('node:worker_threads');
const { url, periodMs, timeoutMs, shared } = workerData;
const stats = new Int32Array(shared);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let running = true;
parentPort.on('message', () => { running = false; });
const probe = () => new Promise((resolve) => {
  // a deadline for the whole answer (a socket timeout would restart with every byte)
  const deadline = setTimeout(() => req.destroy(new Error('timed out')), timeoutMs);
  const settle = (ok) => { clearTimeout(deadline); resolve(ok); };
  const req = http.get(url, { agent }, (res) => {
    res.resume();
    res.on('end', () => settle(res.statusCode >= 200 && res.statusCode < 300));
    res.on('error', () => settle(false));
  });
  req.on('error', () => settle(false));
});
(async () => {
  while (running) {
    const started = performance.now();
    const ok = await probe();
    const us = Math.min(2 ** 31 - 1, Math.round((performance.now() - started) * 1000));
    for (let cur = Atomics.load(stats, 0); us > cur; cur = Atomics.load(stats, 0))
      if (Atomics.compareExchange(stats, 0, cur, us) === cur) break;
    if (!ok) Atomics.add(stats, 1, 1);
    await new Promise((r) => setTimeout(r, periodMs));
  }
  agent.destroy();
  parentPort.close();
})();
`;

/**
 * Probes `GET /v2/health/live` as an orchestrator would (more often): one probe at a time, `periodMs` apart, each
 * given up after `timeoutMs`, from a worker thread (see {@link probeLoop}). Keeps the worst answer time and the
 * failed probes (no answer in time, or not 2xx) since the last {@link take}.
 */
export class LivenessProber {
  readonly #stats = new Int32Array(new SharedArrayBuffer(8));
  readonly #worker: Worker;
  readonly #exited: Promise<void>;
  #error: Error | undefined;

  constructor(baseUrl: string, periodMs = 100, timeoutMs = 10_000) {
    const workerData = { url: `${baseUrl}/v2/health/live`, periodMs, timeoutMs, shared: this.#stats.buffer };
    this.#worker = new Worker(probeLoop, { eval: true, workerData });
    // a prober that broke says so when stopped, rather than crashing the bench or counting nothing silently
    this.#worker.on('error', (err) => (this.#error ??= err));
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()));
  }

  /** The worst answer time (ms) and the failed probes since the last take, and starts counting anew. */
  take(): { worstMs: number; failed: number } {
    return { worstMs: Atomics.exchange(this.#stats, 0, 0) / 1000, failed: Atomics.exchange(this.#stats, 1, 0) };
  }

  /** Stops after the probe in progress. */
  async stop(): Promise<void> {
    this.#worker.postMessage('stop');
    await this.#exited;
    if (this.#error) throw new Error(`the liveness prober failed: ${this.#error.message}`, { cause: this.#error });
  }
}
