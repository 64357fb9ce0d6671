import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { startApp } from '../helpers/app.js';
import { buildColorClassifier, COLOR_LABELS } from '../helpers/color-classifier.js';

// A manifest names files; none of them may lead out of the model folder or the npm package it names, not by a
// symlink and not by a package "name" that is a path. Failure reasons that clients can read carry no absolute path.
const repo = mkdtempSync(path.join(tmpdir(), 'muon-folder-'));
const outside = mkdtempSync(path.join(tmpdir(), 'muon-outside-'));
t.teardown(() => {
  rmSync(repo, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});
writeFileSync(path.join(outside, 'secrets.txt'), 'root:x:0\nadmin:x:1\nuser:x:2\n');
writeFileSync(path.join(outside, 'labels.txt'), 'root\nadmin\nuser\n');
writeFileSync(path.join(outside, 'package.json'), '{"name":"outside"}');

const model = buildColorClassifier();
const base = {
  task: 'image-classification',
  input: { height: 32, width: 32, resize: 'center-crop', scale: 1 / 255 },
  model: { sha256: createHash('sha256').update(model).digest('hex') },
};
function addModel(name: string, manifest: Record<string, unknown>, files: (dir: string) => void = () => {}) {
  const dir = path.join(repo, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'model.onnx'), model);
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ ...base, ...manifest }));
  files(dir);
}
addModel('colors', { labels: [...COLOR_LABELS] });
addModel('symlinked-labels', { labels: { file: 'labels.txt' } }, (dir) =>
  symlinkSync(path.join(outside, 'secrets.txt'), path.join(dir, 'labels.txt')),
);
addModel('symlinked-folder', { labels: { file: 'data/labels.txt' } }, (dir) =>
  symlinkSync(outside, path.join(dir, 'data')),
);
const relative = path.relative(path.join(repo, 'x'), outside); // ../../tmp/muon-outside-...
addModel('package-path', { labels: { file: 'secrets.txt', package: relative } });
addModel('package-dots', { labels: { file: 'secrets.txt', package: '../../outside' } });
// a folder that fails for a reason naming a file: the reason clients see must not show where the server lives
addModel('missing-file', { labels: { file: 'nowhere/labels.txt' } });

const ctx = await startApp({ MUON_MODEL_REPOSITORY: repo, MUON_ADMIN_TOKEN: 'a-token-of-16-chars+' });
t.teardown(() => ctx.close());
const { app } = ctx;

t.test('symlinks out of the folder and package names that are paths are refused at load', async (t) => {
  const errors = Object.fromEntries(ctx.failures.map((f) => [f.name, f.error]));
  t.same(Object.keys(errors).sort(), [
    'missing-file',
    'package-dots',
    'package-path',
    'symlinked-folder',
    'symlinked-labels',
  ]);
  t.match(errors['symlinked-labels'], /\/labels\/file 'labels.txt' points outside the model folder/);
  t.match(errors['symlinked-folder'], /\/labels\/file 'data\/labels.txt' points outside the model folder/);
  for (const name of ['package-path', 'package-dots']) t.match(errors[name], /\/labels\/package.*must match pattern/);
  const ok = await app.inject({ url: '/v1/models/colors' });
  t.equal(ok.json().state, 'READY');
});

t.test('and through the management API', async (t) => {
  const res = await app.inject({
    method: 'POST',
    url: '/v2/repository/models/symlinked-labels/load',
    headers: { authorization: 'Bearer a-token-of-16-chars+' },
  });
  t.equal(res.statusCode, 422);
  t.match(res.json().error, /points outside the model folder/);
  t.notMatch(res.body, /root:x|admin:x/);
});

t.test('answers that need no token show no absolute path', async (t) => {
  for (const [method, url] of [
    ['GET', '/v2/health/ready'],
    ['POST', '/v2/repository/index'],
    ['GET', '/v1/models'],
    ['GET', '/v1/models/missing-file'],
  ] as const) {
    const res = await app.inject({ method, url });
    t.notOk(res.body.includes(repo), `${url}: no repository path`);
    t.notOk(res.body.includes(outside), `${url}: no outside path`);
    t.notMatch(res.body, /"\/(tmp|work|home|usr)\//, `${url}: no absolute path at all`);
  }
  const index = (await app.inject({ method: 'POST', url: '/v2/repository/index' })).json();
  const missing = index.find((e: { name: string }) => e.name === 'missing-file');
  t.match(missing.reason, /<repository>\/missing-file\/nowhere\/labels.txt does not exist/);
});
