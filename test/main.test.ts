import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';

// The real entry point as a process: listens, loads the default models, reports ready, and on SIGTERM answers
// every request it had admitted before exiting 0.

const root = path.resolve(import.meta.dirname, '..');
const body = readFileSync(path.join(root, 'test/fixtures/text-lines/line-03.png'));

t.test('npm start path: ready, serves, drains on SIGTERM, exits 0', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', MUON_EXECUTION_PROVIDER: 'cpu', MUON_LOG_LEVEL: 'info' },
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
    fetch(`http://127.0.0.1:${p}/predict`, { method: 'POST', headers: { 'content-type': 'image/png' }, body }).then(
      (r) => r.status,
    );
  const inFlight = Array.from({ length: 32 }, send);
  await Promise.race(inFlight); // the server is busy with the rest now
  child.kill('SIGTERM');
  const statuses = await Promise.all(inFlight.map((p) => p.catch(() => 'refused')));
  t.same(
    statuses.filter((s) => s !== 200 && s !== 'refused' && s !== 503),
    [],
    'admitted requests are answered; late ones are refused or get 503, never a 5xx error or a hang',
  );
  t.ok(statuses.filter((s) => s === 200).length > 1, `answered after the signal too: ${JSON.stringify(statuses)}`);
  t.equal(await exited, 0, 'exit code 0');
  t.ok(
    logs.some((l) => l.msg === 'stopped'),
    'drain completed',
  );
});
