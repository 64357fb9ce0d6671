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
 * Answers the requests whose handler has not answered within `timeoutMs`, whatever the handler waits for. One timer
 * sweeps them all, at an eighth of the limit (at most every second), rather than a timer per request (which costs a
 * small request a tenth of its answer): a request is answered up to one sweep period after its limit.
 */
export class HandlerWatchdog {
  /** Requests whose handler runs, in the order they started, which is the order of their deadlines. */
  readonly #watched = new Map<FastifyReply, { readonly req: FastifyRequest; readonly deadline: number }>();
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
    this.#watched.set(reply, { req, deadline: performance.now() + this.timeoutMs });
    this.#timer ??= setInterval(() => this.#sweep(), this.#periodMs).unref();
  }

  forget(reply: FastifyReply): void {
    this.#watched.delete(reply);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#watched.clear();
  }

  #sweep(): void {
    const now = performance.now();
    for (const [reply, { req, deadline }] of this.#watched) {
      if (deadline > now) break;
      this.#watched.delete(reply);
      if (!reply.sent && !reply.raw.headersSent && !reply.raw.destroyed) this.#onTimeout(req, reply);
    }
    if (this.#watched.size === 0) this.stop();
  }
}
