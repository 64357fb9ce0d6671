import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import t from 'tap';
import { WorkerSessionPool } from '../../src/models/session-pool.js';
import { lowerThreadPriority } from '../../src/workers/priority.js';
import { TaskWorkers } from '../../src/workers/task-workers.js';

// MUON_WORKER_NICE: task workers and session workers run below the event loop's CPU priority (Linux: per thread),
// so that an oversubscribed machine still answers HTTP and probes promptly. The process itself is never reniced.

const linux = existsSync('/proc/thread-self');
const base = os.getPriority(process.pid);
/** The nice value of every thread of this process, by thread id. */
const nices = () =>
  new Map(
    readdirSync('/proc/self/task').map((tid) => {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      return [Number(tid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])];
    }),
  );
const lowered = () => [...nices().values()].filter((n) => n === Math.min(19, base + 5)).length;

t.test('the main thread is never reniced', { skip: !linux && 'not Linux' }, async (t) => {
  lowerThreadPriority(5);
  t.equal(os.getPriority(process.pid), base);
  t.equal(nices().get(process.pid), base);
});

t.test('task workers start below the event loop', { skip: !linux && 'not Linux' }, async (t) => {
  const before = lowered();
  const workers = new TaskWorkers(2, 1, undefined, 5);
  t.teardown(() => workers.close());
  await workers.warm();
  t.ok(lowered() >= before + 2, `${lowered() - before} more threads at nice ${base + 5}`);
  t.equal(nices().get(process.pid), base, 'the event loop keeps its priority');
});

t.test(
  'session workers start below the event loop (onnxruntime threads too)',
  { skip: !linux && 'not Linux' },
  async (t) => {
    const before = lowered();
    const pool = await WorkerSessionPool.create(
      readFileSync(path.resolve(import.meta.dirname, '../../models/language-id/model.onnx')),
      { provider: 'cpu', intraOpThreads: 2 },
      { cpu: 1, cuda: 1 },
      { nice: 5 },
    );
    t.teardown(() => pool.release());
    t.ok(lowered() >= before + 2, `${lowered() - before} more threads at nice ${base + 5}: the worker and its pool`);
    t.equal(nices().get(process.pid), base);
  },
);
