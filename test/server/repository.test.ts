import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { startApp } from '../helpers/app.js';
import { batchMetrics } from '../../src/models/loader.js';

// Model management (Triton's repository extension): index, load, unload, a version swap under concurrent load with
// no failed request, checks that keep the serving version when the new one is bad, the token, and path traversal.
const root = path.resolve(import.meta.dirname, '../..');
const repo = mkdtempSync(path.join(tmpdir(), 'muon-repo-'));
t.teardown(() => rmSync(repo, { recursive: true, force: true }));
const folder = path.join(repo, 'text-orientation');
cpSync(path.join(root, 'models/text-orientation'), folder, { recursive: true });
const v2 = JSON.parse(readFileSync(path.join(folder, 'manifest.json'), 'utf8'));
const fp32 = JSON.parse(readFileSync(path.join(root, 'models/text-orientation-fp32/manifest.json'), 'utf8'));
const lines = path.join(root, 'test/fixtures/text-lines');
mkdirSync(path.join(folder, 'rollout'));
for (const f of ['line-01.png', 'line-03.png', 'line-03-rot180.png', 'word-01.png'])
  cpSync(path.join(lines, f), path.join(folder, 'rollout', f));
const writeManifest = (m: object) => writeFileSync(path.join(folder, 'manifest.json'), JSON.stringify(m));

const token = 'a-long-enough-admin-token';
const ctx = await startApp({ MUON_MODEL_REPOSITORY: repo, MUON_ADMIN_TOKEN: token });
t.teardown(() => ctx.close());
const { app } = ctx;
const auth = { authorization: `Bearer ${token}` };
const manage = (action: 'load' | 'unload', name = 'text-orientation', headers: Record<string, string> = auth) =>
  app.inject({ method: 'POST', url: `/v2/repository/models/${name}/${action}`, headers });
const image = readFileSync(path.join(lines, 'line-03.png'));
const predict = () =>
  app.inject({
    method: 'POST',
    url: '/predict?model=text-orientation',
    headers: { 'content-type': 'image/png' },
    payload: image,
  });

t.test('index lists the folders with state and version', async (t) => {
  const res = await app.inject({ method: 'POST', url: '/v2/repository/index' });
  t.equal(res.statusCode, 200);
  t.same(res.json(), [{ name: 'text-orientation', version: '2.0', state: 'READY' }]);
});

t.test('changes need the bearer token; names cannot leave the repository', async (t) => {
  t.match((await manage('load', 'text-orientation', {})).json(), { code: 'MUON_ERR_UNAUTHORIZED' });
  const wrong = await manage('load', 'text-orientation', { authorization: 'Bearer not-the-token-at-all' });
  t.equal(wrong.statusCode, 401);
  // a file of the repository, as the default models/ holds manifest.schema.json: not a model (was a 500, ENOTDIR)
  writeFileSync(path.join(repo, 'manifest.schema.json'), '{}');
  for (const name of ['..%2F..%2Fetc', '%2e%2e', 'nope', '.hidden', 'manifest.schema.json']) {
    const res = await manage('load', name);
    t.equal(res.statusCode, 404, name);
    // '..' is resolved by the router (no such route); the others reach the name check
    t.match(res.json(), { code: /^MUON_ERR_(MODEL_)?NOT_FOUND$/ });
  }
  const closed = await startApp({ MUON_MODEL_REPOSITORY: repo, MUON_WARMUP: 'false' });
  t.teardown(() => closed.close());
  const res = await closed.app.inject({ method: 'POST', url: '/v2/repository/models/text-orientation/load' });
  t.equal(res.statusCode, 403, 'no MUON_ADMIN_TOKEN: disabled');
  t.match(res.json(), { code: 'MUON_ERR_ADMIN_DISABLED' });
});

t.test('a new version is swapped in under load with no failed request', async (t) => {
  // version 3.0: the fp32 original, checked against the serving int8 model on the rollout samples
  writeManifest({ ...fp32, version: '3.0', rollout: { samples: 'rollout', minAgreement: 1 } });
  let stop = false;
  const statuses: number[] = [];
  const versions = new Set<string>();
  const load = (async () => {
    while (!stop) {
      const batch = await Promise.all(Array.from({ length: 8 }, predict));
      for (const r of batch) {
        statuses.push(r.statusCode);
        if (r.statusCode === 200) versions.add(r.json().version);
      }
    }
  })();
  await new Promise((r) => setTimeout(r, 100));
  const swap = await manage('load');
  await new Promise((r) => setTimeout(r, 200));
  stop = true;
  await load;
  t.equal(swap.statusCode, 200, swap.body);
  t.ok(statuses.length > 16, `${statuses.length} requests during the swap`);
  t.same(
    statuses.filter((s) => s !== 200),
    [],
    'no request failed',
  );
  t.same([...versions].sort(), ['2.0', '3.0'], 'answered by the old version, then by the new one');
  t.equal((await app.inject({ url: '/v2/models/text-orientation' })).json().versions[0], '3.0');
  t.equal((await predict()).json().version, '3.0');
});

t.test('a bad new version is refused and the serving one stays', async (t) => {
  writeFileSync(path.join(folder, 'manifest.json'), '{ not json');
  let res = await manage('load');
  t.equal(res.statusCode, 422);
  t.match(res.json(), { code: 'MUON_ERR_LOAD_FAILED', error: /not valid JSON/ });
  // the labels swapped: loads fine, but disagrees with the serving model on the rollout samples
  writeManifest({ ...fp32, version: '4.0', labels: ['180', '0'], rollout: { samples: 'rollout' } });
  res = await manage('load');
  t.equal(res.statusCode, 422);
  t.match(res.json().error, /agrees with the serving one on 0 of 4 rollout samples/);
  writeManifest({ ...v2, task: 'language-id' });
  t.equal((await manage('load')).statusCode, 422, 'an invalid manifest for another task');
  const after = await predict();
  t.equal(after.statusCode, 200);
  t.equal(after.json().version, '3.0', 'still the serving version');
  t.equal((await app.inject({ url: '/v2/health/ready' })).statusCode, 200);
  // a new folder that does not load: refused, shown in the index, and the server stays ready
  mkdirSync(path.join(repo, 'broken'));
  writeFileSync(path.join(repo, 'broken', 'manifest.json'), JSON.stringify({ task: 'image-classification' }));
  t.teardown(() => rmSync(path.join(repo, 'broken'), { recursive: true, force: true }));
  t.equal((await manage('load', 'broken')).statusCode, 422);
  t.equal(
    (await app.inject({ url: '/v2/health/ready' })).statusCode,
    200,
    'a failed admin load does not fail readiness',
  );
  const index = (await app.inject({ method: 'POST', url: '/v2/repository/index' })).json();
  t.match(index, [{ name: 'broken', state: 'UNAVAILABLE', reason: /invalid manifest/ }, { name: 'text-orientation' }]);
  rmSync(path.join(repo, 'broken'), { recursive: true, force: true });
});

t.test('unload, then load again', async (t) => {
  writeManifest(v2);
  t.equal((await manage('unload')).statusCode, 200);
  const gone = await predict();
  t.equal(gone.statusCode, 503);
  t.match(gone.json(), { code: 'MUON_ERR_MODEL_NOT_READY', message: /unloaded/ });
  t.equal((await app.inject({ url: '/v2/health/ready' })).statusCode, 200, 'an unloaded model does not fail readiness');
  const index = (await app.inject({ method: 'POST', url: '/v2/repository/index' })).json();
  t.same(
    index.filter((e: { name: string }) => e.name === 'text-orientation'),
    [{ name: 'text-orientation', state: 'UNAVAILABLE', reason: 'unloaded' }],
  );
  t.equal((await manage('load')).statusCode, 200);
  t.equal((await predict()).json().version, '2.0');
  t.equal((await manage('unload', 'nope')).statusCode, 404);
});

t.test('numbered version folders and the version policy', async (t) => {
  const vrepo = mkdtempSync(path.join(tmpdir(), 'muon-versions-'));
  t.teardown(() => rmSync(vrepo, { recursive: true, force: true }));
  const src = path.join(root, 'models/language-id');
  const { version: _drop, ...manifest } = JSON.parse(readFileSync(path.join(src, 'manifest.json'), 'utf8'));
  for (const v of ['1', '2', '3']) {
    cpSync(src, path.join(vrepo, 'langid', v), { recursive: true });
    writeFileSync(path.join(vrepo, 'langid', v, 'manifest.json'), JSON.stringify(manifest));
  }
  const c = await startApp({ MUON_MODEL_REPOSITORY: vrepo, MUON_ADMIN_TOKEN: token, MUON_WARMUP: 'false' });
  t.teardown(() => c.close());
  const policy = (p: object) => writeFileSync(path.join(vrepo, 'langid', 'versions.json'), JSON.stringify(p));
  const reload = () => c.app.inject({ method: 'POST', url: '/v2/repository/models/langid/load', headers: auth });
  const versions = async () => (await c.app.inject({ url: '/v2/models/langid' })).json().versions;
  const ask = (url: string) =>
    c.app.inject({ method: 'POST', url, headers: { 'content-type': 'text/plain' }, payload: 'Das ist ein Satz.' });

  t.same(await versions(), ['3'], 'default policy: the latest version');
  t.equal((await ask('/v1/models/langid/predict')).json().version, '3');
  const v2 = await c.app.inject({ url: '/v2/models/langid/versions/2/ready' });
  t.equal(v2.statusCode, 404);
  t.match(v2.json(), { code: 'MUON_ERR_VERSION_NOT_FOUND' });

  policy({ policy: 'specific', versions: ['1', '3'] });
  t.equal((await reload()).statusCode, 200);
  t.same(await versions(), ['1', '3']);
  t.same((await c.app.inject({ method: 'POST', url: '/v2/repository/index' })).json(), [
    { name: 'langid', version: '1', state: 'READY' },
    { name: 'langid', version: '3', state: 'READY' },
  ]);
  const features = (await c.app.inject({ url: '/v2/models/langid/versions/1' })).json().inputs[0];
  const x = {
    name: features.name,
    shape: [1, features.shape[1]],
    datatype: 'FP32',
    data: new Array(features.shape[1]).fill(0),
  };
  const one = await c.app.inject({
    method: 'POST',
    url: '/v2/models/langid/versions/1/infer',
    payload: { inputs: [x] },
  });
  t.equal(one.json().model_version, '1', 'a given version answers');
  t.equal((await ask('/predict?model=langid')).json().version, '3', 'unversioned requests get the highest');

  policy({ policy: 'latest', count: 2 });
  t.equal((await reload()).statusCode, 200);
  t.same(await versions(), ['2', '3']);
  policy({ policy: 'all' });
  t.equal((await reload()).statusCode, 200);
  t.same(await versions(), ['1', '2', '3']);

  policy({ policy: 'newest' });
  const bad = await reload();
  t.equal(bad.statusCode, 422);
  t.match(bad.json().error, /versions.json: \/policy must be/);
  policy({ policy: 'specific', versions: [] });
  t.match((await reload()).json().error, /the policy selects no version/);
  policy({ policy: 'specific', versions: ['9'] });
  t.match((await reload()).json().error, /versions 9 have no folder/);
  policy({ policy: 'latest', count: 1 });
  writeFileSync(path.join(vrepo, 'langid', '3', 'manifest.json'), JSON.stringify({ ...manifest, version: '7' }));
  t.match((await reload()).json().error, /\/version is '7' but the version folder is '3'/);
  t.same(await versions(), ['1', '2', '3'], 'refused loads leave the serving versions');
});

t.test(
  'muon_queue_depth{model} is the sum of the queues of all of a model’s batchers (versions, a reload)',
  async (t) => {
    const depths = new Map<object, number>(); // the repository keeps one per model, across its loads
    const observer = (model: string) => batchMetrics(ctx.metrics, model, depths);
    const depth = async () => {
      const text = await ctx.metrics.registry.getSingleMetricAsString('muon_queue_depth');
      return Number(/muon_queue_depth\{model="depth-probe"\} (\d+)/.exec(text)?.[1]);
    };
    const [serving, fresh] = [observer('depth-probe'), observer('depth-probe')];
    serving.depthChanged!(3);
    fresh.depthChanged!(2);
    t.equal(await depth(), 5);
    serving.depthChanged!(0);
    t.equal(await depth(), 2, 'the drained old version no longer hides the new one’s queue');
    fresh.depthChanged!(0);
    t.equal(await depth(), 0);
  },
);
