import { pino, type Logger } from 'pino';

/** How long a log line may wait in the buffer at most. */
const FLUSH_MS = 250;

/**
 * The server's logger: JSON lines on stdout, written in batches of up to 4 KiB rather than one write per line (a
 * write per request's line was a thread-pool round trip each, about 4 µs of CPU per request at 13,000 small
 * requests a second; see docs/benchmarks.md). A line waits at most {@link FLUSH_MS}; what is buffered when the process
 * exits is written synchronously then (pino's exit hook).
 */
export function createLogger(level: string): Logger {
  const destination = pino.destination({ dest: 1, minLength: 4096, sync: false });
  let unflushed = false;
  const logger = pino(
    {
      name: 'muon',
      level,
      hooks: {
        streamWrite: (line) => {
          unflushed = true;
          return line;
        },
      },
    },
    destination,
  );
  const timer = setInterval(() => {
    // while a write is in flight flush() does nothing, and what is buffered behind it would wait for the next line:
    // try again at the next tick (sonic-boom has no public word for it)
    if (!unflushed || (destination as unknown as { _writing?: boolean })._writing === true) return;
    unflushed = false;
    destination.flush();
  }, FLUSH_MS).unref();
  destination.once('close', () => clearInterval(timer)); // ended at exit: nothing to flush any more
  return logger;
}
