import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';

// The socket side of a request: uploads are timed by the socket's idle timeout; once a body is in, the request may
// compute quietly (its own deadline and the handler watchdog bound it).

interface TimedSocket {
  setTimeout(ms: number): void;
  destroyed?: boolean;
}

/** The request's socket, when it has one that can be timed (inject() has none). */
export function socketOf(req: Pick<FastifyRequest, 'raw'>): TimedSocket | undefined {
  const socket = req.raw.socket as Partial<TimedSocket> | undefined;
  return typeof socket?.setTimeout === 'function' && !socket.destroyed ? (socket as TimedSocket) : undefined;
}

/** Multipart bodies are read by the handler, not before it: their upload is still going on when it starts. */
export function isStreamedBody(req: Pick<FastifyRequest, 'headers'>): boolean {
  return /^multipart\//i.test(req.headers['content-type'] ?? '');
}

/** The whole body is in: the socket's idle timeout stops counting until the connection's next request. */
export function bodyReceived(req: Pick<FastifyRequest, 'raw'>): void {
  socketOf(req)?.setTimeout(0);
}

/**
 * Answers at least this large are timed while they are sent (see {@link timeAnswer}); a smaller one fits in the
 * socket's buffers, so it is out (and its request's memory given back) whether or not its client reads it.
 */
const TIMED_ANSWER_BYTES = 64 * 1024;

/** Whether an answer's payload is one {@link timeAnswer} should time: a large body, or a stream. */
export function isLargeAnswer(payload: unknown): boolean {
  if (typeof payload === 'string') return payload.length >= TIMED_ANSWER_BYTES / 4; // up to 4 bytes a character
  if (payload instanceof Uint8Array) return payload.length >= TIMED_ANSWER_BYTES;
  return payload !== null && typeof payload === 'object'; // a stream
}

/**
 * Times a large answer to a request with a body, which holds that request's memory until it is sent: a client that
 * stops reading it is cut once the socket has been idle for `ms` (the answer fills the socket's buffers, then
 * nothing moves), which gives the memory back. Node counts a write in progress as activity on a TCP socket, so a
 * client reading slowly but steadily is not cut; on a TLS socket it is not seen, and an answer that takes longer
 * than about `ms` to drain is cut. Once the answer is out, Node times the keep-alive wait; if a pipelined request
 * is already computing on the connection, the timer is stopped, as {@link bodyReceived} does.
 */
export function timeAnswer(req: Pick<FastifyRequest, 'raw'>, reply: FastifyReply, ms: number): void {
  const socket = socketOf(req);
  if (socket === undefined) return;
  socket.setTimeout(ms);
  reply.raw.once('finish', untimeIfNextComputes);
}

/** (A function shared by every answer, not a closure per request: see Holdings.whenAnswered.) */
function untimeIfNextComputes(this: ServerResponse): void {
  // (the request's socket: Node has detached the response's by now)
  const socket = this.req.socket as (TimedSocket & { parser?: { incoming?: IncomingMessage | null } }) | null;
  const next = socket?.parser?.incoming;
  if (socket && next && next !== this.req && next.complete) socket.setTimeout(0);
}

/** Body bytes the event loop passes on in one turn before the bodies being read wait for the next. */
const TURN_BYTES = 2 ** 20;
/** Bytes passed on since the turn began. */
let taken = 0;
/** Readers waiting for a turn, first come first served, each with the chunk it holds. */
const waiting: { bytes: number; go: () => void }[] = [];
let turnEnds = false;

const endTurnSoon = () => {
  if (turnEnds) return;
  turnEnds = true;
  setImmediate(endTurn);
};

/** A new turn: the waiting readers go on in order, within its allowance; the rest wait for the next. */
function endTurn(): void {
  turnEnds = false;
  taken = 0;
  while (waiting.length > 0 && taken < TURN_BYTES) {
    const next = waiting.shift()!;
    taken += next.bytes;
    next.go();
  }
  if (taken > 0) endTurnSoon();
}

/**
 * Asks to pass on a chunk of `bytes` of a request body in this turn of the event loop. Undefined when it may go now;
 * once the turn has passed on {@link TURN_BYTES} (or readers are already waiting), a promise that settles when the
 * chunk's turn comes, which the reader waits for before it passes the chunk on (its stream pushes back on the
 * socket meanwhile). A socket read gives up to 32 chunks of 64 KiB at once, so forty 8 MiB uploads arriving together
 * made turns of tens of milliseconds, in which a health probe or a small request waited
 * (`bench/results/hostile-load.md`). Now the loop passes on about 1 MiB of bodies (at most one chunk more) between
 * turns, however many uploads arrive: they take turns in arrival order. A lone 8 MiB upload waits about 8 times.
 */
export function takeTurn(bytes: number): Promise<void> | undefined {
  endTurnSoon();
  if (waiting.length === 0 && taken < TURN_BYTES) {
    taken += bytes;
    return undefined;
  }
  return new Promise((go) => waiting.push({ bytes, go }));
}

/** A watched request; its references are dropped once it is answered. */
interface Watch {
  req: FastifyRequest | undefined;
  reply: FastifyReply | undefined;
  readonly deadline: number;
}

/** Answered entries the watchdog may hold behind a request in progress before it compacts its list. */
const COMPACT_AT = 1024;

/** Where a reply keeps its {@link Watch}, so that forgetting it needs no lookup. */
const watchOf = Symbol('muon.watch');
type WatchedReply = FastifyReply & { [watchOf]?: Watch };

/**
 * Answers the requests whose handler has not answered within `timeoutMs`, whatever the handler waits for. One timer
 * sweeps them all, at an eighth of the limit (at most every second), rather than a timer per request (which costs a
 * small request a tenth of its answer): a request is answered up to one sweep period after its limit.
 *
 * The watched requests are an array in start order (which is deadline order), each answered one emptied at once and
 * dropped once it reaches the head, not a Map: a long-lived Map that each request is added to and deleted from kept
 * the requests' whole object graphs alive through the event loop's minor GCs (see `Batcher`'s signals). Behind a
 * long request the emptied entries are compacted away once they are most of the array, so that it stays within
 * about twice the requests in progress.
 */
export class HandlerWatchdog {
  #watched: Watch[] = [];
  /** Entries of {@link #watched} whose request was answered. */
  #emptied = 0;
  readonly #periodMs: number;
  #timer: NodeJS.Timeout | undefined;

  readonly #onTimeout: (req: FastifyRequest, reply: FastifyReply) => void;

  constructor(
    readonly timeoutMs: number,
    onTimeout: (req: FastifyRequest, reply: FastifyReply) => void,
  ) {
    this.#onTimeout = onTimeout;
    this.#periodMs = Math.max(5, Math.min(1000, timeoutMs / 8));
  }

  /** Starts watching a request whose handler is about to run; {@link forget} it once it is answered. */
  watch(req: FastifyRequest, reply: FastifyReply): void {
    const watch: Watch = { req, reply, deadline: performance.now() + this.timeoutMs };
    (reply as WatchedReply)[watchOf] = watch;
    this.#watched.push(watch);
    this.#timer ??= setInterval(() => this.#sweep(), this.#periodMs).unref();
  }

  forget(reply: FastifyReply): void {
    const watch = (reply as WatchedReply)[watchOf];
    if (watch === undefined) return;
    (reply as WatchedReply)[watchOf] = undefined;
    watch.req = watch.reply = undefined;
    this.#emptied++;
    while (this.#watched.length > 0 && this.#watched[0].reply === undefined) {
      this.#watched.shift();
      this.#emptied--;
    }
    if (this.#emptied > COMPACT_AT && 2 * this.#emptied > this.#watched.length) {
      this.#watched = this.#watched.filter((w) => w.reply !== undefined);
      this.#emptied = 0;
    }
  }

  /** Entries held: the requests watched, and answered ones not yet dropped (for tests). */
  get held(): number {
    return this.#watched.length;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const watch of this.#watched) {
      if (watch.reply) (watch.reply as WatchedReply)[watchOf] = undefined;
      watch.req = watch.reply = undefined;
    }
    this.#watched.length = 0;
    this.#emptied = 0;
  }

  #sweep(): void {
    const now = performance.now();
    while (this.#watched.length > 0 && this.#watched[0].deadline <= now) {
      const { req, reply } = this.#watched.shift()!;
      if (req === undefined || reply === undefined) {
        this.#emptied--;
        continue;
      }
      (reply as WatchedReply)[watchOf] = undefined;
      if (!reply.sent && !reply.raw.headersSent && !reply.raw.destroyed) this.#onTimeout(req, reply);
    }
    if (this.#watched.length === 0) this.stop();
  }
}
