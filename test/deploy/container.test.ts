import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';

// Builds the Dockerfile's cpu target with podman and smoke-tests the image: ready, serves OCR, runs as uid 1000,
// passes its health check, exits 0 on stop. Skipped, saying why, where no container engine can run (no podman, or
// no local node:24-bookworm-slim base: nothing can be pulled here); the Dockerfile's structure is checked by
// dockerfile.test.ts either way. CONTAINERS_CONF defaults to the one ../shared/containers/setup-podman.sh writes.
const root = path.resolve(import.meta.dirname, '../..');
const env = { ...process.env, CONTAINERS_CONF: process.env.CONTAINERS_CONF ?? '/etc/muon-podman/containers.conf' };
const podman = (args: string[], timeout = 60_000) =>
  spawnSync('podman', args, { cwd: root, env, encoding: 'utf8', timeout, maxBuffer: 64 << 20 });

const why =
  podman(['info']).status !== 0
    ? 'podman is not installed or cannot run here'
    : podman(['image', 'exists', 'node:24-bookworm-slim']).status !== 0
      ? 'no local node:24-bookworm-slim base image (run ../shared/containers/setup-podman.sh)'
      : undefined;

if (why) {
  t.pass(`container smoke test skipped: ${why}`);
} else {
  t.setTimeout(15 * 60_000);
  t.test('the cpu image builds, serves, and stops cleanly', async (t) => {
    const build = podman(
      ['build', '--format', 'docker', '--pull=never', '--target', 'cpu', '-t', 'muon:smoke', '.'],
      12 * 60_000,
    );
    t.equal(build.status, 0, build.status === 0 ? 'the image builds' : build.stderr.slice(-2000));
    const port = 18000 + (process.pid % 1000);
    const run = podman(['run', '-d', '-p', `127.0.0.1:${port}:8080`, 'muon:smoke']);
    t.equal(run.status, 0, run.status === 0 ? 'the container starts' : run.stderr);
    const id = run.stdout.trim();
    t.teardown(() => void podman(['rm', '-f', '-t', '0', id]));
    let ready = 0;
    for (let i = 0; i < 120 && ready !== 200; i++) {
      ready = await fetch(`http://127.0.0.1:${port}/v2/health/ready`).then(
        (r) => r.status,
        () => 0,
      );
      if (ready !== 200) await new Promise((r) => setTimeout(r, 500));
    }
    t.equal(ready, 200, 'ready');
    const page = readFileSync(path.join(root, 'test/fixtures/photos/page.png'));
    const res = await fetch(`http://127.0.0.1:${port}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: page,
    });
    t.equal(res.status, 200, 'POST /predict (ocr, the default)');
    t.match(((await res.json()) as { lines: { text: string }[] }).lines[0].text, /region-based/i);
    t.equal(podman(['exec', id, 'id', '-u']).stdout.trim(), '1000', 'runs as uid 1000');
    t.equal(podman(['healthcheck', 'run', id]).status, 0, 'HEALTHCHECK passes');
    t.equal(podman(['stop', '-t', '30', id]).status, 0, 'podman stop');
    t.equal(podman(['inspect', '-f', '{{.State.ExitCode}}', id]).stdout.trim(), '0', 'exit code 0 after the drain');
  });
}
