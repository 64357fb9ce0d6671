import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { LoadOptions } from './load.js';

/**
 * Closed-loop load from wrk (C, `apt-get install wrk`) instead of autocannon: at a thousand requests a second and
 * more, autocannon spends about 0.3 ms of CPU on each request, a fifth of a 2-core machine that the server under
 * test then lacks; wrk spends about 0.01 ms. Only the rate and the failures are read: wrk keeps no latency of its
 * own per answer, so benches that report percentiles use runLoad.
 */
export interface WrkSample {
  readonly rps: number;
  /** Answers with a status of 400 or more (wrk's "non-2xx or 3xx"). */
  readonly non2xx: number;
  /** Connect, read, write errors and timeouts. */
  readonly errors: number;
}

/** Whether wrk is on the PATH. */
export function hasWrk(): boolean {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    // wrk --version prints its banner and exits 1
    return (err as { status?: number }).status === 1;
  }
}

// the body is read from a file (Lua strings hold any bytes); done() prints one parseable line
const SCRIPT = `
local f = assert(io.open(os.getenv("WRK_BODY"), "rb")); local body = f:read("*all"); f:close()
wrk.method = os.getenv("WRK_METHOD")
if wrk.method == "POST" then wrk.body = body; wrk.headers["Content-Type"] = os.getenv("WRK_TYPE") end
function done(s, latency, requests)
  local e = s.errors
  io.write(string.format("\\nWRK %d %d %d %d\\n", s.requests, s.duration, e.status, e.connect + e.read + e.write + e.timeout))
end
`;

export async function runWrk(opts: LoadOptions): Promise<WrkSample> {
  const dir = mkdtempSync(path.join(tmpdir(), 'muon-wrk-'));
  try {
    writeFileSync(path.join(dir, 'load.lua'), SCRIPT);
    writeFileSync(path.join(dir, 'body'), opts.body);
    const args = ['-t', String(Math.min(2, opts.connections)), '-c', String(opts.connections)];
    // wrk gives up on an answer after 2 s by default: an OCR page at 32 connections takes 4
    args.push('-d', `${opts.durationS}s`, '--timeout', '60s', '-s', path.join(dir, 'load.lua'), opts.url);
    const env = {
      ...process.env,
      WRK_BODY: path.join(dir, 'body'),
      WRK_METHOD: opts.method ?? 'POST',
      WRK_TYPE: opts.contentType,
    };
    const { stdout } = await promisify(execFile)('wrk', args, { env });
    const line = /^WRK (\d+) (\d+) (\d+) (\d+)$/m.exec(stdout);
    if (!line) throw new Error(`wrk printed no summary:\n${stdout}`);
    const [requests, durationUs, status, errors] = line.slice(1).map(Number);
    return { rps: (requests - status) / (durationUs / 1e6), non2xx: status, errors };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
