import { Worker } from 'node:worker_threads';

/**
 * Starts a worker thread on `entry`: the compiled module, or its TypeScript source through tsx when the caller runs
 * from `src/` (tests and bench scripts), since a worker does not inherit tsx's loader on Node 20.
 */
export function startWorker(entry: URL, workerData: unknown): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, { workerData });
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const code = `import(${tsx}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(code, { eval: true, workerData });
}

/** The module next to `from` named `name`, as .ts when `from` is a source file and .js when it is compiled. */
export function sibling(name: string, from: string): URL {
  return new URL(from.endsWith('.ts') ? `./${name}.ts` : `./${name}.js`, from);
}
