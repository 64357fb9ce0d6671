import type { FastifyRequest } from 'fastify';

// The socket side of a request: uploads are timed by the socket's idle timeout; once a body is in, the request may
// compute quietly (its own deadline and the handler watchdog in app.ts bound it).

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
