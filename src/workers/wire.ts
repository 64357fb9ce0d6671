import type { MessagePort } from 'node:worker_threads';
import { Errors } from '../errors.js';

// What crosses between the event loop and a task worker besides the ops' own arguments and results.

/** Main thread to worker: run one op. */
export interface OpRequest {
  readonly id: number;
  readonly op: string;
  readonly args: unknown;
}

/** Worker to main thread: an op's result or its error. */
export type OpReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: WireError };

/** An error as it crosses a thread: client errors keep their code, so they are answered as if thrown here. */
export interface WireError {
  readonly message: string;
  readonly code?: string;
  readonly stack?: string;
}

export function toWire(err: unknown): WireError {
  if (!(err instanceof Error)) return { message: String(err) };
  const code = (err as { code?: unknown }).code;
  return { message: err.message, code: typeof code === 'string' ? code : undefined, stack: err.stack };
}

let byCode: Map<string, new () => Error> | undefined;

/** The error a worker threw, rebuilt: one of {@link Errors} with its code and message, or a plain Error (a 500). */
export function fromWire(w: WireError): Error {
  byCode ??= new Map(
    Object.values(Errors).map((E) => [(new E() as Error & { code: string }).code, E as new () => Error]),
  );
  const E = w.code === undefined ? undefined : byCode.get(w.code);
  const err = E ? new E() : new Error(w.message);
  err.message = w.message;
  if (w.stack) err.stack = w.stack;
  return err;
}

/**
 * The buffers of the typed arrays in `value` (searched two levels deep and through arrays) that can move to another
 * thread without a copy: each array must span its whole buffer, so that nothing else loses its memory.
 */
export function transferables(value: unknown, depth = 3, found = new Set<ArrayBuffer>()): ArrayBuffer[] {
  if (ArrayBuffer.isView(value)) {
    const b = value.buffer;
    if (b instanceof ArrayBuffer && value.byteOffset === 0 && value.byteLength === b.byteLength) found.add(b);
  } else if (depth > 0 && typeof value === 'object' && value !== null) {
    for (const v of Array.isArray(value) ? value : Object.values(value)) transferables(v, depth - 1, found);
  }
  return [...found];
}

/** Buffers at least this large move to the event loop instead of being copied (see {@link postToLoop}). */
export const MOVE_BYTES = 1 << 20;

/**
 * Posts `msg` to the event loop, its typed arrays copied, except those of {@link MOVE_BYTES} or more, which move.
 * A buffer moved into the loop's isolate counts there as external memory that only a mark-compact gives back: V8
 * starts one for about every 64 MB received, 10-20 ms stops of the loop about once a second under load. A copy is a
 * fresh buffer of the loop's own, which a young-generation scavenge frees when its request is done with it quickly
 * (bench/results/worker-gc.md). But a copy lives twice until both threads collect: for a large buffer (a page's
 * tensor, ten minutes of audio: tens of MB) that doubles what the memory budget charged, so those move. Throws
 * only when `msg` cannot be copied either.
 */
export function postToLoop(port: MessagePort, msg: unknown): void {
  const large = transferables(msg, 4).filter((b) => b.byteLength >= MOVE_BYTES);
  try {
    port.postMessage(msg, large);
  } catch (err) {
    if (large.length === 0) throw err;
    port.postMessage(msg); // a buffer the runtime will not let go of (one a native addon owns) is copied instead
  }
}
