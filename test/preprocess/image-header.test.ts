import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { imageHeaderSize } from '../../src/preprocess/image-header.js';

// The memory budget prices an image from its header; the header reader must agree with libvips on every format
// and variant it accepts, and give up (undefined) on anything else rather than guess.

const make = (w: number, h: number, channels: 3 | 4 = 3) =>
  sharp({ create: { width: w, height: h, channels, background: { r: 10, g: 200, b: 30, alpha: 0.5 } } });

t.test('agrees with libvips on PNG, JPEG and WebP variants', async (t) => {
  const sizes: [number, number][] = [
    [1, 1],
    [222, 18],
    [640, 480],
    [16383, 3],
    [5000, 7000],
  ];
  for (const [w, h] of sizes) {
    const variants: [string, Buffer][] = [
      ['png rgb', await make(w, h).png().toBuffer()],
      ['png gray 16-bit', await make(w, h).toColourspace('grey16').png().toBuffer()],
      ['png palette', await make(w, h).png({ palette: true }).toBuffer()],
      ['png interlaced', await make(w, h, 4).png({ progressive: true }).toBuffer()],
      ['jpeg baseline', await make(w, h).jpeg().toBuffer()],
      ['jpeg progressive', await make(w, h).jpeg({ progressive: true }).toBuffer()],
      ['jpeg with exif', await make(w, h).jpeg().withMetadata({ orientation: 6 }).toBuffer()],
      ['webp lossy', await make(w, h).webp().toBuffer()],
      ['webp lossless', await make(w, h).webp({ lossless: true }).toBuffer()],
      ['webp lossy alpha (VP8X)', await make(w, h, 4).webp().toBuffer()],
    ];
    for (const [name, bytes] of variants) {
      if (name.startsWith('webp') && Math.max(w, h) > 16383) continue; // WebP's limit
      const meta = await sharp(bytes).metadata();
      t.same(imageHeaderSize(bytes), { width: meta.width, height: meta.height }, `${name} ${w}x${h}`);
    }
  }
});

t.test('agrees with libvips on the image fixtures', async (t) => {
  const dir = path.join(import.meta.dirname, '../fixtures/text-lines');
  for (const f of readdirSync(dir).filter((n) => /\.(png|jpe?g|webp)$/.test(n))) {
    const bytes = readFileSync(path.join(dir, f));
    const meta = await sharp(bytes).metadata();
    t.same(imageHeaderSize(bytes), { width: meta.width, height: meta.height }, f);
  }
});

t.test('gives up on what it cannot read', async (t) => {
  const png = await make(20, 10).png().toBuffer();
  const jpeg = await make(20, 10).jpeg().toBuffer();
  t.equal(imageHeaderSize(new Uint8Array(0)), undefined, 'empty');
  t.equal(imageHeaderSize(png.subarray(0, 20)), undefined, 'PNG cut inside IHDR');
  t.equal(imageHeaderSize(jpeg.subarray(0, 30)), undefined, 'JPEG cut before its frame header');
  t.equal(imageHeaderSize(Buffer.from('GIF89a\x01\x00\x01\x00')), undefined, 'GIF');
  t.equal(imageHeaderSize(Buffer.from([0xff, 0xd8, 0xff, 0xda, 0, 2])), undefined, 'JPEG scan before any frame');
  t.equal(imageHeaderSize(Buffer.from([0xff, 0xd8, 0x00, 0x00, 0, 2])), undefined, 'JPEG without a marker');
  const zero = Buffer.from(png);
  zero.writeUInt32BE(0, 16);
  t.equal(imageHeaderSize(zero), undefined, 'PNG of width 0');
});

t.test('JPEG: read past what libjpeg skips, as libjpeg does', async (t) => {
  const real = await make(300, 200).jpeg().toBuffer();
  const meta = await sharp(real).metadata();
  const dqt = real.indexOf(Buffer.from([0xff, 0xdb]));
  const junk = Buffer.concat([real.subarray(0, dqt), Buffer.from([1, 2, 3]), real.subarray(dqt)]);
  t.same(imageHeaderSize(junk), { width: 300, height: 200 }, 'bytes between segments');
  t.equal((await sharp(junk).metadata()).width, meta.width, 'which libjpeg reads the same');
  // a decoy: FF 00 (stuffing, not a marker) with what looks like a length over the real file, then a 1x1 frame
  const rest = real.subarray(2);
  const length = rest.length + 2;
  const fakeFrame = Buffer.from([0xff, 0xc0, 0, 17, 8, 0, 1, 0, 1, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
  const decoy = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0x00, length >> 8, length & 255]), rest, fakeFrame]);
  t.same(imageHeaderSize(decoy), { width: 300, height: 200 }, 'the frame libjpeg decodes, not the decoy');
  t.equal((await sharp(decoy).metadata()).width, 300);
  const fill = Buffer.concat([Buffer.from([0xff, 0xd8]), Buffer.alloc(1 << 20, 0xff)]);
  t.equal(imageHeaderSize(fill), undefined, 'a megabyte of fill bytes: gives up (priced at the most)');
});
