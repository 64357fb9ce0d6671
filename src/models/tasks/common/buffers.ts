import { readsSharedMemory, type HostTensor, type SessionRunner } from '../../session.js';

/**
 * Stacks equal-shaped float rows into one batch tensor [n, ...rowDims], padding with zero rows up to `batch`
 * (for models whose batch axis is fixed). Rows of another shape are a bug: the batcher keys batches by shape.
 */
export function stackRows(rows: readonly Float32Array[], rowDims: readonly number[], batch = rows.length): HostTensor {
  const size = rowDims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(size * batch);
  rows.forEach((r, i) => {
    if (r.length !== size) throw new Error(`row ${i} has ${r.length} values, expected ${size}; this is a bug`);
    data.set(r, i * size);
  });
  return { type: 'float32', data, dims: [batch, ...rowDims] };
}

/** Splits the first `n` rows of a batch output into views (no copy), one per request. */
export function splitRows(t: HostTensor, n: number): { data: Float32Array; dims: number[] }[] {
  if (!(t.data instanceof Float32Array)) throw new Error(`expected a float32 output, got ${t.type}`);
  const [batch, ...rowDims] = t.dims;
  if (batch < n) throw new Error(`output has ${batch} rows for ${n} requests; this is a bug`);
  const size = rowDims.reduce((a, b) => a * b, 1);
  const data = t.data;
  return Array.from({ length: n }, (_, i) => ({ data: data.subarray(i * size, (i + 1) * size), dims: rowDims }));
}

/**
 * Reusable batch input buffers for one model. Without them every batch allocates a fresh tensor outside the JS heap,
 * and at a few hundred requests per second that external memory forces a 10-20 ms mark-compact of the event loop's
 * heap about once a second. For a session on worker threads they are shared memory, lent as they are (the worker
 * copies a batch off the loop: see session-pool.ts), so the loop copies each row once, into the batch; for a session
 * on the loop, ordinary memory. A batch of one in the session's kind of memory needs no copy: its row is the batch.
 * Each buffer grows to the largest batch it has served; a smaller one (fewer rows, or narrower rows: a recognizer's
 * width buckets) uses its start, so one buffer serves each batch in flight whatever its shape.
 */
export class BatchBuffers {
  readonly #free: Float32Array[] = [];

  readonly #shared: boolean;

  /**
   * @param capacity values in the largest batch (rows x values per row)
   * @param session the session the batches are for: shared memory where it reads it (see readsSharedMemory)
   */
  constructor(
    private readonly capacity: number,
    session?: SessionRunner,
  ) {
    this.#shared = session !== undefined && readsSharedMemory(session);
  }

  /**
   * Stacks `rows` into a batch of shape `dims` (zero rows pad a fixed batch axis), runs `fn` on it, and takes the
   * buffer back once `fn` has settled (onnxruntime reads the memory during the run, so not before).
   */
  async with<T>(rows: readonly Float32Array[], dims: readonly number[], fn: (t: HostTensor) => Promise<T>): Promise<T> {
    const [batch, ...rowDims] = dims;
    const size = rowDims.reduce((a, b) => a * b, 1);
    // a batch of one is its row when the row is the kind of memory the session reads as it is: shared for a session
    // on workers (see RowSlots), ordinary for one on the loop. Otherwise it is copied into a pooled buffer: cheaper
    // than the copy the session would make (a new buffer each run: 20 MB for an OCR page, most of it page faults,
    // and external memory the loop's collector then has to find)
    // (or when it is larger than the pool's buffers: the one-off buffer would be a copy more)
    const row = rows[0];
    if (
      rows.length === 1 &&
      batch === 1 &&
      row.length === size &&
      (isShared(row) === this.#shared || size > this.capacity)
    )
      return fn({ type: 'float32', data: row, dims: [...dims] });
    return this.lend(size * batch, (data) => {
      rows.forEach((r, i) => {
        if (r.length !== size) throw new Error(`row ${i} has ${r.length} values, expected ${size}; this is a bug`);
        data.set(r, i * size);
      });
      data.fill(0, rows.length * size);
      return fn({ type: 'float32', data, dims: [...dims] });
    });
  }

  /**
   * Lends `fn` a buffer of `values` values (its contents are what the last borrower left) and takes it back once `fn`
   * has settled. A request larger than the capacity gets an ordinary buffer of its own: V8 does not count shared
   * memory, so a one-off shared buffer would stay until both threads' collectors happen to run.
   */
  async lend<T>(values: number, fn: (data: Float32Array) => Promise<T>): Promise<T> {
    if (values > this.capacity) return fn(new Float32Array(values));
    let buffer = this.#free.pop();
    // a buffer grows (doubling, up to the capacity) to the largest batch it has served rather than starting at the
    // largest the model allows (4.7 MB for voice-activity)
    if (!buffer || buffer.length < values) {
      const size = Math.min(this.capacity, Math.max(values, 2 * (buffer?.length ?? 0)));
      buffer = new Float32Array(this.#shared ? new SharedArrayBuffer(4 * size) : new ArrayBuffer(4 * size));
    }
    try {
      return await fn(buffer.subarray(0, values));
    } finally {
      this.#free.push(buffer);
    }
  }
}

const isShared = (a: ArrayBufferView) => a.buffer instanceof SharedArrayBuffer;

/** The most memory one model's row slots hold (they are kept for the next requests once made). */
export const ROW_SLOT_BYTES = 16 * 2 ** 20;

/**
 * Slots for prepared rows (an image's tensor, a recording's samples), in shared memory reused from request to
 * request. A row written into a slot, by a task worker or on the loop, reaches its batch without a new buffer on the
 * event loop: each new buffer there is external memory (about 110 KB for a text line, 360 KB for 5 s of audio), and
 * at a thousand requests per second it forced a mark-compact of the loop's heap several times a second; V8 does not
 * count shared memory. A slot is taken before the row is prepared and given back when its request is done (the
 * batch that read it has ended); when every slot is lent, rows get ordinary buffers, as before.
 *
 * Rows of one size (an image model's) get slots of that size. Rows of varying size (audio) ask for what they need
 * and get a slot of the next power of two, at least an eighth of {@link values} and at most {@link values}, or a
 * larger free one. When no free slot fits and no more may be made, the smallest free slots are dropped to make room:
 * the sizes kept follow the sizes asked for, and a burst of small rows cannot keep larger ones out for good.
 */
export class RowSlots {
  /** Free slots by size (values). */
  readonly #free = new Map<number, Float32Array[]>();
  #made = 0;
  #bytes = 0;

  /**
   * @param values values in the largest row worth a slot
   * @param rowsInFlight the most rows worth a slot (the model's queue and its batches in flight); fewer when that
   *   many would hold more than {@link ROW_SLOT_BYTES}
   */
  constructor(
    readonly values: number,
    private readonly rowsInFlight: number,
  ) {}

  /**
   * A free slot of at least `values` values, or undefined when none is free and no more may be made (or the row is
   * larger than {@link values}). The slot may be longer than asked: its first `values` are the row's.
   */
  take(values = this.values): Float32Array | undefined {
    if (!(values > 0 && values <= this.values)) return undefined;
    const size = Math.min(this.values, 2 ** Math.ceil(Math.log2(Math.max(values, this.values / 8))));
    let fit: number | undefined;
    for (const [free, list] of this.#free)
      if (free >= size && list.length > 0 && (fit === undefined || free < fit)) fit = free;
    if (fit !== undefined) return this.#free.get(fit)!.pop();
    // a slot is kept once made, within both caps; free ones (all too small for this row) make room for it, the
    // smallest first, when dropping them is enough
    const over = (made: number, bytes: number) => made >= this.rowsInFlight || bytes + 4 * size > ROW_SLOT_BYTES;
    if (over(this.#made, this.#bytes)) {
      const free = [...this.#free].flatMap(([n, list]) => list.map(() => n)).sort((a, b) => a - b);
      let [made, bytes, drop] = [this.#made, this.#bytes, 0];
      for (; drop < free.length && over(made, bytes); drop++) [made, bytes] = [made - 1, bytes - 4 * free[drop]];
      if (over(made, bytes)) return undefined;
      for (const n of free.slice(0, drop)) this.#free.get(n)!.pop();
      [this.#made, this.#bytes] = [made, bytes];
    }
    this.#made++;
    this.#bytes += 4 * size;
    return new Float32Array(new SharedArrayBuffer(4 * size));
  }

  /** {@link take}, with its give-back as a function that may be called more than once (a no-op without a slot). */
  lend(values = this.values): { slot: Float32Array | undefined; release: () => void } {
    const slot = this.take(values);
    if (slot === undefined) return { slot, release: () => {} };
    let given = false;
    return {
      slot,
      release: () => {
        if (given) return;
        given = true;
        this.give(slot);
      },
    };
  }

  /** Takes a slot back: nothing may read or write it any more. */
  give(slot: Float32Array): void {
    const list = this.#free.get(slot.length);
    if (list) list.push(slot);
    else this.#free.set(slot.length, [slot]);
  }
}

/**
 * Row slots for a model whose rows worth a slot hold at most `values` values (a larger row gets an ordinary buffer),
 * as many as the manifest's queue and batches in flight hold (rows beyond them get ordinary buffers too).
 */
export function rowSlotsFor(
  values: number,
  batching: { readonly maxQueueSize: number; readonly maxBatchSize: number; readonly maxInFlightBatches: number },
): RowSlots {
  return new RowSlots(values, batching.maxQueueSize + batching.maxBatchSize * batching.maxInFlightBatches);
}
