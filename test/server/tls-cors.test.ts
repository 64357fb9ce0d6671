import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config.js';
import { startApp } from '../helpers/app.js';

// Optional HTTPS (a self-signed certificate for localhost, test/fixtures/tls) and CORS, which is off unless origins
// are configured.
const root = path.resolve(import.meta.dirname, '../..');
const tls = path.join(root, 'test/fixtures/tls');
const repo = mkdtempSync(path.join(tmpdir(), 'muon-repo-'));
t.teardown(() => rmSync(repo, { recursive: true, force: true }));
cpSync(path.join(root, 'models/language-id'), path.join(repo, 'language-id'), { recursive: true });
const base = { MUON_MODEL_REPOSITORY: repo, MUON_WARMUP: 'false' };

t.test('HTTPS with MUON_TLS_CERT_FILE and MUON_TLS_KEY_FILE', async (t) => {
  const ctx = await startApp({
    ...base,
    MUON_TLS_CERT_FILE: path.join(tls, 'cert.pem'),
    MUON_TLS_KEY_FILE: path.join(tls, 'key.pem'),
  });
  t.teardown(() => ctx.close());
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = ctx.app.server.address() as { port: number };
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/v2/health/live',
        servername: 'localhost',
        ca: readFileSync(path.join(tls, 'cert.pem')),
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end();
  });
  t.equal(status, 200, 'served over TLS, certificate verified');
  t.throws(() => loadConfig({ MUON_TLS_CERT_FILE: path.join(tls, 'cert.pem') }), ConfigError, 'both or neither');
  t.throws(
    () => loadConfig({ MUON_TLS_CERT_FILE: '/nope.pem', MUON_TLS_KEY_FILE: '/nope.key' }),
    /MUON_TLS_CERT_FILE: cannot read \/nope.pem/,
  );
});

t.test('CORS is off by default, on for the configured origins only', async (t) => {
  const preflight = (app: Awaited<ReturnType<typeof startApp>>['app'], origin: string) =>
    app.inject({
      method: 'OPTIONS',
      url: '/predict',
      headers: { origin, 'access-control-request-method': 'POST' },
    });
  const off = await startApp(base);
  t.teardown(() => off.close());
  const get = await off.app.inject({ url: '/v2/health/live', headers: { origin: 'https://app.example' } });
  t.equal(get.headers['access-control-allow-origin'], undefined, 'no CORS headers by default');
  t.equal((await preflight(off.app, 'https://app.example')).headers['access-control-allow-origin'], undefined);

  const on = await startApp({ ...base, MUON_CORS_ORIGINS: 'https://app.example, https://other.example' });
  t.teardown(() => on.close());
  const allowed = await preflight(on.app, 'https://app.example');
  t.equal(allowed.statusCode, 204);
  t.equal(allowed.headers['access-control-allow-origin'], 'https://app.example');
  t.equal((await preflight(on.app, 'https://evil.example')).headers['access-control-allow-origin'], undefined);
});
