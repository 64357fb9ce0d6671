import { parentPort, workerData } from 'node:worker_threads';
import { configureImageDecoder } from '../preprocess/image.js';
import { taskOps } from '../models/tasks/registry.js';
import { commonOps, type Op } from './ops.js';
import { lowerThreadPriority } from './priority.js';
import { postToLoop, toWire, type OpReply, type OpRequest } from './wire.js';

// One task worker: runs the ops the event loop hands it (several at once: sharp decodes on its own threads) and
// sends their results back (see postToLoop: copied, or moved when large).

const port = parentPort;
if (!port) throw new Error('task-worker.ts runs as a worker thread; this is a bug');
const init = workerData as { imageThreads: number; nice: number };
lowerThreadPriority(init.nice);
configureImageDecoder(init.imageThreads);
const ops = new Map<string, Op<unknown, unknown>>([...commonOps, ...taskOps].map((o) => [o.name, o]));

port.on('message', (req: OpRequest) => {
  void run(req);
});

async function run({ id, op, args }: OpRequest): Promise<void> {
  let reply: OpReply;
  try {
    const found = ops.get(op);
    if (!found) throw new Error(`no op '${op}' on the task workers; this is a bug`);
    reply = { id, ok: true, result: await found.run(args) };
  } catch (err) {
    reply = { id, ok: false, error: toWire(err) };
  }
  try {
    postToLoop(port!, reply);
  } catch (err) {
    port!.postMessage({ id, ok: false, error: toWire(err) } satisfies OpReply); // a result that cannot be sent fails
  }
}
