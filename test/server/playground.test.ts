import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Fastify from 'fastify';
import t from 'tap';
import type { RouteDeps } from '../../src/server/app.js';
import { PLAYGROUND_CSP } from '../../src/server/routes/playground.js';
import { startApp } from '../helpers/app.js';

// The playground's static files: served from a fixed list with their types, the CSP and revalidation headers; any
// other path under /playground is a 404 (the page itself is driven in a browser by playground-browser.test.ts).
const root = path.resolve(import.meta.dirname, '../..');
const repo = mkdtempSync(path.join(tmpdir(), 'muon-repo-'));
t.teardown(() => rmSync(repo, { recursive: true, force: true }));
cpSync(path.join(root, 'models/language-id'), path.join(repo, 'language-id'), { recursive: true });
const ctx = await startApp({ MUON_MODEL_REPOSITORY: repo, MUON_WARMUP: 'false' });
t.teardown(() => ctx.close());
const { app } = ctx;

const assets = {
  '/playground': 'text/html; charset=utf-8',
  '/playground/index.html': 'text/html; charset=utf-8',
  '/playground/style.css': 'text/css; charset=utf-8',
  '/playground/app.js': 'text/javascript; charset=utf-8',
  '/playground/api.js': 'text/javascript; charset=utf-8',
  '/playground/draw.js': 'text/javascript; charset=utf-8',
  '/playground/audio.js': 'text/javascript; charset=utf-8',
  '/playground/icon.svg': 'image/svg+xml',
};

t.test('the page and its files, with their types, CSP and cache headers', async (t) => {
  for (const [url, type] of Object.entries(assets)) {
    const res = await app.inject({ url });
    t.equal(res.statusCode, 200, url);
    t.equal(res.headers['content-type'], type, `${url} type`);
    t.equal(res.headers['content-security-policy'], PLAYGROUND_CSP, `${url} CSP`);
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${url} nosniff`);
    t.equal(res.headers['cache-control'], 'no-cache', `${url} is revalidated`);
    t.match(res.headers.etag, /^"[\w-]{22}"$/, `${url} etag`);
    t.ok(res.body.length > 0, `${url} has a body`);
    // nothing from another origin: no CDN, no external font, no absolute URL to fetch
    t.notMatch(res.body, /(?:src|href)=["']?(?:https?:)?\/\//i, `${url} loads nothing from elsewhere`);
    t.notMatch(res.body, /@import|url\(\s*["']?(?:https?:)?\/\//i, `${url} imports no outside CSS`);
  }
  t.match(PLAYGROUND_CSP, /default-src 'none'/);
  for (const directive of ['script-src', 'style-src', 'connect-src', 'img-src']) {
    t.match(PLAYGROUND_CSP, new RegExp(`${directive} 'self'(;|$)`), `${directive}: self only`);
  }
  t.notMatch(PLAYGROUND_CSP, /unsafe|blob:|data:|\*/, 'no inline code, no blob:, data: or wildcard sources');
});

t.test('every file the page references is served', async (t) => {
  const html = (await app.inject({ url: '/playground' })).body;
  const referenced = [...html.matchAll(/(?:src|href)="(\/playground\/[^"]+)"/g)].map((m) => m[1]!);
  for (const file of ['app.js', 'api.js', 'draw.js', 'audio.js']) {
    const js = (await app.inject({ url: `/playground/${file}` })).body;
    referenced.push(...[...js.matchAll(/from '\.\/([\w-]+\.js)'/g)].map((m) => `/playground/${m[1]}`));
  }
  t.ok(referenced.length >= 6, `${referenced.length} references`);
  for (const url of new Set(referenced)) t.equal((await app.inject({ url })).statusCode, 200, url);
});

t.test('a matching If-None-Match is answered 304 without a body', async (t) => {
  const first = await app.inject({ url: '/playground/app.js' });
  const again = await app.inject({ url: '/playground/app.js', headers: { 'if-none-match': first.headers.etag } });
  t.equal(again.statusCode, 304);
  t.equal(again.body, '');
  t.equal(again.headers.etag, first.headers.etag);
  const stale = await app.inject({ url: '/playground/app.js', headers: { 'if-none-match': '"old"' } });
  t.equal(stale.statusCode, 200);
});

t.test('HEAD is answered like GET, without the body', async (t) => {
  const res = await app.inject({ method: 'HEAD', url: '/playground/style.css' });
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], 'text/css; charset=utf-8');
  t.equal(res.body, '');
});

t.test('/ and /playground/ redirect to the page', async (t) => {
  for (const url of ['/', '/playground/']) {
    const res = await app.inject({ url });
    t.equal(res.statusCode, 302, url);
    t.equal(res.headers.location, '/playground', url);
  }
});

t.test('an unknown file is a 404 with our error body', async (t) => {
  for (const url of [
    '/playground/nope.js',
    '/playground/APP.JS',
    '/playground/app.js.map',
    '/playground/constructor',
  ]) {
    const res = await app.inject({ url });
    t.equal(res.statusCode, 404, url);
    t.equal(res.json().code, 'MUON_ERR_NOT_FOUND', url);
    t.notOk(res.headers['content-security-policy'], `${url}: no page headers on an error`);
  }
});

t.test('path traversal never reaches the file system', async (t) => {
  const urls = [
    '/playground/../package.json',
    '/playground/%2e%2e/package.json',
    '/playground/%2e%2e%2fpackage.json',
    '/playground/..%2f..%2fpackage.json',
    '/playground/..%5c..%5cpackage.json',
    '/playground/%2e%2e%2f%2e%2e%2fsrc%2fconfig.ts',
    '/playground/..%2f',
    '/playground/.%2fapp.js',
    '/playground/app.js%00.png',
    '/playground/%2fetc%2fpasswd',
    '/playground//etc/passwd',
  ];
  for (const url of urls) {
    const res = await app.inject({ url });
    t.equal(res.statusCode, 404, url);
    t.equal(res.json().code, 'MUON_ERR_NOT_FOUND', url);
    t.notMatch(res.body, /"name"\s*:\s*"muon-serve"|root:/, `${url} leaks no file`);
  }
  // a literal dot segment is resolved before routing, as a browser resolves it: `/playground/..` is `/`, a redirect
  for (const url of ['/playground/..', '/playground/%2e%2e', '/playground/style.css/..']) {
    const up = await app.inject({ url });
    t.equal(up.statusCode, 302, url);
    t.equal(up.headers.location, '/playground', url);
  }
});

t.test('unnormalized paths sent as they are over a socket are 404s too', async (t) => {
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as { port: number };
  /** The status line of one raw request whose path no client library resolved first. */
  const statusOf = (target: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () =>
        socket.write(`GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`),
      );
      let text = '';
      socket.on('data', (d) => (text += d));
      socket.on('end', () => resolve(text.split('\r\n')[0]!));
      socket.on('error', reject);
    });
  for (const target of [
    '/playground/../package.json',
    '/playground/./app.js',
    '/playground/..',
    '/playground/%2e%2e',
    '/playground/../../../../etc/passwd',
    '/playground/style.css/..',
  ]) {
    t.equal(await statusOf(target), 'HTTP/1.1 404 Not Found', target);
  }
  t.equal(await statusOf('/playground/app.js'), 'HTTP/1.1 200 OK', 'while the real file is served');
});

t.test('the playground is documented under its tag; its files are not', async (t) => {
  const doc = (await app.inject({ url: '/openapi.json' })).json() as { paths: Record<string, any> };
  t.same(doc.paths['/playground']?.get?.tags, ['playground']);
  t.ok(doc.paths['/playground']?.get?.summary);
  t.same(doc.paths['/']?.get?.tags, ['playground']);
  t.notOk(doc.paths['/playground/{file}'], 'files are hidden');
  t.notOk(doc.paths['/playground/'], 'the trailing-slash redirect is hidden');
});

t.test('without its files the server still serves the API, with a warning, and no page', async (t) => {
  const fs = await import('node:fs');
  const { playgroundRoutes } = await t.mockImport<typeof import('../../src/server/routes/playground.js')>(
    '../../src/server/routes/playground.js',
    { 'node:fs': { ...fs, existsSync: () => false } },
  );
  const warnings: string[] = [];
  const bare = Fastify();
  t.teardown(() => bare.close());
  const deps = { logger: { warn: (msg: string) => warnings.push(msg) } } as unknown as RouteDeps;
  await bare.register(playgroundRoutes as never, deps); // a bare Fastify, not the app type the plugin is written for
  t.equal((await bare.inject({ url: '/playground' })).statusCode, 404);
  t.equal((await bare.inject({ url: '/' })).statusCode, 404);
  t.same(warnings, ['playground files not found; /playground is not served']);
});
