import sharp from 'sharp';
import t from 'tap';
import { lineText, pageText, splitWords } from '../../bench/quality/generate.js';
import { drawText, FACES, inkBox, renderLine, renderPage, Rng } from '../../bench/quality/render.js';

// The OCR evaluation data: drawn the same way from the same seed, with truth that matches what was drawn.

t.test('the same seed draws the same lines and pages, with the same truth', async (t) => {
  const draw = async (seed: number) => {
    const rng = new Rng(seed);
    const words = splitWords('evaluation');
    const line = await renderLine(lineText(words, 'evaluation', rng), 'evaluation', rng);
    const { heading, paragraphs } = pageText(words, rng);
    const page = await renderPage(heading, paragraphs.slice(0, 2), 'evaluation', rng);
    return { line, page };
  };
  const [a, b, c] = [await draw(5), await draw(5), await draw(6)];
  t.same(a.line.image, b.line.image);
  t.equal(a.line.text, b.line.text);
  t.same(a.page.image, b.page.image);
  t.same(a.page.lines, b.page.lines);
  t.not(a.line.text, c.line.text, 'another seed, another line');
});

t.test('calibration and evaluation share no font family and no source text', async (t) => {
  const families = (split: 'calibration' | 'evaluation') => new Set(FACES[split].map((f) => f.family));
  const cal = families('calibration');
  for (const f of families('evaluation')) t.notOk(cal.has(f), f);
  // different documents; licences share a few stock phrases ("prominent notices stating that you changed")
  const runs = (words: string[]) =>
    new Set(
      words.map((_, i) =>
        words
          .slice(i, i + 8)
          .join(' ')
          .toLowerCase(),
      ),
    );
  const calRuns = runs(splitWords('calibration'));
  const evalRuns = [...runs(splitWords('evaluation'))];
  const shared = evalRuns.filter((r) => calRuns.has(r)).length / evalRuns.length;
  t.ok(shared < 0.01, `${(shared * 100).toFixed(2)} % of the evaluation's 8-word runs are in the calibration text`);
});

t.test('every face draws, each its own way', async (t) => {
  const widths = new Set<number>();
  for (const face of [...FACES.calibration, ...FACES.evaluation]) {
    const mask = await drawText('Quick brown 0123', face, 30);
    const box = inkBox(mask);
    t.ok(box && box.x1 - box.x0 > 100, `${face.family} ${face.style} draws (${box?.x1} px)`);
    widths.add(mask.width);
  }
  t.ok(widths.size >= 10, `${widths.size} different widths from 16 faces`);
});

t.test(
  'every face is drawn in its own family, not in the fallback Pango uses for a name it does not know',
  async (t) => {
    const text = 'Quick brown 0123';
    for (const face of [...FACES.calibration, ...FACES.evaluation]) {
      if (face.family === 'DejaVu Sans') continue; // the fallback itself
      const fallback = await drawText(text, { ...face, family: 'No Such Family' }, 30);
      const drawn = await drawText(text, face, 30);
      t.notSame(drawn.data, fallback.data, `${face.family} ${face.style}`);
    }
  },
);

t.test("a page's truth boxes hold what was drawn, and nothing was drawn outside them", async (t) => {
  for (const seed of [1, 2, 3]) {
    const rng = new Rng(seed);
    const { heading, paragraphs } = pageText(splitWords('evaluation'), rng);
    const page = await renderPage(heading, paragraphs, 'evaluation', rng);
    const { data, info } = await sharp(page.image).greyscale().raw().toBuffer({ resolveWithObject: true });
    const sorted = Uint8Array.from(data).sort();
    const paper = sorted[sorted.length >> 1]; // most of a page is paper
    const isInk = (x: number, y: number) => Math.abs(data[y * info.width + x] - paper) > 90;
    const rects = page.lines.map((l) => ({
      x0: Math.min(...l.box.map((p) => p[0])) - 3,
      x1: Math.max(...l.box.map((p) => p[0])) + 3,
      y0: Math.min(...l.box.map((p) => p[1])) - 3,
      y1: Math.max(...l.box.map((p) => p[1])) + 3,
    }));
    let ink = 0;
    let outside = 0;
    for (let y = 0; y < info.height; y++)
      for (let x = 0; x < info.width; x++) {
        if (!isInk(x, y)) continue;
        ink++;
        if (!rects.some((r) => x >= r.x0 && x <= r.x1 && y >= r.y0 && y <= r.y1)) outside++;
      }
    t.ok(ink > 1000, `seed ${seed} (${page.layout}): ${ink} ink pixels`);
    t.ok(outside / ink < 0.002, `seed ${seed}: ${outside} of them outside every truth box`);
    const empty = rects.filter((r) => {
      for (let y = Math.max(0, Math.round(r.y0)); y < Math.min(info.height, r.y1); y++)
        for (let x = Math.max(0, Math.round(r.x0)); x < Math.min(info.width, r.x1); x++) if (isInk(x, y)) return false;
      return true;
    });
    t.equal(empty.length, 0, `seed ${seed}: every box of ${page.lines.length} holds ink`);
  }
});
