/**
 * deploy/prometheus/ against the real tools and a real server: `promtool check rules` on the rule files, `promtool
 * check metrics` on a running app's /metrics, `promtool test rules` on deploy/prometheus/tests/, and a real Prometheus
 * (ephemeral port, temporary storage) that scrapes a real server every second, evaluates the rules, and answers a
 * recording rule's value through its HTTP API after some /predict requests. Each part skips, saying why, where
 * promtool or prometheus is not installed (Debian: `apt-get install prometheus`).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { Metrics } from '../../src/metrics.js';
import { ModelRepository } from '../../src/models/repository.js';
import { buildApp } from '../../src/server/app.js';

const root = path.resolve(import.meta.dirname, '../..');
const promDir = path.join(root, 'deploy/prometheus');
const ruleFiles = readdirSync(promDir)
  .filter((f) => f.endsWith('.yml'))
  .sort()
  .map((f) => path.join(promDir, f));
const testFiles = readdirSync(path.join(promDir, 'tests'))
  .filter((f) => f.endsWith('.yml'))
  .map((f) => path.join(promDir, 'tests', f));

/** Why `tool` cannot run here, or undefined when it can. */
function missing(tool: string): string | undefined {
  const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? `${tool} is not installed (Debian: apt-get install prometheus)` : undefined;
}
const noPromtool = missing('promtool');
const noPrometheus = missing('prometheus');
const promtool = (args: string[], input?: string) =>
  spawnSync('promtool', args, { cwd: root, input, encoding: 'utf8', timeout: 60_000 });

t.same(
  ruleFiles.map((f) => path.basename(f)),
  ['muon-alerts.yml', 'muon-rules.yml'],
  'the rule files',
);
t.ok(testFiles.length > 0, 'deploy/prometheus/tests/ has unit tests');

t.test(
  'the rule files: every group and rule valid (promtool check rules)',
  { skip: noPromtool ?? false },
  async (t) => {
    const r = promtool(['check', 'rules', ...ruleFiles]);
    t.equal(r.status, 0, r.stdout + r.stderr);
    t.match(r.stdout, /SUCCESS: 12 rules found/);
    t.match(r.stdout, /SUCCESS: 6 rules found/);
  },
);

t.test('the rules and alerts pass their unit tests (promtool test rules)', { skip: noPromtool ?? false }, async (t) => {
  const r = promtool(['test', 'rules', ...testFiles]);
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /SUCCESS/);
  t.notMatch(r.stdout, /FAILED/);
});

// One real server for the rest, as main.ts builds it (process metrics included), on an ephemeral port.
const config = loadConfig({ MUON_EXECUTION_PROVIDER: 'cpu' });
const metrics = new Metrics(true);
const logger = pino({ level: 'silent' });
const repository = new ModelRepository(config, metrics, logger);
const failures = await repository.loadAll();
const app = buildApp({ config, metrics, repository, logger });
await app.listen({ port: 0, host: '127.0.0.1' });
t.teardown(async () => {
  await app.close();
  await repository.close();
});
const serverPort = (app.server.address() as AddressInfo).port;
const base = `http://127.0.0.1:${serverPort}`;
const predict = () =>
  fetch(`${base}/predict?model=language-id`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: 'Ceci est une phrase en français, pour voir.',
  }).then(async (r) => ({ status: r.status, body: await r.text() }));

t.test('the server exports what the rules read', async (t) => {
  t.same(failures, [], 'every default model loaded');
  t.equal((await predict()).status, 200);
  const text = await (await fetch(`${base}/metrics`)).text();
  for (const series of [
    'muon_requests_total{model="language-id",code="200"}',
    'muon_request_duration_seconds_bucket{le="0.0005",model="language-id"}',
    'muon_batch_size_count{model="language-id"}',
    'muon_queue_capacity{model="language-id"}',
    'muon_model_state{model="language-id",state="READY"} 1',
    'muon_model_state{model="language-id",state="FAILED"} 0',
  ])
    t.ok(text.includes(series), series);
  const capacity = repository.readyModel('language-id').batcher.options.maxQueueSize;
  t.match(text, new RegExp(`^muon_queue_capacity\\{model="language-id"\\} ${capacity}$`, 'm'), 'its maxQueueSize');
  t.match(text, /^muon_model_info\{model="language-id",version="[^"]+",provider="cpu"\} 1$/m);
  // every muon_ series the rules use is one the server exports
  const used = new Set(
    ruleFiles.flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/(?<![:\w])muon_[a-z_]+/g)].map((m) => m[0])),
  );
  for (const name of used) t.match(text, new RegExp(`^# TYPE ${name.replace(/_(bucket|sum|count)$/, '')} `, 'm'), name);
});

t.test('promtool check metrics: the real /metrics exposition', { skip: noPromtool ?? false }, async (t) => {
  const text = await (await fetch(`${base}/metrics`)).text();
  const r = promtool(['check', 'metrics'], text);
  // exit 3 is lint findings (1 would be an exposition promtool cannot parse): the only ones are prom-client's own
  // process metrics, gauges whose names end in _total (`nodejs_active_handles_total`), not ours to rename
  t.ok(r.status === 0 || r.status === 3, `parsed (exit ${r.status}): ${r.stderr}`);
  const findings = (r.stdout + r.stderr).split('\n').filter((l) => l.trim() !== '');
  const known =
    /^nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/;
  for (const f of findings) t.match(f, known, `only prom-client's known finding: ${f}`);
  t.notOk(/muon_/.test(r.stdout + r.stderr), 'no finding on a muon_ metric');
  // the same lint on our metrics alone (the exposition without prom-client's process metrics) is clean
  const ours = text
    .split('\n')
    .filter((l) => /^(# (HELP|TYPE) )?muon_/.test(l))
    .join('\n');
  const clean = promtool(['check', 'metrics'], ours + '\n');
  t.equal(clean.status, 0, clean.stdout + clean.stderr);
});

t.test('a real Prometheus scrapes the server and records the rules', { skip: noPrometheus ?? false }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'muon-prometheus-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const promPort = await freePort();
  writeFileSync(
    path.join(dir, 'prometheus.yml'),
    JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: ruleFiles,
      scrape_configs: [{ job_name: 'muon', static_configs: [{ targets: [`127.0.0.1:${serverPort}`] }] }],
    }),
  );
  const prom = spawn(
    'prometheus',
    [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  prom.stderr.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const exited = new Promise((resolve) => prom.once('exit', resolve));
  t.teardown(async () => {
    prom.kill('SIGTERM');
    await exited;
  });
  const query = async (q: string) => {
    const r = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`);
    const body = (await r.json()) as {
      status: string;
      data: { result: { metric: object; value: [number, string] }[] };
    };
    return body.data.result;
  };

  // requests keep coming while Prometheus scrapes: rate() needs two scrapes that saw the counter grow
  let sent = 0;
  let rate: { metric: object; value: [number, string] }[] = [];
  for (let i = 0; i < 120 && rate.length === 0; i++) {
    for (let k = 0; k < 5; k++) if ((await predict()).status === 200) sent++;
    await sleep(500);
    rate = await query('model:muon_requests:rate1m{model="language-id"}').catch(() => []);
  }
  t.ok(sent > 0, `${sent} requests answered`);
  t.equal(rate.length, 1, `the recording rule has a value (prometheus log tail: ${rate.length ? '' : log})`);
  t.same(rate[0]?.metric, { __name__: 'model:muon_requests:rate1m', job: 'muon', model: 'language-id' });
  t.ok(Number(rate[0]?.value[1]) > 0, `language-id: ${rate[0]?.value[1]} req/s`);

  const ready = await query('muon_model_state{model="language-id",state="READY"}');
  t.equal(ready[0]?.value[1], '1', 'Prometheus sees the model READY');
  const batch = await query('model:muon_batch_size:mean_rate1m{model="language-id"}');
  t.ok(Number(batch[0]?.value[1]) >= 1, `mean batch size ${batch[0]?.value[1]}`);
  const rules = (await (await fetch(`http://127.0.0.1:${promPort}/api/v1/rules`)).json()) as {
    data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
  };
  const all = rules.data.groups.flatMap((g) => g.rules);
  t.equal(all.length, 18, 'every rule and alert is loaded');
  for (const r of all) t.not(r.health, 'err', `${r.name} evaluates${r.lastError ? `: ${r.lastError}` : ''}`);
  const firing = await query('ALERTS{alertstate="firing"}');
  t.same(firing, [], 'nothing fires for a healthy server');
});

/** A port no one listens on now (Prometheus cannot report the port it got from port 0). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
