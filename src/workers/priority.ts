import { readlinkSync } from 'node:fs';
import os from 'node:os';

/**
 * Lowers the calling thread's CPU priority by `nice` (Linux keeps a nice value per thread, and the threads a thread
 * starts afterwards inherit it: a session worker's onnxruntime intra-op threads). A worker thread calls it first, so
 * that when the cores are oversubscribed the scheduler favours the event loop, which answers HTTP and health probes;
 * computing threads still get every cycle the event loop leaves. Not lowered: libuv's thread pool, which the whole
 * process shares and where sharp (libvips) decodes images. Elsewhere than Linux, or where the system refuses,
 * nothing changes.
 */
export function lowerThreadPriority(nice: number): void {
  if (!(nice > 0)) return;
  try {
    // "<pid>/task/<tid>", in this process's PID namespace (a /proc from another namespace would name another thread)
    const [pid, , tid] = readlinkSync('/proc/thread-self').split('/').map(Number);
    if (pid === process.pid && Number.isInteger(tid) && tid !== process.pid)
      os.setPriority(tid, Math.min(19, os.getPriority(tid) + nice));
  } catch {
    // no /proc/thread-self (not Linux) or not permitted: the thread keeps its priority
  }
}
