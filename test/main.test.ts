import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';

// The real entry point as a process: listens, loads the default models, reports ready, and on SIGTERM turns not
// ready, serves through the grace period, answers every request it had admitted, refuses new work, exits 0.

const root = path.resolve(import.meta.dirname, '..');
const body = readFileSync(path.join(root, 'test/fixtures/text-lines/line-03.png'));

t.test('npm start path: ready, serves, drains on SIGTERM, exits 0', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      MUON_EXECUTION_PROVIDER: 'cpu',
      MUON_LOG_LEVEL: 'info',
      MUON_SHUTDOWN_GRACE_MS: '1500',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const logs: Record<string, unknown>[] = [];
  let resolveReady: (port: number) => void;
  const ready = new Promise<number>((r) => (resolveReady = r));
  let port = 0;
  let loading: Promise<Response> | undefined;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const entry = JSON.parse(line);
    logs.push(entry);
    const m = /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(entry.msg ?? '');
    if (m) port = Number(m[1]);
    // the port is open before the models are: readiness must say so
    if (entry.msg === 'loading models') loading = fetch(`http://127.0.0.1:${port}/v2/health/ready`);
    if (entry.msg === 'ready') resolveReady(port);
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.teardown(() => child.kill('SIGKILL'));

  const p = await ready;
  t.ok(p > 0, `listening on ${p}`);
  const early = await loading!;
  t.equal(early.status, 503, 'not ready while the models load');
  t.match(await early.json(), { ready: false });
  const readyRes = await fetch(`http://127.0.0.1:${p}/v2/health/ready`);
  t.equal(readyRes.status, 200, 'ready once every model loaded and ran its warm-up batch');
  const loaded = logs.filter((l) => l.msg === 'model ready');
  t.ok(loaded.length >= 10, 'startup log names each model');
  for (const l of loaded)
    t.match(l, { provider: 'cpu', thread: /^(worker|event-loop)$/ }, `${l.model}: provider logged`);

  const traced = await fetch(`http://127.0.0.1:${p}/predict?model=text-orientation`, {
    method: 'POST',
    headers: { 'content-type': 'image/png', 'x-request-id': 'trace-me-42' },
    body,
  });
  t.equal(traced.headers.get('x-request-id'), 'trace-me-42');
  const logged = () => logs.some((l) => l.reqId === 'trace-me-42' && l.msg === 'request' && l.statusCode === 200);
  for (let i = 0; i < 100 && !logged(); i++) await new Promise((r) => setTimeout(r, 20)); // written after the reply
  t.ok(logged(), "the request's log line carries its id");

  const send = () =>
    fetch(`http://127.0.0.1:${p}/predict?model=text-orientation`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body,
    }).then((r) => r.status);
  const inFlight = Array.from({ length: 32 }, send);
  await Promise.race(inFlight); // the server is busy with the rest now
  child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  const draining = await fetch(`http://127.0.0.1:${p}/v2/health/ready`);
  t.equal(draining.status, 503, 'readiness turns 503 at once');
  t.match(await draining.json(), { ready: false, draining: true });
  t.equal(await send(), 200, 'a request in the grace period is still served');
  const statuses = await Promise.all(inFlight.map((p) => p.catch(() => 'refused')));
  t.same(
    statuses.filter((s) => s !== 200),
    [],
    'every request admitted before the signal is answered',
  );
  await new Promise((r) => setTimeout(r, 1500)); // past the grace period: closing
  const late = await fetch(`http://127.0.0.1:${p}/predict`, {
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body,
  })
    .then(async (r) => [r.status, ((await r.json()) as { code: string }).code])
    .catch(() => 'refused');
  t.ok(
    late === 'refused' || (late[0] === 503 && late[1] === 'MUON_ERR_SHUTTING_DOWN'),
    `after the grace period new work is refused: ${JSON.stringify(late)}`,
  );
  t.equal(await exited, 0, 'exit code 0');
  t.ok(
    logs.some((l) => l.msg === 'stopped'),
    'drain completed',
  );
});

t.test('a model that fails to load stops the process: fatal log naming the file and field, exit code 1', async (t) => {
  const repo = mkdtempSync(path.join(tmpdir(), 'muon-bad-'));
  t.teardown(() => rmSync(repo, { recursive: true, force: true }));
  mkdirSync(path.join(repo, 'broken'));
  writeFileSync(
    path.join(repo, 'broken/manifest.json'),
    JSON.stringify({ task: 'image-classification', input: { height: 4, width: 4, layout: 'NCWH' }, labels: ['a'] }),
  );
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', MUON_MODEL_REPOSITORY: repo, MUON_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  const lines: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  t.equal(code, 1);
  const fatal = lines.map((l) => JSON.parse(l)).find((l) => l.level === 60);
  t.match(JSON.stringify(fatal?.failures), /broken.*\/input\/layout/, 'the fatal line names the model, file and field');
});
