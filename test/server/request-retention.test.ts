/**
 * What a lone client's requests leave to the event loop's collector. Requests one after another on one keep-alive
 * connection should die young: a minor collection (scavenge) that finds one in flight keeps it once, and the next
 * frees it. A per-request closure called from a request's `close` listener (the handler watchdog's "forget me" in
 * Holdings) once kept every request's whole object graph alive through scavenges until they promoted it: 4.7-11 KB a
 * request outlived a scavenge by this measure, against 0.8 KB without it, and at one connection a scavenge took 5-10
 * ms instead of 1-4 (`bench/results/lone-request-retention.md`).
 *
 * The measurement runs in a child process (test/helpers/retention-probe.ts) without the test runner's preloads
 * (`NODE_OPTIONS`): their async hooks keep every promise in a Map, which outlives scavenges by itself.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../src/config.js';

/** Runs the probe once: requests answered and sent, and bytes a request left behind a scavenge. */
async function probe(env: NodeJS.ProcessEnv) {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', path.join(packageRoot, 'test/helpers/retention-probe.ts')],
    { cwd: packageRoot, env: { ...env, REQUESTS: '1500' }, maxBuffer: 1 << 20 },
  );
  return JSON.parse(stdout) as { answered: number; requests: number; perRequest: number };
}

// On a machine saturated by other work (the suite's other files, in parallel) requests wait longer in flight and
// more of them outlive a scavenge: 7-62 KB a request was measured that way with the fixed code, 0.8-1.4 KB alone.
// The defect shows in every run, loaded or not (4.7 KB and more alone), so the best of up to three runs is what is
// held to the bound: a run under load cannot pass a retaining build, and one quiet run passes a sound one.
t.test('requests on one connection do not outlive minor collections', async (t) => {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('NODE_V8_COVERAGE')),
  );
  const runs: number[] = [];
  for (let i = 0; i < 3 && !(Math.min(...runs) < 2500); i++) {
    const { answered, requests, perRequest } = await probe(env);
    t.equal(answered, requests, 'every request answered');
    runs.push(perRequest);
  }
  const best = Math.min(...runs);
  t.ok(
    best < 2500,
    `${Math.round(best)} bytes a request outlived a scavenge (under 2,500; runs: ${runs.map(Math.round).join(', ')})`,
  );
});
