/** Queue options of one step row (the batcher's deadline and cancellation). */
export interface SequenceStepOptions {
  readonly deadline: number;
  readonly signal?: AbortSignal;
}

/** Queues one step's rows together (the batcher's `submitAll`); one promise per row, in order. */
export type StepSubmitter<Row, Out> = (
  rows: readonly { readonly row: Row; readonly opts: SequenceStepOptions }[],
) => Promise<Out>[];

/**
 * Gives the next row of a sequence from the output of its previous row (`undefined` for the first), or
 * `undefined` when the sequence is done.
 */
export type NextStep<Row, Out> = (previous: Out | undefined) => Row | undefined;

interface Active<Row, Out> {
  row: Row;
  readonly next: NextStep<Row, Out>;
  readonly opts: SequenceStepOptions;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/**
 * A sequence batcher in the spirit of Triton's (`oldest` strategy): requests whose rows depend on the previous
 * row's output (a recurrent model's state) are run step by step, and each step stacks the current row of every
 * active sequence into one submission, so concurrent sequences share every batch while each one's rows stay in
 * order. A sequence that arrives while a step computes joins the next step; one that finishes, expires or is
 * cancelled leaves, without holding the others back.
 *
 * Knows nothing of HTTP or ONNX: it only needs a submitter that queues a step's rows before the batcher cuts
 * (one `submit` after another would send the first row alone whenever the batcher is idle).
 */
export class SequenceScheduler<Row, Out> {
  #active: Active<Row, Out>[] = [];
  #looping = false;

  constructor(private readonly submit: StepSubmitter<Row, Out>) {}

  /** Sequences in progress. */
  get active(): number {
    return this.#active.length;
  }

  /**
   * Runs one sequence to its end. Resolves when `next` returns undefined; rejects with the first error of one of
   * its steps (the batcher's refusal, the runner's failure, or an error thrown by `next`).
   */
  run(next: NextStep<Row, Out>, opts: SequenceStepOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const row = next(undefined);
      if (row === undefined) return resolve();
      this.#active.push({ row, next, opts, resolve, reject });
      if (!this.#looping) void this.#loop();
    });
  }

  /** The one loop per scheduler: one step of every active sequence per iteration. */
  async #loop(): Promise<void> {
    this.#looping = true;
    try {
      // start on the next microtask, so that sequences arriving in the same tick share the first step
      await Promise.resolve();
      while (this.#active.length > 0) {
        const step = this.#active;
        this.#active = []; // sequences arriving during the step wait here for the next one
        let results: PromiseSettledResult<Out>[];
        try {
          results = await Promise.allSettled(this.submit(step.map((s) => ({ row: s.row, opts: s.opts }))));
        } catch (err) {
          results = step.map(() => ({ status: 'rejected', reason: err }));
        }
        const kept: Active<Row, Out>[] = [];
        results.forEach((r, i) => {
          const s = step[i];
          if (r.status === 'rejected') return s.reject(r.reason);
          let row: Row | undefined;
          try {
            row = s.next(r.value);
          } catch (err) {
            return s.reject(err);
          }
          if (row === undefined) return s.resolve();
          s.row = row;
          kept.push(s);
        });
        this.#active = [...kept, ...this.#active];
        // a recording is thousands of steps: other requests get the event loop between two of them
        if (this.#active.length > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.#looping = false;
    }
  }
}
