import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { packageRoot } from '../../src/config.js';

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 20_000;
/** Lines of server output kept for error messages. */
const OUTPUT_LINES = 40;

/**
 * `npm start`'s environment assignments and node flags in the package that holds `main` (`dist/main.js`), so that a
 * bench runs the server as users start it (a baseline build: as its own commit started it).
 */
export function startCommand(main: string): { env: Record<string, string>; flags: string[] } {
  const pkg = JSON.parse(readFileSync(path.join(path.dirname(main), '..', 'package.json'), 'utf8')) as {
    scripts?: { start?: string };
  };
  const words = pkg.scripts?.start?.split(' ') ?? [];
  const env: Record<string, string> = {};
  while (/^[A-Z_][A-Z0-9_]*=/.test(words[0] ?? '')) {
    const [name, ...value] = words.shift()!.split('=');
    // `${NAME:-default}`: the caller's own value, else the default
    const fallback = /^\$\{([A-Z_][A-Z0-9_]*):-(.*)\}$/.exec(value.join('='));
    env[name] = fallback ? (process.env[fallback[1]] ?? fallback[2]) : value.join('=');
  }
  return { env, flags: words[0] === 'node' ? words.slice(1).filter((w) => w.startsWith('--')) : [] };
}

/** Servers still running, killed if the bench exits early (error, Ctrl-C). */
const live = new Set<ChildProcess>();
process.once('exit', () => live.forEach((c) => c.kill('SIGKILL')));

/**
 * Throws unless every `src/**\/*.ts` has a `dist/**\/*.js` at least as new, so the bench never measures stale
 * code. The bench does not build by itself: run `npm run build` first.
 */
export function assertBuildFresh(): void {
  const src = path.join(packageRoot, 'src');
  const stale = tsFiles(src).filter((file) => {
    const out = path.join(packageRoot, 'dist', path.relative(src, file).replace(/\.ts$/, '.js'));
    try {
      return statSync(out).mtimeMs < statSync(file).mtimeMs;
    } catch {
      return true;
    }
  });
  if (stale.length > 0) {
    throw new Error(
      `dist/ is missing or older than ${stale.length} source file(s), e.g. ${path.relative(packageRoot, stale[0])}: run \`npm run build\` first`,
    );
  }
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return tsFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** A port nobody listens on right now (the OS picks it; another process could take it before we do). */
export async function freePort(): Promise<number> {
  const srv = createServer().listen(0, HOST);
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  srv.close();
  await once(srv, 'close');
  return port;
}

/** `node dist/main.js` running as a child process, ready to serve. */
export class ServerProcess {
  readonly #child: ChildProcess;
  readonly #output: string[];

  private constructor(
    child: ChildProcess,
    output: string[],
    /** e.g. `http://127.0.0.1:41234` */
    readonly baseUrl: string,
  ) {
    this.#child = child;
    this.#output = output;
  }

  /**
   * Starts the built server on a free local port and resolves once `GET /v2/health/ready` answers 200.
   * Inherited `MUON_*` variables are dropped so the shell cannot skew a run; the server runs on CPU with warn-level
   * logs, and `env` comes on top.
   */
  static async start(
    env: Record<string, string>,
    /** The server's entry; another build (an older commit's `dist/main.js`) runs as a baseline. */
    main = path.join(packageRoot, 'dist', 'main.js'),
  ): Promise<ServerProcess> {
    const port = await freePort();
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MUON_')));
    // BENCH_SERVER_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the server under a bench
    const nodeArgs = process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
    const start = startCommand(main);
    const child = spawn(process.execPath, [...start.flags, ...nodeArgs, main], {
      cwd: packageRoot,
      env: {
        ...inherited,
        ...start.env,
        HOST,
        PORT: String(port),
        MUON_LOG_LEVEL: 'warn',
        MUON_EXECUTION_PROVIDER: 'cpu',
        MUON_SHUTDOWN_GRACE_MS: '0', // no load balancer to wait for
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(child);
    child.once('exit', () => live.delete(child));
    const output: string[] = [];
    // BENCH_SERVER_OUTPUT=<file> keeps all of it (with "--trace-gc" above: the server's collections)
    const log = process.env.BENCH_SERVER_OUTPUT;
    const keep = (chunk: Buffer) => {
      if (log) appendFileSync(log, chunk);
      output.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      output.splice(0, Math.max(0, output.length - OUTPUT_LINES));
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const server = new ServerProcess(child, output, `http://${HOST}:${port}`);
    try {
      await server.#waitReady();
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  /** Process id of the server. */
  get pid(): number {
    return this.#child.pid!;
  }

  async #waitReady(): Promise<void> {
    const deadline = performance.now() + READY_TIMEOUT_MS;
    while (performance.now() < deadline) {
      if (this.#child.exitCode !== null)
        throw this.#failure(`exited with code ${this.#child.exitCode} before it was ready`);
      const status = await fetch(`${this.baseUrl}/v2/health/ready`).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 200) return;
      await sleep(100);
    }
    throw this.#failure(`was not ready after ${READY_TIMEOUT_MS / 1000} s`);
  }

  #failure(what: string): Error {
    return new Error(`server ${what}; its last output:\n${this.#output.join('\n') || '(none)'}`);
  }

  /** Sends SIGTERM (the server drains and exits) and waits; SIGKILL if it takes too long. */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = once(this.#child, 'exit');
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
}
