import { parentPort } from 'node:worker_threads';
import type { OpRequest } from '../../src/workers/wire.js';

// The real task worker, plus one fault: an op whose `bytes` are exactly 13 bytes long kills the thread, as a crash
// in a worker would (test/workers/task-workers.test.ts). The real worker listens first, so that no op sent before
// this module finished loading is lost; its ops are asynchronous, so the exit comes before any answer.
await import('../../src/workers/task-worker.js');
parentPort!.on('message', (req: OpRequest) => {
  if ((req.args as { bytes?: Uint8Array }).bytes?.length === 13) process.exit(9);
});
