import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

// On a small machine any other process (a test run, a type checker) lands straight in the numbers. These helpers
// measure how much CPU the rest of the machine used during a measurement, from /proc (Linux; elsewhere they
// report NaN and never wait or retry), and repeat a measurement that others disturbed.

/** Clock ticks per second of /proc/stat and /proc/<pid>/stat: USER_HZ, 100 on every Linux architecture. */
const TICKS_PER_S = 100;

/** Busy CPU ticks of the whole machine and of our own processes, at one moment. */
interface CpuReading {
  readonly atMs: number;
  readonly machine: number;
  readonly own: number;
}

/** Ticks all cores spent busy (user, nice, system, irq, softirq, steal) since boot, from /proc/stat. */
function machineBusyTicks(): number {
  const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return user + nice + system + irq + softirq + steal;
}

/** User + system ticks of one process, all its threads included; 0 once it has gone. */
function processTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd on; comm may hold spaces
    return Number(fields[11]) + Number(fields[12]); // utime (14th) and stime (15th)
  } catch {
    return 0;
  }
}

function readCpu(pids: readonly number[]): CpuReading | undefined {
  try {
    return {
      atMs: performance.now(),
      machine: machineBusyTicks(),
      own: pids.reduce((sum, pid) => sum + processTicks(pid), 0),
    };
  } catch {
    return undefined; // no /proc
  }
}

/** Percent of one core that processes other than ours used between two readings (100 = one core fully busy). */
function othersPct(a: CpuReading | undefined, b: CpuReading | undefined): number {
  if (!a || !b) return NaN;
  const others = b.machine - a.machine - (b.own - a.own);
  return Math.max(0, (100 * others) / TICKS_PER_S / ((b.atMs - a.atMs) / 1000));
}

/** How {@link measureQuietly} waits and retries. */
export interface QuietOptions {
  /** Others may use up to this percent of one core during a measurement. */
  readonly maxOthersPct: number;
  /** Measurements made at most, the disturbed ones included. */
  readonly attempts: number;
  /** Longest wait for a quiet machine before measuring anyway. */
  readonly maxWaitMs: number;
  readonly log: (message: string) => void;
}

/** A result, with how busy the rest of the machine was while it was measured and how many tries were made. */
export type Watched<T> = T & {
  /** Percent of one core used by other processes during the measurement kept; NaN where /proc is missing. */
  readonly othersCpuPct: number;
  /** Measurements made; more than 1 when others disturbed the first. */
  readonly attempts: number;
};

/** Waits until others use less than `maxOthersPct` over a one-second window, or `maxWaitMs` passed. */
async function waitQuiet(pids: readonly number[], opts: QuietOptions): Promise<void> {
  const deadline = performance.now() + opts.maxWaitMs;
  for (let first = true; performance.now() < deadline; first = false) {
    const a = readCpu(pids);
    await sleep(1000);
    const pct = othersPct(a, readCpu(pids));
    if (!(pct > opts.maxOthersPct)) return; // also ends on NaN
    if (first) opts.log(`waiting for a quiet machine: other processes use ${pct.toFixed(0)} % of a core`);
  }
  opts.log(`the machine did not get quiet in ${opts.maxWaitMs / 1000} s; measuring anyway`);
}

/**
 * Runs `measure` once the machine is quiet, and again (up to `opts.attempts` times in all) when other processes
 * used more than `opts.maxOthersPct` of a core meanwhile; returns the least disturbed attempt.
 * @param pids our own processes (this one, a server under test), whose CPU use is expected
 */
export async function measureQuietly<T extends object>(
  label: string,
  pids: readonly number[],
  measure: () => Promise<T>,
  opts: QuietOptions,
): Promise<Watched<T>> {
  let best: { value: T; othersCpuPct: number } | undefined;
  let attempts = 0;
  while (attempts < opts.attempts) {
    attempts++;
    await waitQuiet(pids, opts);
    const before = readCpu(pids);
    const value = await measure();
    const othersCpuPct = othersPct(before, readCpu(pids));
    if (!best || othersCpuPct < best.othersCpuPct) best = { value, othersCpuPct };
    if (!(othersCpuPct > opts.maxOthersPct)) break;
    opts.log(
      `${label}: other processes used ${othersCpuPct.toFixed(0)} % of a core${attempts < opts.attempts ? ', measuring again' : ''}`,
    );
  }
  return { ...best!.value, othersCpuPct: best!.othersCpuPct, attempts };
}

/** Disturbance of several measurements pooled into one result: the worst `othersCpuPct`, the total `attempts`. */
export function disturbance(measurements: readonly Watched<object>[]): { othersCpuPct: number; attempts: number } {
  return {
    othersCpuPct: Math.max(...measurements.map((m) => m.othersCpuPct)),
    attempts: measurements.reduce((sum, m) => sum + m.attempts, 0),
  };
}
