import { parentPort } from 'node:worker_threads';
import type { WorkerRequest } from '../../src/models/session-pool.js';

// The real session worker, plus one fault: a run whose first input starts with 666 kills the thread, as a crash
// in a worker would (test/models/session-pool.test.ts).
parentPort!.on('message', (req: WorkerRequest) => {
  if (req.kind === 'run' && Object.values(req.feeds)[0]?.data[0] === 666) process.exit(7);
});
await import('../../src/models/session-worker.js');
