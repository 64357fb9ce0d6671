import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';

/**
 * The probe loop, in a process of its own, as a kubelet is. It ran on a worker thread of the load generator until
 * 2026-12-07, started afresh for each phase of a bench: in the hostile mix its probes took up to 200-550 ms where a
 * warm prober process beside it, at the same priority, saw at most 51-56 ms in the same run, and the server had
 * answered every probe within 6 ms of reading it. What was counted was the prober's own cold start (its first
 * request: code not yet compiled, a new connection, on a machine the attack had just made busy) and the generator's
 * stalls. Now the first {@link WARM_UP} probes are not counted, and a bench keeps one prober for its whole run.
 * Keep-alive `node:http`, one probe at a time; the worst time and the failures since the last `take` are sent when
 * asked, once the probe in flight (if any) has its answer. It exits when the bench disconnects.
 */
const WARM_UP = 3;
const probeLoop = `
const http = require('node:http');
const [url, periodMs, timeoutMs, warmUp] = process.argv.slice(1).map((a, i) => (i === 0 ? a : Number(a)));
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let worstMs = 0;
let failed = 0;
let inFlight = false;
// a take waits for the probe in flight, so that a slow probe counts in the phase it began in
let taken = false;
const report = () => {
  process.send({ worstMs, failed });
  worstMs = 0;
  failed = 0;
};
process.on('message', (m) => {
  if (m !== 'take') return;
  if (inFlight) taken = true;
  else report();
});
process.on('disconnect', () => process.exit(0)); // the bench is gone (ended, or crashed)
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
  for (let i = 0; i < warmUp; i++) await probe();
  process.send('warm');
  for (;;) {
    const started = performance.now();
    inFlight = true;
    const ok = await probe();
    inFlight = false;
    worstMs = Math.max(worstMs, performance.now() - started);
    if (!ok) failed++;
    if (taken) {
      taken = false;
      report();
    }
    await new Promise((r) => setTimeout(r, periodMs));
  }
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
  /** The asks in progress, one at a time: the prober's answers carry no request id. */
  #asks: Promise<unknown> = Promise.resolve();
  #stopped: Promise<Probed> | undefined;
  /** What the stop found, returned by the next take after it. */
  #final: Probed | undefined;
  /** Rejects when the prober process exits, for anyone still waiting for its answer. */
  readonly #exited: Promise<never>;

  private constructor(child: ChildProcess) {
    this.#child = child;
    // a prober that broke says so, rather than crashing the bench or counting nothing silently
    this.#child.on('error', (err) => (this.#error ??= err));
    this.#exited = once(child, 'exit').then(() => {
      throw new Error(`the liveness prober exited${this.#error ? `: ${this.#error.message}` : ''}`);
    });
    this.#exited.catch(() => {}); // only a waiting caller is told
  }

  /** The prober's next message. */
  async #next<T>(): Promise<T> {
    const [message] = (await Promise.race([once(this.#child, 'message'), this.#exited])) as [T];
    return message;
  }

  /** Asks for the counts, after any ask in progress. */
  #ask(): Promise<Probed> {
    const answer = this.#asks.then(() => {
      const next = this.#next<Probed>();
      this.#child.send('take');
      return next;
    });
    this.#asks = answer.catch(() => {});
    return answer;
  }

  /** Starts probing; settles once the prober is warm (its first probes answered, not counted). */
  static async start(baseUrl: string, periodMs = 100, timeoutMs = 10_000): Promise<LivenessProber> {
    const args = [`${baseUrl}/v2/health/live`, periodMs, timeoutMs, WARM_UP].map(String);
    const child = spawn(process.execPath, ['-e', probeLoop, ...args], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const prober = new LivenessProber(child);
    if ((await prober.#next()) !== 'warm') throw new Error('the liveness prober did not say it was warm');
    return prober;
  }

  /**
   * The worst answer time and the failed probes since the last take (a probe in flight counted once it is
   * answered), and starts counting anew.
   */
  async take(): Promise<Probed> {
    if (this.#stopped === undefined) return this.#ask();
    const final = this.#final ?? (await this.#stopped);
    this.#final = { worstMs: 0, failed: 0 };
    return final;
  }

  /** Stops once the probe in flight is answered; the next take returns what was counted until then. */
  async stop(): Promise<void> {
    this.#stopped ??= (async () => {
      try {
        this.#final = await this.#ask();
        return this.#final;
      } finally {
        this.#child.kill();
        await this.#exited.catch(() => {});
      }
    })();
    await this.#stopped;
  }
}
