// Why nothing long-lived holds per-request entries (docs/architecture.md): 32 concurrent "requests", each a small
// object graph, registered in a long-lived structure while in flight and removed when done, for 3 s per structure.
// Prints, per structure, requests per second and the time spent in minor and major collections.
//   node bench/gc-retention.mjs            (runs every mode, each in a child process with `npm start`'s semi-space)
//   node --max-semi-space-size=64 bench/gc-retention.mjs <mode>   (one mode)
import { spawnSync } from 'node:child_process';
import { PerformanceObserver, constants } from 'node:perf_hooks';

const modes = ['none', 'slots', 'map', 'set', 'listener'];
const mode = process.argv[2];

if (mode === undefined) {
  console.log('| registry of requests in flight | requests/s | minor GC ms/s | major GC ms/s |');
  console.log('|---|---:|---:|---:|');
  for (const m of modes) {
    const r = spawnSync(process.execPath, ['--max-semi-space-size=64', new URL(import.meta.url).pathname, m]);
    process.stdout.write(r.stdout.toString());
  }
} else {
  const gc = { minor: 0, major: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) gc.minor += e.duration;
      else gc.major += e.duration;
    }
  }).observe({ entryTypes: ['gc'] });
  const signal = new AbortController().signal; // a connection's signal: as long-lived as the registries below
  const map = new Map();
  const set = new Set();
  const slots = [];
  const free = [];
  const seconds = 3;
  let n = 0;
  const t0 = performance.now();
  const request = async () => {
    while (performance.now() - t0 < seconds * 1000) {
      const graph = { parts: Array.from({ length: 50 }, (_, i) => ({ i })), text: 'x'.repeat(200) + n };
      const onAbort = () => graph.parts.length;
      let slot = -1;
      if (mode === 'map') map.set(onAbort, graph);
      else if (mode === 'set') set.add(onAbort);
      else if (mode === 'listener') signal.addEventListener('abort', onAbort, { once: true });
      else if (mode === 'slots') {
        slot = free.pop() ?? slots.length;
        slots[slot] = onAbort;
      }
      await new Promise((resolve) => setImmediate(resolve)); // in flight for a turn of the event loop
      if (mode === 'map') map.delete(onAbort);
      else if (mode === 'set') set.delete(onAbort);
      else if (mode === 'listener') signal.removeEventListener('abort', onAbort);
      else if (mode === 'slots') {
        slots[slot] = undefined;
        free.push(slot);
      }
      n++;
    }
  };
  await Promise.all(Array.from({ length: 32 }, request));
  await new Promise((resolve) => setTimeout(resolve, 50)); // the last gc entries
  const f = (x) => Math.round(x / seconds).toLocaleString('en-US');
  console.log(`| ${mode} | ${f(n)} | ${f(gc.minor)} | ${f(gc.major)} |`);
}
