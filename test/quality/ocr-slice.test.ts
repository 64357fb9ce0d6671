import { readFileSync } from 'node:fs';
import t from 'tap';
import { corpusCer, scorePageWeighted, summarizePages } from '../../src/quantize/task-metrics.js';
import { startApp } from '../helpers/app.js';

// A slice of the OCR evaluation set (bench/quality/generate.ts, evaluation split): three pages (two columns; one
// wide column of 15 px text, lines 65 times as wide as high; a photographed page upside down) and twelve lines. The served pipelines must
// read them as well as they did when the slice was taken (task metrics), and exactly as they did (the snapshot in
// tap-snapshots/: `npx tap test/quality/ocr-slice.test.ts --snapshot` records it again after an intended change).
const dir = new URL('../fixtures/quality/', import.meta.url);
const pages: { file: string; lines: { text: string }[] }[] = JSON.parse(
  readFileSync(new URL('pages.json', dir), 'utf8'),
);
const lines: { file: string; text: string }[] = JSON.parse(readFileSync(new URL('lines.json', dir), 'utf8'));
const ctx = await startApp();
t.teardown(() => ctx.close());

async function read(model: string, file: string): Promise<string[]> {
  const res = await ctx.app.inject({
    method: 'POST',
    url: `/predict?model=${model}`,
    headers: { 'content-type': 'application/octet-stream' },
    payload: readFileSync(new URL(file, dir)),
  });
  if (res.statusCode !== 200) throw new Error(`${model} ${file}: ${res.statusCode} ${res.body}`);
  return res.json().lines.map((l: { text: string }) => l.text);
}

for (const model of ['ocr', 'ocr-fp32']) {
  t.test(`${model} reads the slice's pages`, async (t) => {
    const answers: Record<string, string[]> = {};
    for (const p of pages) answers[p.file] = await read(model, p.file);
    const summary = summarizePages(
      pages.map((p) =>
        scorePageWeighted(
          p.lines.map((l) => l.text),
          answers[p.file],
        ),
      ),
    );
    t.ok(summary.recall >= 0.9, `line recall ${summary.recall.toFixed(3)}`);
    t.ok(summary.precision >= 0.9, `line precision ${summary.precision.toFixed(3)}`);
    t.ok(summary.pageCer <= 0.1, `page CER ${summary.pageCer.toFixed(3)}`);
    t.matchSnapshot(answers, 'the lines read, page by page');
  });
}

for (const model of ['text-recognition', 'text-recognition-fp32']) {
  t.test(`${model} reads the slice's lines`, async (t) => {
    const read1 = await Promise.all(lines.map(async (l) => (await read(model, l.file))[0] ?? ''));
    const cer = corpusCer(lines.map((l, i) => ({ truth: l.text, read: read1[i] })));
    t.ok(cer <= 0.1, `CER ${cer.toFixed(3)}`);
    t.matchSnapshot(read1, 'the text of each line');
  });
}
