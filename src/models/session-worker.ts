import { parentPort, workerData } from 'node:worker_threads';
import type { WorkerInit, WorkerReply, WorkerRequest } from './session-pool.js';
import { ModelSession } from './session.js';
import { lowerThreadPriority } from '../workers/priority.js';
import { postToLoop } from '../workers/wire.js';

// One model session on its own thread. onnxruntime-node runs `session.run` synchronously on the thread that calls
// it, so a session on the main thread stops HTTP for the whole run; here it stops only this thread.

const port = parentPort;
if (!port) throw new Error('session-worker.ts runs as a worker thread; this is a bug');
const init = workerData as WorkerInit;
lowerThreadPriority(init.nice ?? 0); // first: onnxruntime's intra-op threads inherit it

let session: ModelSession | undefined;
try {
  let fallbackReason: string | undefined;
  session = await ModelSession.create(init.model, { ...init.options, onFallback: (r) => (fallbackReason = r) });
  port.postMessage({
    kind: 'ready',
    inputs: session.inputs,
    outputs: session.outputs,
    provider: session.provider,
    fallbackReason,
  } satisfies WorkerReply);
} catch (err) {
  port.postMessage({ kind: 'failed', message: (err as Error).message } satisfies WorkerReply);
  port.close();
}

// one message at a time, in order: a release waits for the run before it
let previous = Promise.resolve();
port.on('message', (req: WorkerRequest) => {
  previous = previous.then(() => handle(req));
});

async function handle(req: WorkerRequest): Promise<void> {
  if (!session) return;
  if (req.kind === 'release') {
    await session.release();
    port!.close();
    return;
  }
  try {
    const outputs = await session.run(req.feeds, req.outputNames, req.reduce);
    postToLoop(port!, { kind: 'result', outputs } satisfies WorkerReply);
  } catch (err) {
    port!.postMessage({
      kind: 'error',
      message: err instanceof Error ? err.message : String(err),
    } satisfies WorkerReply);
  }
}
