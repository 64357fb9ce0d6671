import { readlinkSync } from 'node:fs';
import os from 'node:os';

/**
 * Lowers the calling thread's CPU priority by `nice` (Linux keeps a nice value per thread, and the threads a thread
 * starts afterwards inherit it: onnxruntime's intra-op threads, libvips's). A worker thread calls it first, so that
 * when the cores are oversubscribed the scheduler favours the event loop, which answers HTTP and health probes;
 * computing threads still get every cycle the event loop leaves. Elsewhere than Linux, or where the system refuses,
 * nothing changes.
 */
export function lowerThreadPriority(nice: number): void {
  if (!(nice > 0)) return;
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').at(-1));
    if (Number.isInteger(tid) && tid !== process.pid) os.setPriority(tid, Math.min(19, os.getPriority(tid) + nice));
  } catch {
    // no /proc/thread-self (not Linux) or not permitted: the thread keeps its priority
  }
}
