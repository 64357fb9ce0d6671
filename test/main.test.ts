import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
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
  const logs: { msg?: string; level: number }[] = [];
  let resolveReady: (port: number) => void;
  const ready = new Promise<number>((r) => (resolveReady = r));
  let port = 0;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const entry = JSON.parse(line);
    logs.push(entry);
    const m = /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(entry.msg ?? '');
    if (m) port = Number(m[1]);
    if (entry.msg === 'ready') resolveReady(port);
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.teardown(() => child.kill('SIGKILL'));

  const p = await ready;
  t.ok(p > 0, `listening on ${p}`);
  const readyRes = await fetch(`http://127.0.0.1:${p}/v2/health/ready`);
  t.equal(readyRes.status, 200);
  t.ok(
    logs.some((l) => l.msg === 'model ready'),
    'startup log names each model',
  );

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
