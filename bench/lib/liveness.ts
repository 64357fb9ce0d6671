import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';

/**
 * The probe loop, in a process of its own, as a kubelet is. It ran on a worker thread of the load generator until
 * 2026-12-07: in the hostile mix that thread's probes took up to 300-550 ms where a prober process beside it, at the
 * same priority, saw at most 51 ms in the same run. The generator's own stalls (it writes 320 MB of stalled bodies
 * at once) were counted as the server's. Keep-alive `node:http`, one probe at a time; the worst time and the failures
 * since the last `take` are sent when asked.
 */
const probeLoop = `
const http = require('node:http');
const [url, periodMs, timeoutMs] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let worstMs = 0;
let failed = 0;
let running = true;
process.on('message', (m) => {
  if (m === 'stop') running = false;
  else if (m === 'take') {
    process.send({ worstMs, failed });
    worstMs = 0;
    failed = 0;
  }
});
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
    worstMs = Math.max(worstMs, performance.now() - started);
    if (!ok) failed++;
    await new Promise((r) => setTimeout(r, periodMs));
  }
  agent.destroy();
  process.send({ worstMs, failed }, () => process.disconnect());
})();
`;

/** What the prober saw since the last take. */
export interface Probed {
  /** The worst answer time (ms). */
  worstMs: number;
  /** Probes that got no 2xx answer within the time limit. */
  failed: number;
}

/**
 * Probes `GET /v2/health/live` as an orchestrator would (more often): one probe at a time, `periodMs` apart, each
 * given up after `timeoutMs`, from a process of its own (see {@link probeLoop}). Keeps the worst answer time and the
 * failed probes since the last {@link take}.
 */
export class LivenessProber {
  readonly #child: ChildProcess;
  #error: Error | undefined;
  #stopped: Promise<Probed> | undefined;
  /** What the last stop found, returned by a take after it. */
  #final: Probed | undefined;

  constructor(baseUrl: string, periodMs = 100, timeoutMs = 10_000) {
    const args = [`${baseUrl}/v2/health/live`, String(periodMs), String(timeoutMs)];
    this.#child = spawn(process.execPath, ['-e', probeLoop, ...args], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    // a prober that broke says so when stopped, rather than crashing the bench or counting nothing silently
    this.#child.on('error', (err) => (this.#error ??= err));
  }

  /** The worst answer time and the failed probes since the last take, and starts counting anew. */
  async take(): Promise<Probed> {
    if (this.#final) {
      const final = this.#final;
      this.#final = { worstMs: 0, failed: 0 };
      return final;
    }
    const answer = once(this.#child, 'message') as Promise<[Probed]>;
    this.#child.send('take');
    return (await answer)[0];
  }

  /** Stops after the probe in progress; a take after this returns what was counted until then. */
  async stop(): Promise<void> {
    this.#stopped ??= (async () => {
      const answer = once(this.#child, 'message') as Promise<[Probed]>;
      const exited = once(this.#child, 'exit');
      this.#child.send('stop');
      const [final] = await answer;
      await exited;
      return final;
    })();
    this.#final ??= await this.#stopped;
    if (this.#error) throw new Error(`the liveness prober failed: ${this.#error.message}`, { cause: this.#error });
  }
}
