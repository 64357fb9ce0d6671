/**
 * Probes `GET /v2/health/live` as an orchestrator would (more often): one probe at a time, `periodMs` apart, each
 * given up after `timeoutMs`. Keeps the worst answer time and the failed probes (no answer in time, or not 2xx)
 * since the last {@link take}.
 */
export class LivenessProber {
  #worstMs = 0;
  #failed = 0;
  #running = true;
  readonly #loop: Promise<void>;

  constructor(baseUrl: string, periodMs = 100, timeoutMs = 10_000) {
    this.#loop = (async () => {
      while (this.#running) {
        const started = performance.now();
        const ok = await fetch(`${baseUrl}/v2/health/live`, { signal: AbortSignal.timeout(timeoutMs) }).then(
          (r) => r.arrayBuffer().then(() => r.ok),
          () => false,
        );
        this.#worstMs = Math.max(this.#worstMs, performance.now() - started);
        if (!ok) this.#failed++;
        await new Promise((r) => setTimeout(r, periodMs));
      }
    })();
  }

  /** The worst answer time (ms) and the failed probes since the last take, and starts counting anew. */
  take(): { worstMs: number; failed: number } {
    const taken = { worstMs: this.#worstMs, failed: this.#failed };
    this.#worstMs = 0;
    this.#failed = 0;
    return taken;
  }

  /** Stops after the probe in progress. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }
}
