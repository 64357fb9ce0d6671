/** How long to repeat a measured step. */
export interface Budget {
  /** Unrecorded runs first (arena growth, kernel selection, JIT). */
  readonly warmupIterations: number;
  /** Recorded runs: at least this many... */
  readonly minIterations: number;
  /** ...and for at least this many milliseconds. */
  readonly minMs: number;
}

/** What {@link repeatTimed} recorded. */
export interface Timed {
  readonly iterations: number;
  /** Wall time of the recorded runs, loop overhead included (the basis of throughput figures). */
  readonly elapsedMs: number;
  /** `phases[i]` holds the i-th duration each step reported, one entry per recorded run. */
  readonly phases: number[][];
}

/**
 * Runs `step` back to back: `budget.warmupIterations` times unrecorded, then until both minimums of `budget` are
 * met. Each call returns its own phase durations in milliseconds (e.g. `[preprocessMs, runMs]`), so a step can
 * time parts of itself; a step with one phase returns `[totalMs]`.
 */
export async function repeatTimed(step: () => Promise<readonly number[]>, budget: Budget): Promise<Timed> {
  for (let i = 0; i < budget.warmupIterations; i++) await step();
  const phases: number[][] = [];
  const start = performance.now();
  let iterations = 0;
  while (iterations < budget.minIterations || performance.now() - start < budget.minMs) {
    const durations = await step();
    durations.forEach((ms, i) => (phases[i] ??= []).push(ms));
    iterations++;
  }
  return { iterations, elapsedMs: performance.now() - start, phases };
}
