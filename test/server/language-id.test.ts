import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { metricValue, startApp } from '../helpers/app.js';

// The default `language-id` model through HTTP: text/plain and JSON bodies, batching under concurrency, and the
// text-specific errors. The texts are identified as lande() identifies them (test/models/language-id.test.ts).

const capture = mkdtempSync(path.join(tmpdir(), 'muon-langid-capture-'));
t.teardown(() => rmSync(capture, { recursive: true, force: true }));
const ctx = await startApp({ MUON_CAPTURE_DIR: capture, MUON_CAPTURE_RATE: '1' });
t.teardown(() => ctx.close());
const { app, metrics } = ctx;

const sentences: [string, string][] = [
  ['Bonjour tout le monde', 'fra'],
  ['The weather is lovely today, shall we go for a walk?', 'eng'],
  ['Ich habe heute keine Zeit, vielleicht morgen.', 'deu'],
  ['¿Dónde está la estación de tren?', 'spa'],
  ['Mi piace molto la cucina italiana.', 'ita'],
  ['Мы пошли в магазин, чтобы купить хлеба и молока.', 'rus'],
  ['我们明天早上去公园散步吧。', 'cmn'],
  ['Dziękuję bardzo za pomoc, to było naprawdę miłe.', 'pol'],
];

const plain = (text: string | Buffer, url = '/predict?model=language-id', type = 'text/plain') =>
  app.inject({ method: 'POST', url, headers: { 'content-type': type }, payload: text });
const json = (body: unknown, url = '/predict?model=language-id') =>
  app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) });

t.test('both models load', async (t) => {
  t.same(ctx.failures, []);
  t.match((await app.inject({ url: '/v1/models/language-id' })).json(), {
    task: 'language-id',
    state: 'READY',
    input: { name: 'features', shape: [-1, 620], kind: 'text', maxBytes: 16384 },
    labels: 50,
  });
});

t.test('sentences in several languages are identified, text/plain and JSON', async (t) => {
  for (const [text, lang] of sentences) {
    const a = await plain(text);
    t.equal(a.statusCode, 200, a.body);
    t.equal(a.json().predictions[0].label, lang, `text/plain: ${text}`);
    const b = await json({ text }, '/v1/models/language-id/predict');
    t.equal(b.statusCode, 200, b.body);
    t.same(b.json(), a.json(), 'JSON gives the same answer');
  }
  const utf8 = await plain(Buffer.from('Bonjour tout le monde'), undefined, 'text/plain; charset=utf-8');
  t.equal(utf8.json().predictions[0].label, 'fra', 'charset=utf-8 is accepted');
});

t.test('response shape: model, version, task, sorted predictions, top_k', async (t) => {
  const body = (await plain('Bonjour tout le monde')).json();
  t.match(body, { model: 'language-id', version: '1.0.10', task: 'language-id' });
  t.equal(body.predictions.length, 3, "the manifest's topK");
  t.match(body.predictions[0], { label: 'fra', index: 17, score: Number });
  for (let i = 1; i < body.predictions.length; i++) t.ok(body.predictions[i - 1].score >= body.predictions[i].score);
  const all = (await plain('Bonjour tout le monde', '/predict?model=language-id&top_k=50')).json().predictions;
  t.equal(all.length, 50);
  t.ok(Math.abs(all.reduce((s: number, p: { score: number }) => s + p.score, 0) - 1) < 1e-5, 'probabilities');
  t.equal((await plain('Bonjour tout le monde', '/predict?model=language-id&top_k=1')).json().predictions.length, 1);
});

t.test('concurrent requests are batched, and answers equal the one-by-one answers', async (t) => {
  const texts = sentences.map(([s]) => s);
  const alone: unknown[] = [];
  for (const s of texts) alone.push((await plain(s)).json());
  const labels = { model: 'language-id' };
  const countBefore = await metricValue(metrics, 'muon_batch_size_count', labels);
  const sumBefore = await metricValue(metrics, 'muon_batch_size_sum', labels);
  const all = [...texts, ...texts, ...texts, ...texts];
  const together = await Promise.all(all.map((s, i) => (i % 2 ? json({ text: s }) : plain(s))));
  const batches = (await metricValue(metrics, 'muon_batch_size_count', labels)) - countBefore;
  const items = (await metricValue(metrics, 'muon_batch_size_sum', labels)) - sumBefore;
  t.equal(items, all.length, 'every request went through the batcher');
  t.ok(batches < items, `${items} requests ran in ${batches} batches (some batch larger than 1)`);
  together.forEach((r, i) => {
    t.equal(r.statusCode, 200);
    const a = r.json() as { predictions: { label: string; score: number }[] };
    const b = alone[i % texts.length] as typeof a;
    t.equal(a.predictions[0].label, b.predictions[0].label);
    a.predictions.forEach((p, j) => t.ok(Math.abs(p.score - b.predictions[j].score) < 1e-6, 'same score'));
  });
});

t.test('text errors', async (t) => {
  const expect = async (res: Promise<{ statusCode: number; json(): any }>, status: number, code: string) => {
    const r = await res;
    t.equal(r.statusCode, status, code);
    t.equal(r.json().code, code);
    t.notOk(r.json().stack);
  };
  await expect(plain(''), 400, 'MUON_ERR_MISSING_INPUT');
  await expect(plain(' \n\t  '), 400, 'MUON_ERR_MISSING_INPUT');
  await expect(json({ text: '' }), 400, 'MUON_ERR_MISSING_INPUT');
  await expect(json({ text: '   ' }), 400, 'MUON_ERR_MISSING_INPUT');
  await expect(plain('1234 5678 !!!'), 400, 'MUON_ERR_MISSING_INPUT');
  await expect(plain(Buffer.from([0x42, 0x6f, 0xff, 0x6e])), 400, 'MUON_ERR_INVALID_TEXT');
  await expect(plain(Buffer.from([0xc3])), 400, 'MUON_ERR_INVALID_TEXT'); // truncated sequence
  await expect(plain(Buffer.from([0xed, 0xa0, 0x80])), 400, 'MUON_ERR_INVALID_TEXT'); // a lone surrogate
  await expect(plain('abc', undefined, 'text/plain; charset=iso-8859-1'), 415, 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE');
  await expect(plain('é'.repeat(8193)), 413, 'MUON_ERR_TEXT_TOO_LARGE'); // 16386 bytes, 8193 characters
  t.equal((await plain('é'.repeat(8192))).statusCode, 200, 'exactly maxBytes is accepted');
  await expect(json({ txt: 'hello' }), 400, 'MUON_ERR_BAD_REQUEST');
  await expect(json({ text: 'hello', lang: 'en' }), 400, 'MUON_ERR_BAD_REQUEST');
  await expect(json(['hello']), 400, 'MUON_ERR_BAD_REQUEST');
});

t.test('a model takes only its own input kind (415)', async (t) => {
  const png = readFileSync(path.resolve(import.meta.dirname, '../fixtures/text-lines/line-03.png'));
  const img = await plain(png, undefined, 'image/png');
  t.equal(img.statusCode, 415);
  t.match(img.json(), { code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE', message: /takes text input, not image/ });
  for (const r of [await plain('hello', '/predict?model=text-orientation'), await json({ text: 'hi' }, '/predict')]) {
    t.equal(r.statusCode, 415);
    t.match(r.json(), { code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE', message: /takes image input, not text/ });
  }
});

t.test('captured text inputs are stored as UTF-8 .txt files', async (t) => {
  await plain('Grüße aus München');
  const stored = () => {
    try {
      const dir = path.join(capture, 'language-id');
      return readdirSync(dir)
        .filter((f) => f.endsWith('.txt'))
        .map((f) => readFileSync(path.join(dir, f), 'utf8'));
    } catch {
      return []; // the folder appears with the first write
    }
  };
  // capture writes are fire-and-forget, and earlier tests' texts are there too: wait for this one
  for (let i = 0; i < 100 && !stored().includes('Grüße aus München'); i++) await new Promise((r) => setTimeout(r, 10));
  t.ok(stored().includes('Grüße aus München'), 'the text is stored as sent');
});
