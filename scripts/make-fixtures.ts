/**
 * Generates the image fixtures under test/fixtures/ from real photos shipped in
 * scikit-image's sample data (Debian package `python3-skimage`).
 *
 * Normally run through `bash scripts/make-fixtures.sh`, which downloads and unpacks
 * the package into a temp dir and then calls:
 *
 *     npx tsx scripts/make-fixtures.ts <path-to-skimage/data>
 *
 * The source images are checked against the SHA-256 sums from scikit-image's own
 * data registry (skimage/data/_registry.py), so any package version that ships the
 * same files yields the same fixtures. Output bytes depend on the sharp/libvips
 * version (currently sharp 0.35.5 / libvips 8.18.7); pixels of the lossless PNG
 * crops do not.
 *
 * Writes (after deleting them first, so re-runs leave no stale files):
 *   test/fixtures/photos/      small JPEG copies of real photos + the scanned page
 *   test/fixtures/text-lines/  single text-line crops of page.png, upright and rotated 180,
 *                              one EXIF-Orientation=3 JPEG, and manifest.json
 *   test/fixtures/bad/         non-image / hostile inputs for error tests
 * test/fixtures/README.md is hand-written and left alone.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');

/** SHA-256 of the source files, as listed in skimage/data/_registry.py (0.19.3). */
const SOURCES: Record<string, string> = {
  'page.png': '341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3',
  'astronaut.png': '88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5',
  'coffee.png': 'cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7',
  'chelsea.png': '596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb',
};

interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

interface LineCrop {
  /** File stem: line-NN (line or long part of one), word-NN (short, exercises right padding), hard-NN. */
  id: string;
  /** What the crop reads, for humans and for future recognizer tests. */
  text: string;
  rect: Rect;
  /**
   * true: ch_ppocr_mobile_v2.0_cls classifies the upright crop "0" and the rotated one
   * "180" with p >= 0.95 using cv2-style bilinear, nearest, cubic or lanczos3 resizing,
   * and stays right (p >= 0.70) under +-1..2 px jitter of the box. Safe for tests that
   * assert labels.
   * false (hard-NN): right with PaddleOCR's preprocessing but fragile (see README).
   */
  robust: boolean;
}

/**
 * Crop rectangles in page.png (384x191, 8-bit grey, a photographed curved book page).
 * Found from horizontal projection profiles of ink pixels (pixel darker than a 15 px
 * Gaussian-blurred background by more than 25 levels) to get line bands, vertical
 * profiles within each band to get word gaps, then checked by eye and with the
 * classifier (scripts/check-orientation-fixtures.ts). Each box is the ink extent plus
 * ~2-3 px margin. Lines bow by 3-5 px, so some boxes catch a few ascender/descender
 * pixels of a neighbouring line, as a detector's boxes do.
 *
 * Full-width lines (aspect ~19:1) get squashed ~4x horizontally by the classifier's
 * 48x192 input and score much lower, so the robust set uses long parts of lines split
 * at a word gap (aspect 5:1 to 11:1), like the two halves of the title.
 */
const LINES: LineCrop[] = [
  { id: 'line-01', text: 'Region-based', rect: { left: 4, top: 11, width: 141, height: 25 }, robust: true },
  { id: 'line-02', text: 'segmentation', rect: { left: 149, top: 11, width: 146, height: 25 }, robust: true },
  {
    id: 'line-03',
    text: 'Let us first determine markers',
    rect: { left: 3, top: 47, width: 222, height: 18 },
    robust: true,
  },
  { id: 'line-04', text: 'of the coins and the', rect: { left: 228, top: 47, width: 151, height: 18 }, robust: true },
  {
    id: 'line-05',
    text: 'background. These markers are',
    rect: { left: 3, top: 64, width: 214, height: 19 },
    robust: true,
  },
  {
    id: 'line-06',
    text: 'pixels that we can label',
    rect: { left: 218, top: 65, width: 161, height: 21 },
    robust: true,
  },
  {
    id: 'line-07',
    text: 'object or background. Here,',
    rect: { left: 179, top: 85, width: 200, height: 19 },
    robust: true,
  },
  {
    id: 'line-08',
    text: 'the markers are found at the',
    rect: { left: 3, top: 101, width: 202, height: 18 },
    robust: true,
  },
  {
    id: 'line-09',
    text: 'two extreme parts of the',
    rect: { left: 205, top: 102, width: 174, height: 18 },
    robust: true,
  },
  {
    id: 'line-10',
    text: 'histogram of grey values:',
    rect: { left: 4, top: 117, width: 169, height: 20 },
    robust: true,
  },
  // Short crops: aspect < 4, so the classifier input is zero-padded on the right.
  { id: 'word-01', text: 'coins', rect: { left: 281, top: 47, width: 38, height: 18 }, robust: true },
  { id: 'word-02', text: 'extreme', rect: { left: 236, top: 102, width: 62, height: 18 }, robust: true },
  // Hard cases: monospace code line on the dark, blurred page edge; one full-width line.
  {
    id: 'hard-01',
    text: '>>> markers = np.zeros_like(coins)',
    rect: { left: 10, top: 169, width: 233, height: 19 },
    robust: false,
  },
  {
    id: 'hard-02',
    text: 'Let us first determine markers of the coins and the',
    rect: { left: 3, top: 46, width: 376, height: 20 },
    robust: false,
  },
];

/** The line used for the EXIF-orientation fixture. */
const EXIF_LINE = 'line-01';

const PHOTOS = ['astronaut', 'coffee', 'chelsea'] as const;
const PHOTO_MAX_SIDE = 512;
const PHOTO_QUALITY = 85;
const PHOTO_MAX_BYTES = 60 * 1024;

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

function fail(msg: string): never {
  throw new Error(`make-fixtures: ${msg}`);
}

async function loadSources(dataDir: string): Promise<Record<string, Buffer>> {
  const out: Record<string, Buffer> = {};
  for (const [name, expected] of Object.entries(SOURCES)) {
    const buf = await readFile(path.join(dataDir, name));
    const actual = sha256(buf);
    if (actual !== expected) fail(`${name}: sha256 ${actual} != expected ${expected}`);
    out[name] = buf;
  }
  return out;
}

async function write(rel: string, data: Buffer | string): Promise<void> {
  const file = path.join(FIXTURES, rel);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, data);
}

/** Mean absolute difference of two raw buffers of equal length. */
function meanAbsDiff(a: Buffer, b: Buffer): number {
  if (a.length !== b.length) fail(`raw length mismatch ${a.length} vs ${b.length}`);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

async function makePhotos(src: Record<string, Buffer>): Promise<Buffer> {
  let firstJpeg: Buffer | undefined;
  for (const name of PHOTOS) {
    const jpeg = await sharp(src[`${name}.png`])
      .resize({ width: PHOTO_MAX_SIDE, height: PHOTO_MAX_SIDE, fit: 'inside', withoutEnlargement: true })
      .jpeg({ quality: PHOTO_QUALITY })
      .toBuffer();
    if (jpeg.length > PHOTO_MAX_BYTES) fail(`photos/${name}.jpg is ${jpeg.length} bytes`);
    await write(`photos/${name}.jpg`, jpeg);
    firstJpeg ??= jpeg;
  }
  // The scanned page itself, byte-for-byte (47,679 bytes).
  await write('photos/page.png', src['page.png']!);
  return firstJpeg!;
}

async function makeTextLines(page: Buffer): Promise<void> {
  const manifest: unknown[] = [];
  for (const line of LINES) {
    // 3-channel sRGB PNG (R=G=B), the common case for a server; the source is 1-channel grey.
    const upright = await sharp(page).extract(line.rect).toColourspace('srgb').png().toBuffer();
    const rotated = await sharp(upright).rotate(180).png().toBuffer();
    await write(`text-lines/${line.id}.png`, upright);
    await write(`text-lines/${line.id}-rot180.png`, rotated);
    const entry: Record<string, unknown> = {
      id: line.id,
      text: line.text,
      source: 'photos/page.png',
      rect: line.rect,
      robust: line.robust,
      upright: `${line.id}.png`,
      rot180: `${line.id}-rot180.png`,
    };

    if (line.id === EXIF_LINE) {
      // Pixels stored upside down, EXIF Orientation=3 ("rotate 180 to display").
      const exifName = `${line.id}-exif180.jpg`;
      const jpeg = await sharp(upright)
        .rotate(180)
        .jpeg({ quality: 95 })
        // withExif({IFD0:{Orientation:'3'}}) is not enough: libvips rewrites the tag
        // from its own orientation field, which withMetadata({orientation}) sets.
        .withMetadata({ orientation: 3 })
        .toBuffer();
      const meta = await sharp(jpeg).metadata();
      if (meta.orientation !== 3) fail(`${exifName}: orientation ${meta.orientation}, expected 3`);
      // Auto-oriented pixels must match the upright crop; raw stored pixels must not.
      const want = await sharp(upright).greyscale().raw().toBuffer();
      const oriented = await sharp(jpeg).rotate().greyscale().raw().toBuffer();
      const stored = await sharp(jpeg).greyscale().raw().toBuffer();
      const dOriented = meanAbsDiff(want, oriented);
      const dStored = meanAbsDiff(want, stored);
      if (!(dOriented < 3 && dStored > 4 * dOriented)) {
        fail(`${exifName}: auto-orient check failed (diff oriented ${dOriented}, stored ${dStored})`);
      }
      await write(`text-lines/${exifName}`, jpeg);
      entry.exif180 = exifName;
    }
    manifest.push(entry);
  }
  const doc = {
    description:
      'Text-line crops of scikit-image page.png (a photographed book page). ' +
      'ID.png is upright (label "0"), ID-rot180.png is the same pixels rotated 180 degrees (label "180"). ' +
      'robust=false marks crops the classifier gets right only with exact PaddleOCR preprocessing (see README). ' +
      'line-01-exif180.jpg stores the rotated pixels with EXIF Orientation=3, so it is upright once EXIF is honoured. ' +
      'rect is {left, top, width, height} in page.png pixels. Generated by scripts/make-fixtures.ts.',
    lines: manifest,
  };
  await write('text-lines/manifest.json', JSON.stringify(doc, null, 2) + '\n');
}

const TINY_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="32" height="16" viewBox="0 0 32 16">
  <rect width="32" height="16" fill="#ffffff"/>
  <rect x="2" y="6" width="28" height="4" fill="#000000"/>
</svg>
`;

async function makeBad(src: Record<string, Buffer>, aJpeg: Buffer): Promise<void> {
  await write('bad/not-an-image.txt', 'This is a plain text file, not an image.\n');
  await write('bad/truncated.jpg', aJpeg.subarray(0, 200));
  await write('bad/tiny.svg', TINY_SVG);
  const gif = await sharp(src['chelsea.png']).resize({ width: 64 }).gif().toBuffer();
  await write('bad/image.gif', gif);
  const tiff = await sharp(src['coffee.png']).resize({ width: 64 }).tiff({ compression: 'lzw' }).toBuffer();
  await write('bad/image.tiff', tiff);
  // Sanity: the valid ones decode, the truncated one does not.
  for (const f of ['tiny.svg', 'image.gif', 'image.tiff'])
    await sharp(path.join(FIXTURES, 'bad', f))
      .raw()
      .toBuffer();
  const truncatedDecodes = await sharp(aJpeg.subarray(0, 200))
    .raw()
    .toBuffer()
    .then(
      () => true,
      () => false,
    );
  if (truncatedDecodes) fail('bad/truncated.jpg unexpectedly decodes');
}

async function main(): Promise<void> {
  const dataDir = process.argv[2];
  if (!dataDir) fail('usage: npx tsx scripts/make-fixtures.ts <skimage/data dir>');
  const src = await loadSources(dataDir);
  for (const sub of ['photos', 'text-lines', 'bad'])
    await rm(path.join(FIXTURES, sub), { recursive: true, force: true });
  const aJpeg = await makePhotos(src);
  await makeTextLines(src['page.png']!);
  await makeBad(src, aJpeg);
  console.log(`make-fixtures: wrote fixtures under ${path.relative(process.cwd(), FIXTURES) || '.'}`);
}

await main();
