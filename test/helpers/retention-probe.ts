/**
 * Child process of test/server/request-retention.test.ts (run with `node --import tsx`, away from the test runner's
 * async hooks, whose own bookkeeping outlives scavenges): serves one model, sends it `REQUESTS` PNG lines one after
 * another on one keep-alive connection, and prints, as JSON, the bytes per request that outlived a minor collection.
 *
 * V8's sampling heap profiler keeps the samples of objects freed by major collections but not of those freed by
 * minor ones: after two forced minor collections, what is left is what outlived a scavenge (or is still live).
 */
import http from 'node:http';
import { Session } from 'node:inspector/promises';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { packageRoot } from '../../src/config.js';
import { startApp } from './app.js';

const MODEL = 'text-orientation-fp32';
const REQUESTS = Number(process.env.REQUESTS ?? 1500);

interface SamplingNode {
  selfSize: number;
  children: SamplingNode[];
}
const bytesOf = (n: SamplingNode): number => n.children.reduce((sum, c) => sum + bytesOf(c), n.selfSize);

const repo = mkdtempSync(path.join(tmpdir(), 'muon-retention-'));
cpSync(path.join(packageRoot, 'models', MODEL), path.join(repo, MODEL), { recursive: true });
const served = await startApp({ MUON_MODEL_REPOSITORY: repo, MUON_DEFAULT_MODEL: MODEL });
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
try {
  await served.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = served.app.server.address() as AddressInfo;
  const body = readFileSync(path.join(packageRoot, 'test/fixtures/text-lines/line-03.png'));
  const post = () =>
    new Promise<number>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, path: '/predict', method: 'POST', agent, headers: { 'content-type': 'image/png' } },
        (res) => res.resume().on('end', () => resolve(res.statusCode ?? 0)),
      );
      req.on('error', reject);
      req.end(body);
    });
  for (let i = 0; i < 100; i++) await post(); // warm-up: code compiled, pools filled

  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (opts?: { type: 'minor' | 'major' }) => void;
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  gc({ type: 'major' });
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 1024,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: false,
  });
  let answered = 0;
  for (let i = 0; i < REQUESTS; i++) if ((await post()) === 200) answered++;
  gc({ type: 'minor' });
  gc({ type: 'minor' });
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as { profile: { head: SamplingNode } };
  session.disconnect();
  process.stdout.write(JSON.stringify({ answered, requests: REQUESTS, perRequest: bytesOf(profile.head) / REQUESTS }));
} finally {
  agent.destroy();
  await served.close();
  rmSync(repo, { recursive: true, force: true });
}
