import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { metricValue, multipart, startApp } from '../helpers/app.js';

// Real inference of the default `text-orientation` model (PaddleOCR's text-line direction classifier) on text lines
// cropped from a real photographed book page (scikit-image's page.png), upright and rotated 180 degrees.

const fixtures = path.resolve(import.meta.dirname, '../fixtures/text-lines');
const lines: { id: string; text: string; robust: boolean }[] = JSON.parse(
  readFileSync(path.join(fixtures, 'manifest.json'), 'utf8'),
).lines;
const robust = lines.filter((l) => l.robust);
const png = (name: string) => readFileSync(path.join(fixtures, name));

const ctx = await startApp();
t.teardown(() => ctx.close());
const { app, metrics } = ctx;

t.test('the default repository loads and is ready', async (t) => {
  t.same(ctx.failures, []);
  const live = await app.inject({ url: '/v2/health/live' });
  t.equal(live.statusCode, 200);
  const ready = await app.inject({ url: '/v2/health/ready' });
  t.equal(ready.statusCode, 200);
  t.same(ready.json().models, [
    { name: 'face-detection', state: 'READY' },
    { name: 'language-id', state: 'READY' },
    { name: 'ocr', state: 'READY' },
    { name: 'ocr-fp32', state: 'READY' },
    { name: 'text-orientation', state: 'READY' },
    { name: 'text-orientation-folded', state: 'READY' },
    { name: 'text-orientation-fp32', state: 'READY' },
    { name: 'text-recognition', state: 'READY' },
    { name: 'text-recognition-folded', state: 'READY' },
    { name: 'text-recognition-fp32', state: 'READY' },
    { name: 'voice-activity', state: 'READY' },
    { name: 'voice-activity-fp32', state: 'READY' },
  ]);
});

t.test('large uploads, which take turns of the event loop as they are read, arrive whole', async (t) => {
  // a text line on a white page, stored without compression: about 0.6 MB (read taking turns, charged at once) and
  // 2.3 MB (charged a MiB at a time); multipart files take turns too
  for (const [width, height] of [
    [500, 400],
    [1000, 780],
  ]) {
    const line = png(`${robust[0].id}.png`);
    const { width: w = 0, height: h = 0 } = await sharp(line).metadata();
    const page = await sharp(line)
      .extend({ right: width - w, bottom: height - h, background: '#ffffff' })
      .png({ compressionLevel: 0 })
      .toBuffer();
    const raw = await app.inject({
      method: 'POST',
      url: '/predict?model=text-orientation',
      headers: { 'content-type': 'image/png' },
      payload: page,
    });
    const form = multipart([{ name: 'file', filename: 'page.png', type: 'image/png', data: page }]);
    const viaForm = await app.inject({ method: 'POST', url: '/predict?model=text-orientation', ...form });
    t.equal(raw.statusCode, 200, `${page.length} bytes raw: ${raw.body}`);
    t.equal(viaForm.statusCode, 200, `${page.length} bytes multipart: ${viaForm.body}`);
    t.same(viaForm.json(), raw.json(), `${page.length} bytes: the same answer either way`);
  }
});

t.test('upright and rotated real text lines are told apart (multipart and raw body)', async (t) => {
  t.ok(robust.length >= 6, 'at least 6 real text lines');
  for (const line of robust) {
    const up = multipart([
      { name: 'file', filename: `${line.id}.png`, type: 'image/png', data: png(`${line.id}.png`) },
    ]);
    const a = await app.inject({ method: 'POST', url: '/predict?model=text-orientation', ...up });
    t.equal(a.statusCode, 200, `${line.id} upright: ${a.body}`);
    t.equal(a.json().predictions[0].label, '0', `${line.id} "${line.text}" upright`);

    const b = await app.inject({
      method: 'POST',
      url: '/v1/models/text-orientation/predict',
      headers: { 'content-type': 'image/png' },
      payload: png(`${line.id}-rot180.png`),
    });
    t.equal(b.statusCode, 200);
    t.equal(b.json().predictions[0].label, '180', `${line.id} "${line.text}" rotated`);
  }
});

t.test(
  'the fp32 original tells them apart too, and agrees with the compressed default on every fixture line',
  async (t) => {
    const label = async (model: string, file: string) =>
      (
        await app.inject({
          method: 'POST',
          url: `/v1/models/${model}/predict`,
          headers: { 'content-type': 'image/png' },
          payload: png(file),
        })
      ).json().predictions[0].label;
    for (const line of robust) {
      t.equal(await label('text-orientation-fp32', `${line.id}.png`), '0', `${line.id} upright`);
      t.equal(await label('text-orientation-fp32', `${line.id}-rot180.png`), '180', `${line.id} rotated`);
    }
    for (const line of lines) {
      for (const file of [`${line.id}.png`, `${line.id}-rot180.png`]) {
        t.equal(
          await label('text-orientation', file),
          await label('text-orientation-fp32', file),
          `${file}: same label`,
        );
      }
    }
  },
);

t.test('response shape: model, version, task, predictions sorted by score, top_k', async (t) => {
  const res = await app.inject({
    method: 'POST',
    url: '/predict',
    headers: { 'content-type': 'image/png' },
    payload: png('line-03.png'),
  });
  t.equal(res.statusCode, 200, 'no ?model uses MUON_DEFAULT_MODEL');
  const body = res.json();
  t.match(body, { model: 'text-orientation', version: '2.0', task: 'image-classification' });
  t.equal(body.predictions.length, 2);
  t.ok(body.predictions[0].score >= body.predictions[1].score, 'sorted by score');
  t.match(body.predictions[0], { label: '0', index: 0, score: Number });
  t.ok(Math.abs(body.predictions[0].score + body.predictions[1].score - 1) < 1e-5, 'softmax scores sum to 1');
  t.ok(res.headers['x-request-id'], 'request id echoed');

  const one = await app.inject({
    method: 'POST',
    url: '/predict?top_k=1',
    headers: { 'content-type': 'image/png' },
    payload: png('line-03.png'),
  });
  t.equal(one.json().predictions.length, 1);
});

t.test('EXIF orientation is honoured', async (t) => {
  // stored upside down with EXIF Orientation=3: upright once the tag is applied
  const res = await app.inject({
    method: 'POST',
    url: '/predict',
    headers: { 'content-type': 'image/jpeg' },
    payload: png('line-01-exif180.jpg'),
  });
  t.equal(res.json().predictions[0].label, '0');
});

t.test('concurrent requests are batched, and answers equal the one-by-one answers', async (t) => {
  const files = robust.flatMap((l) => [`${l.id}.png`, `${l.id}-rot180.png`]);
  const send = (f: string) =>
    app
      .inject({ method: 'POST', url: '/predict', headers: { 'content-type': 'image/png' }, payload: png(f) })
      .then((r) => r.json());
  const alone: unknown[] = [];
  for (const f of files) alone.push(await send(f));

  const countBefore = await metricValue(metrics, 'muon_batch_size_count', { model: 'text-orientation' });
  const sumBefore = await metricValue(metrics, 'muon_batch_size_sum', { model: 'text-orientation' });
  const together = await Promise.all([...files, ...files].map(send));
  const batches = (await metricValue(metrics, 'muon_batch_size_count', { model: 'text-orientation' })) - countBefore;
  const items = (await metricValue(metrics, 'muon_batch_size_sum', { model: 'text-orientation' })) - sumBefore;
  t.equal(items, files.length * 2, 'every request went through the batcher');
  t.ok(batches < items, `${items} requests ran in ${batches} batches (some batch larger than 1)`);

  together.forEach((r, i) => {
    const a = r as { predictions: { label: string; score: number }[] };
    const b = alone[i % files.length] as typeof a;
    t.equal(a.predictions[0].label, b.predictions[0].label);
    t.ok(Math.abs(a.predictions[0].score - b.predictions[0].score) < 1e-4, 'same score batched or alone');
  });
});

t.test('/v1/models describes the model, its provider and batching', async (t) => {
  const res = await app.inject({ url: '/v1/models' });
  const m = res.json().models.find((x: { name: string }) => x.name === 'text-orientation');
  t.match(m, {
    name: 'text-orientation',
    task: 'image-classification',
    state: 'READY',
    execution_provider: 'cpu',
    input: { name: 'x', shape: [-1, 3, 48, 192], layout: 'NCHW', resize: 'fit-height', channels: 'BGR' },
    batching: { max_batch_size: 8, max_queue_delay_ms: Number, fixed_batch: false },
  });
  t.match(
    m.compression,
    {
      method: 'fold+prune-channels-per-layer',
      sizeBytes: { before: Number, after: Number },
      fidelity: { metric: 'top1-agreement' },
    },
    'the default is the compressed variant, and says so',
  );
  const folded = res.json().models.find((x: { name: string }) => x.name === 'text-orientation-folded');
  t.match(folded.compression, { method: 'fold' }, 'the folded copy ocr calls is not pruned');
  const original = res.json().models.find((x: { name: string }) => x.name === 'text-orientation-fp32');
  t.equal(original.compression, null, 'an original model has no compression record');
  t.equal((await app.inject({ url: '/v1/models/text-orientation' })).json().name, 'text-orientation');
  t.equal((await app.inject({ url: '/v1/models/nope' })).json().code, 'MUON_ERR_MODEL_NOT_FOUND');
});

t.test('/metrics exports every documented metric', async (t) => {
  const res = await app.inject({ url: '/metrics' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /text\/plain/);
  // the documented metric table (docs/operations.md) and the exported metrics are the same list
  const readme = readFileSync(path.resolve(import.meta.dirname, '../../docs/operations.md'), 'utf8');
  const documented = [...readme.matchAll(/^\| `(muon_[a-z_]+)` \|/gm)].map((m) => m[1]).sort();
  const exported = [...res.body.matchAll(/^# TYPE (muon_[a-z_]+) /gm)].map((m) => m[1]).sort();
  t.ok(documented.includes('muon_batch_size'), 'the README table is found');
  t.same(exported, documented);
  t.match(res.body, /muon_model_info\{model="text-orientation",version="2.0",provider="cpu"\} 1/);
  t.match(res.body, /muon_requests_total\{model="text-orientation",code="200"\} \d+/);
});

t.test('OpenAPI document is generated from the route schemas', async (t) => {
  const res = await app.inject({ url: '/openapi.json' });
  t.equal(res.statusCode, 200);
  const doc = res.json();
  t.ok(doc.openapi?.startsWith('3.'));
  t.ok(doc.paths['/predict']?.post, '/predict is documented');
  t.ok(doc.paths['/v1/models/{name}/predict']?.post);
  t.ok(doc.paths['/v2/models/{name}/infer']?.post, 'the v2 protocol too');
  const ui = await app.inject({ url: '/docs' });
  t.equal(ui.statusCode, 200);
  t.match(ui.headers['content-type'], /text\/html/, 'a docs page at /docs');
});
