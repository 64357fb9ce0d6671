import { createHash } from 'node:crypto';
import type { HostTensor } from './session.js';

/** Deaths one input may cause: from then on it is refused without running, and its deaths are not the model's. */
const MAX_DEATHS_PER_INPUT = 2;
/** Inputs remembered (the least recently seen forgotten first). */
const CAPACITY = 256;
/** An input not seen again for this long is forgotten (and while none is remembered, nothing is hashed). */
const FORGET_AFTER_MS = 60 * 60_000;

/**
 * Inputs that killed session workers, remembered by a digest of one row each (a batch is several requests'
 * rows: a poisoned row must be recognized whatever it was stacked with). Deaths are counted only for runs of one
 * row: a failed batch is retried row by row, and that retry names the culprit. Kept per model by its repository,
 * across reloads, so a reload does not forget what killed the previous version.
 */
export class PoisonedInputs {
  readonly #deaths = new Map<string, { count: number; seenAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** The deaths of the worst known row of `feeds` when it has killed enough to be refused, else undefined. */
  refused(feeds: Record<string, HostTensor>): number | undefined {
    this.#forgetOld();
    if (this.#deaths.size === 0) return undefined; // the usual case: nothing to hash
    for (const key of rowDigests(feeds)) {
      const known = this.#deaths.get(key);
      if (known && known.count >= MAX_DEATHS_PER_INPUT) return known.count;
    }
    return undefined;
  }

  /**
   * A worker died running `feeds`. Counted when they are one row; true when that row has now killed enough to be
   * to blame rather than the model.
   */
  died(feeds: Record<string, HostTensor>): boolean {
    const digests = rowDigests(feeds);
    if (digests.length !== 1) return false;
    const [key] = digests;
    const count = (this.#deaths.get(key)?.count ?? 0) + 1;
    this.#deaths.delete(key); // re-inserted as the newest
    this.#deaths.set(key, { count, seenAt: this.now() });
    if (this.#deaths.size > CAPACITY) this.#deaths.delete(this.#deaths.keys().next().value!);
    return count >= MAX_DEATHS_PER_INPUT;
  }

  #forgetOld(): void {
    const before = this.now() - FORGET_AFTER_MS;
    for (const [key, { seenAt }] of this.#deaths) if (seenAt < before) this.#deaths.delete(key);
  }
}

/**
 * One digest per row of `feeds` (names, types, row shapes and bytes), the rows being the first axis when every feed
 * has the same first dimension; otherwise the feeds are one row.
 */
function rowDigests(feeds: Record<string, HostTensor>): string[] {
  const names = Object.keys(feeds).sort();
  const first = names.map((n) => feeds[n].dims[0]);
  const batched = first.length > 0 && first.every((d) => d !== undefined && d === first[0] && d > 0);
  const rows = batched ? first[0]! : 1;
  return Array.from({ length: rows }, (_, r) => {
    const hash = createHash('sha256');
    for (const name of names) {
      const t = feeds[name];
      const rowBytes = t.data.byteLength / rows;
      hash.update(`${name}\0${t.type}\0${(batched ? t.dims.slice(1) : t.dims).join(',')}\0`);
      hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset + r * rowBytes, rowBytes));
    }
    return hash.digest('base64');
  });
}
