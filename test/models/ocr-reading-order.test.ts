import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseManifest } from '../../src/models/manifest.js';
import type { Quad } from '../../src/models/tasks/ocr/geometry.js';
import { readingOrder } from '../../src/models/tasks/ocr/reading-order.js';

// Line boxes of made-up pages, each named; the order read is compared by name.
const line = (name: string, x: number, y: number, w: number, h = 20) => ({
  name,
  box: [
    [x, y],
    [x + w, y],
    [x + w, y + h],
    [x, y + h],
  ] as Quad,
});
const names = (boxes: { name: string }[]) => boxes.map((b) => b.name).join(' ');
/** The same boxes turned by `degrees` about (0, 0). */
const turned = (boxes: ReturnType<typeof line>[], degrees: number) => {
  const a = (degrees * Math.PI) / 180;
  return boxes.map((b) => ({
    ...b,
    box: b.box.map(([x, y]) => [x * Math.cos(a) - y * Math.sin(a), x * Math.sin(a) + y * Math.cos(a)]) as Quad,
  }));
};

const twoColumns = [
  line('h', 50, 20, 900, 36),
  // the two columns' lines on the same rows, as a typeset page has them
  ...[0, 1, 2, 3].flatMap((r) => [line(`a${r}`, 50, 80 + 30 * r, 420), line(`b${r}`, 520, 80 + 30 * r, 420)]),
  line('f', 50, 230, 900),
];

t.test('two columns under a heading: the heading, each column to its end, then the footer', async (t) => {
  t.equal(names(readingOrder(twoColumns)), 'h a0 a1 a2 a3 b0 b1 b2 b3 f');
  // the order does not depend on the order the detector found them in
  t.equal(names(readingOrder([...twoColumns].reverse())), 'h a0 a1 a2 a3 b0 b1 b2 b3 f');
});

t.test('the same page photographed 2 degrees askew reads the same', async (t) => {
  t.equal(names(readingOrder(turned(twoColumns, 2))), 'h a0 a1 a2 a3 b0 b1 b2 b3 f');
  t.equal(names(readingOrder(turned(twoColumns, -2))), 'h a0 a1 a2 a3 b0 b1 b2 b3 f');
});

t.test('boxes whose corners were turned with the page (an upside-down page, mirrored) read the same', async (t) => {
  const mirrored = twoColumns.map((b) => ({ ...b, box: b.box.map(([x, y]) => [-x, -y]) as Quad }));
  t.equal(names(readingOrder(mirrored)), 'f b3 b2 b1 b0 a3 a2 a1 a0 h');
});

t.test('one column: top to bottom, and a line split in two is read left to right', async (t) => {
  const page = [line('1', 50, 20, 800), line('2a', 50, 50, 300), line('2b', 420, 50, 300), line('3', 50, 80, 500)];
  t.equal(names(readingOrder(page)), '1 2a 2b 3');
  t.equal(names(readingOrder(turned(page, 1.5))), '1 2a 2b 3');
});

t.test('a column gap narrower than a line height is not a column', async (t) => {
  // words of one line a few pixels apart, on two rows
  const page = [line('a', 0, 0, 100), line('b', 110, 0, 100), line('c', 0, 30, 100), line('d', 110, 30, 100)];
  t.equal(names(readingOrder(page)), 'a b c d');
});

t.test('a receipt (labels beside prices) is read row by row, not as two columns', async (t) => {
  const receipt = [
    line('shop', 50, 10, 300),
    ...['milk', 'bread', 'eggs', 'total'].flatMap((item, r) => [
      line(item, 50, 50 + 30 * r, 80),
      line(`${item}$`, 400, 50 + 30 * r, 60),
    ]),
  ];
  t.equal(names(readingOrder(receipt)), 'shop milk milk$ bread bread$ eggs eggs$ total total$');
});

t.test('past 1500 boxes the rows order is used (the cut would take seconds)', async (t) => {
  const many = Array.from({ length: 1600 }, (_, i) => line(String(i), (i % 2) * 500, 30 * Math.floor(i / 2), 420));
  const read = readingOrder(many);
  t.equal(read.length, 1600);
  t.equal(names(read.slice(0, 4)), '0 1 2 3', 'row by row');
});

t.test('nothing, one box', async (t) => {
  t.same(readingOrder([]), []);
  t.equal(names(readingOrder([line('x', 0, 0, 10)])), 'x');
});

t.test('the manifest takes only the orders and orientation policies there are', async (t) => {
  const where = path.resolve(import.meta.dirname, '../../models/ocr/manifest.json');
  const m = JSON.parse(readFileSync(where, 'utf8'));
  t.match(parseManifest(m, where), { stages: { readingOrder: 'columns', orientationPolicy: 'page' } });
  t.match(parseManifest({ ...m, stages: { ...m.stages, readingOrder: 'rows', orientationPolicy: 'line' } }, 'x'), {
    stages: { readingOrder: 'rows', orientationPolicy: 'line' },
  });
  t.throws(() => parseManifest({ ...m, stages: { ...m.stages, readingOrder: 'diagonal' } }, 'x'), /readingOrder/);
  t.throws(() => parseManifest({ ...m, stages: { ...m.stages, orientationPolicy: 'word' } }, 'x'), /orientationPolicy/);
});
