const started = performance.now();

/** Progress for bench scripts, on stderr, each line prefixed by the seconds since the script started. */
export function log(message: string): void {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
}
