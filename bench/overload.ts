/**
 * Overload: the real server at twice its saturation throughput, for a bounded time. It must stay up, refuse the
 * excess with 429 + Retry-After (not timeouts, not 5xx), answer admitted requests within their deadline or with 504,
 * and keep its memory bounded. Usage: npm run build && npx tsx bench/overload.ts [--seconds 20]
 * (writes bench/results/overload.md).
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { packageRoot } from '../src/config.js';
import { runLoad, poolLoad } from './lib/load.js';
import { describeMachine, rssMib } from './lib/machine.js';
import { assertBuildFresh, ServerProcess } from './lib/server.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '20' } } });
const seconds = Number(values.seconds);
const MODEL = 'text-orientation';
const body = readFileSync(path.join(packageRoot, 'test/fixtures/text-lines/line-03.png'));

assertBuildFresh();
const machine = describeMachine();
// a small queue and a short deadline, as an operator would set for a latency-bound service
const server = await ServerProcess.start({ MUON_REQUEST_TIMEOUT_MS: '500' });
const url = `${server.baseUrl}/predict?model=${MODEL}`;
try {
  const sat = poolLoad([await runLoad({ url, body, contentType: 'image/png', connections: 32, durationS: 5 })]);
  const rate = Math.round(2 * sat.rps);
  process.stderr.write(`saturation ${sat.rps.toFixed(0)} req/s; offering ${rate} req/s for ${seconds} s\n`);
  const rss: number[] = [rssMib(server.pid)];
  const sampler = setInterval(() => rss.push(rssMib(server.pid)), 1000);
  // a probe request every 50 ms during the run, to see the Retry-After header of the 429s (autocannon hides headers)
  const probes: Promise<readonly [number, string | null]>[] = [];
  const prober = setInterval(() => {
    probes.push(
      fetch(url, { method: 'POST', headers: { 'content-type': 'image/png' }, body }).then(
        (r) => [r.status, r.headers.get('retry-after')] as const,
        () => [0, null] as const,
      ),
    );
  }, 50);
  const codes = new Map<number, number>();
  let retryAfter = 0;
  let withoutRetryAfter = 0;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url,
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body,
        connections: 1024,
        overallRate: rate,
        duration: seconds,
        timeout: 10,
      },
      (err, r) => (err ? reject(err) : resolve(r)),
    );
    instance.on('response', (_client: unknown, status: number, _bytes: number, _ms: number) => {
      codes.set(status, (codes.get(status) ?? 0) + 1);
    });
    instance.on('reqError', () => codes.set(0, (codes.get(0) ?? 0) + 1));
  });
  clearInterval(sampler);
  clearInterval(prober);
  for (const [status, header] of await Promise.all(probes))
    if (status === 429) header && Number(header) >= 1 ? retryAfter++ : withoutRetryAfter++;
  const healthy = (await fetch(`${server.baseUrl}/v2/health/ready`)).status;
  const lines = [
    '# Overload: twice the saturation throughput',
    '',
    `${new Date().toISOString()}, ${machine.cpuModel} x ${machine.cores}, Node ${machine.node}. Model ${MODEL} (a text line), ` +
      `default repository, MUON_REQUEST_TIMEOUT_MS=500. \`npm run build && npx tsx bench/overload.ts --seconds ${seconds}\`.`,
    '',
    `Saturation (32 connections, 5 s): ${sat.rps.toFixed(0)} req/s. Offered: ${rate} req/s for ${seconds} s over 1024 connections (autocannon overallRate; more than the 256 the queue holds).`,
    '',
    '| status | responses |',
    '| --- | ---: |',
    ...[...codes.entries()]
      .sort(([a], [b]) => a - b)
      .map(([s, n]) => `| ${s === 0 ? 'connection error / client timeout' : s} | ${n} |`),
    '',
    `Answered 2xx per second: ${(result['2xx'] / seconds).toFixed(0)} (saturation ${sat.rps.toFixed(0)}). ` +
      `Latency of all responses: p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, max ${result.latency.max} ms.`,
    '',
    `Server RSS during the run (MB, once a second): start ${rss[0].toFixed(0)}, max ${Math.max(...rss).toFixed(0)}, end ${rss.at(-1)!.toFixed(0)}.`,
    '',
    `Probe requests during the run (one every 50 ms) refused with 429: ${retryAfter} with a Retry-After header, ${withoutRetryAfter} without. ` +
      `Readiness after the run: ${healthy}.`,
    '',
  ];
  await writeFile(path.join(packageRoot, 'bench/results/overload.md'), lines.join('\n'));
  process.stdout.write(lines.join('\n'));
} finally {
  await server.stop();
}
