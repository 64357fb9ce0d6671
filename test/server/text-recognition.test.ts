import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { cudaBatchingCopy, metricValue, multipart, startApp } from '../helpers/app.js';

// The default `text-recognition` model (PaddleOCR PP-OCRv4 rec) on real text lines cropped from a photographed book
// page (test/fixtures/text-lines). The model drops some spaces between English words (it is a Chinese+English model),
// so text is scored by character error rate rather than asserted exactly.

const fixtures = path.resolve(import.meta.dirname, '../fixtures/text-lines');
const lines: { id: string; text: string; robust: boolean; rect: { width: number; height: number } }[] = JSON.parse(
  readFileSync(path.join(fixtures, 'manifest.json'), 'utf8'),
).lines;
const robust = lines.filter((l) => l.robust);
const png = (id: string) => readFileSync(path.join(fixtures, `${id}.png`));

const ctx = await startApp();
t.teardown(() => ctx.close());
const { app } = ctx;

/** Levenshtein distance between two strings, by UTF-16 code unit (the fixtures are ASCII). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

const recognize = (bytes: Buffer, url = '/v1/models/text-recognition/predict', on = app) =>
  on.inject({ method: 'POST', url, headers: { 'content-type': 'image/png' }, payload: bytes });

t.test('the model loads and describes itself', async (t) => {
  t.same(ctx.failures, []);
  const res = await app.inject({ url: '/v1/models/text-recognition' });
  t.equal(res.statusCode, 200);
  t.match(res.json(), {
    name: 'text-recognition',
    task: 'text-recognition',
    state: 'READY',
    input: {
      name: 'x',
      shape: [-1, 3, 48, -1],
      layout: 'NCHW',
      channels: 'BGR',
      resize: 'fit-height',
      minWidth: 320,
      maxWidth: 4096,
      widthStep: 32,
      classes: 6625,
    },
    outputs: [{ name: 'softmax_11.tmp_0', type: 'float32' }],
    labels: 6623,
    thread: 'worker',
    batching: { max_batch_size: 1, max_in_flight_batches: 2, fixed_batch: false },
  });
});

t.test('real text lines are read: most exactly (case-insensitive), character error rate under 0.15', async (t) => {
  let errors = 0;
  let chars = 0;
  let exact = 0;
  const report: string[] = [];
  for (const line of robust) {
    const up = multipart([{ name: 'file', filename: `${line.id}.png`, type: 'image/png', data: png(line.id) }]);
    const res = await app.inject({ method: 'POST', url: '/predict?model=text-recognition', ...up });
    t.equal(res.statusCode, 200, res.body);
    const body = res.json();
    t.match(body, { model: 'text-recognition', version: '4.0', task: 'text-recognition' });
    t.equal(body.lines.length, 1, 'one line');
    const { text, score } = body.lines[0];
    t.ok(score > 0.5 && score <= 1, `${line.id} score ${score}`);
    const d = editDistance(text.toLowerCase(), line.text.toLowerCase());
    errors += d;
    chars += line.text.length;
    if (d === 0) exact++;
    report.push(`${line.id} CER ${(d / line.text.length).toFixed(3)} "${text}" (truth "${line.text}")`);
  }
  const cer = errors / chars;
  t.comment(report.join('\n'));
  t.comment(`overall CER ${cer.toFixed(4)} (${errors}/${chars}), ${exact}/${robust.length} exact`);
  t.ok(robust.length >= 10, 'at least 10 real lines');
  t.ok(exact > robust.length / 2, `${exact} of ${robust.length} lines exact`);
  t.ok(cer < 0.15, `overall CER ${cer.toFixed(4)}`);
});

t.test('concurrent lines of different widths batch by width bucket, same answers as one by one', async (t) => {
  const ids = [...robust.map((l) => l.id), 'hard-02']; // buckets 320 to 960
  const alone: { text: string; score: number }[] = [];
  for (const id of ids) alone.push((await recognize(png(id))).json().lines[0]);

  // the shipped manifest batches only on CUDA (one line per run is fastest on a CPU): a copy with its CUDA settings
  const batched = await startApp({ MUON_MODEL_REPOSITORY: cudaBatchingCopy(['text-recognition']) });
  t.teardown(() => batched.close());
  const labels = { model: 'text-recognition' };
  const countBefore = await metricValue(batched.metrics, 'muon_batch_size_count', labels);
  const sumBefore = await metricValue(batched.metrics, 'muon_batch_size_sum', labels);
  const all = [...ids, ...ids, ...ids];
  const together = await Promise.all(
    all.map((id) => recognize(png(id), '/v1/models/text-recognition/predict', batched.app)),
  );
  const batches = (await metricValue(batched.metrics, 'muon_batch_size_count', labels)) - countBefore;
  const items = (await metricValue(batched.metrics, 'muon_batch_size_sum', labels)) - sumBefore;
  t.equal(items, all.length, 'every request went through the batcher');
  t.ok(batches < items, `${items} requests ran in ${batches} batches (some batch larger than 1)`);
  together.forEach((r, i) => {
    t.equal(r.statusCode, 200);
    const a = r.json().lines[0];
    const b = alone[i % ids.length];
    t.equal(a.text, b.text, `${all[i]} same text batched or alone`);
    t.ok(Math.abs(a.score - b.score) < 1e-4, `${all[i]} same score batched or alone`);
  });
});

/** The fixture lines `ids` side by side on one 20 px high strip, and their text joined. */
async function strip(ids: string[]): Promise<{ image: Buffer; width: number; truth: string }> {
  const gap = 10;
  let left = 0;
  const parts = ids.map((id) => {
    const { rect } = lines.find((l) => l.id === id)!;
    const part = { input: png(id), left, top: 0 };
    left += rect.width + gap;
    return part;
  });
  const image = await sharp({ create: { width: left, height: 20, channels: 3, background: '#ffffff' } })
    .composite(parts)
    .png()
    .toBuffer();
  return { image, width: left, truth: ids.map((id) => lines.find((l) => l.id === id)!.text).join(' ') };
}

const four = ['line-03', 'line-04', 'line-05', 'line-08'];

for (const [name, ids, squeezed, limit] of [
  // 48 / 20 * 1648 = 3955 px once scaled to the model's height: a bucket of its own (a page-wide line)
  ['a long line (8 crops, 3955 px at the model height) is read whole', [...four, ...four], false, 0.1],
  // 5940 px, over maxWidth 4096: squeezed into the last bucket, and still read
  ['a line wider than the last bucket is squeezed into it and still read', [...four, ...four, ...four], true, 0.35],
] as const) {
  t.test(name, async (t) => {
    const { image, width, truth } = await strip([...ids]);
    t.equal((48 / 20) * width > 4096, squeezed, `${Math.round((48 / 20) * width)} px at the model height`);
    const res = await recognize(image);
    t.equal(res.statusCode, 200, res.body);
    const { text } = res.json().lines[0];
    const cer = editDistance(text.toLowerCase(), truth.toLowerCase()) / truth.length;
    t.comment(`CER ${cer.toFixed(3)} "${text}"`);
    t.ok(cer < limit, `CER ${cer.toFixed(3)}`);
  });
}

t.test('blank and tiny images give an empty line, not an error; text bodies are refused', async (t) => {
  const blank = await sharp({ create: { width: 200, height: 32, channels: 3, background: '#ffffff' } })
    .png()
    .toBuffer();
  const res = await recognize(blank);
  t.equal(res.statusCode, 200, res.body);
  t.same(res.json().lines, [{ text: '', score: 0 }]);
  const dot = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#000000' } })
    .png()
    .toBuffer();
  t.equal((await recognize(dot)).statusCode, 200, 'a 1x1 image is one padded row');
  const text = await app.inject({
    method: 'POST',
    url: '/v1/models/text-recognition/predict',
    headers: { 'content-type': 'text/plain' },
    payload: 'hello',
  });
  t.equal(text.statusCode, 415);
});

t.test('a manifest whose dictionary does not match the model, or its hash, fails to load', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'muon-rec-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const shipped = path.resolve(import.meta.dirname, '../../models/text-recognition');
  const manifest = JSON.parse(readFileSync(path.join(shipped, 'manifest.json'), 'utf8'));
  for (const [name, patch] of [
    ['no-space', { ctc: { useSpaceChar: false } }],
    ['threshold-no-space', { ctc: { useSpaceChar: false, spaceThreshold: 0.05 } }],
    ['bad-hash', { labels: { ...manifest.labels, sha256: '0'.repeat(64) } }],
  ] as const) {
    cpSync(shipped, path.join(root, name), { recursive: true });
    writeFileSync(path.join(root, name, 'manifest.json'), JSON.stringify({ ...manifest, ...patch }));
  }
  const bad = await startApp({ MUON_MODEL_REPOSITORY: root, MUON_WARMUP: 'false' });
  t.teardown(() => bad.close());
  const byName = Object.fromEntries(bad.failures.map((f) => [f.name, f.error]));
  t.match(byName['no-space'], /6625\].*useSpaceChar/);
  t.match(byName['threshold-no-space'], /\/ctc\/spaceThreshold needs a space class/);
  t.match(byName['bad-hash'], /\/labels\/sha256 is 0+ but/);
});
