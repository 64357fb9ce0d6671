import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import t from 'tap';
import { decodePlainPng, PLAIN_PNG_MAX_PIXELS } from '../../src/preprocess/png.js';

// The JS reader of plain PNGs must give exactly the pixels libvips gives, and leave every other file to libvips.

/** Pixels of a seeded noise image with smooth parts, so that PNG's encoder uses all five filters. */
function noise(w: number, h: number, channels: 3 | 4, seed: number): Buffer {
  let s = seed;
  const next = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) >> 16) & 0xff;
  const px = Buffer.alloc(w * h * channels);
  for (let i = 0; i < px.length; i++) px[i] = i % 7 === 0 ? next() : (i >> 3) & 0xff;
  if (channels === 4) for (let i = 3; i < px.length; i += 4) px[i] = 255; // opaque: what the JS reader takes
  return px;
}

const libvips = async (png: Buffer) => {
  const { data } = await sharp(png).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return data;
};

t.test('plain PNGs decode to the pixels libvips gives', async (t) => {
  let n = 0;
  for (const [w, h] of [
    [1, 1],
    [222, 18],
    [97, 131],
    [640, 480],
  ]) {
    for (const channels of [3, 4] as const) {
      for (const opts of [
        { compressionLevel: 0 },
        { compressionLevel: 9, adaptiveFiltering: true },
        { compressionLevel: 6 },
      ]) {
        const png = await sharp(noise(w, h, channels, ++n), { raw: { width: w, height: h, channels } })
          .png(opts)
          .toBuffer();
        const plain = decodePlainPng(png, 1e8);
        t.ok(plain, `${w}x${h}x${channels} ${JSON.stringify(opts)} is plain`);
        t.same([plain?.width, plain?.height], [w, h]);
        t.ok(
          Buffer.from(plain!.data).equals(await libvips(png)),
          `${w}x${h}x${channels} ${JSON.stringify(opts)}: same pixels`,
        );
      }
    }
  }
});

t.test('the PNG fixtures decode to the pixels libvips gives', async (t) => {
  for (const dir of ['text-lines', 'photos']) {
    const root = path.join(import.meta.dirname, '../fixtures', dir);
    for (const f of readdirSync(root).filter((n) => n.endsWith('.png'))) {
      const png = readFileSync(path.join(root, f));
      const plain = decodePlainPng(png, 1e8);
      if (plain) t.ok(Buffer.from(plain.data).equals(await libvips(png)), `${dir}/${f}`);
      else t.pass(`${dir}/${f} is left to libvips`);
    }
  }
});

/** A PNG with one more chunk before IEND. */
function withChunk(png: Buffer, type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  body.copy(chunk, 4);
  chunk.writeUInt32BE(crc32(body), 8 + data.length);
  return Buffer.concat([png.subarray(0, png.length - 12), chunk, png.subarray(png.length - 12)]);
}

t.test('every other file is left to libvips', async (t) => {
  const rgb = sharp(noise(40, 30, 3, 7), { raw: { width: 40, height: 30, channels: 3 } });
  const plain = await rgb.clone().png().toBuffer();
  t.ok(decodePlainPng(plain, 1e8), 'the plain file itself');
  const left: [string, Uint8Array][] = [
    ['palette', await rgb.clone().png({ palette: true }).toBuffer()],
    ['grey', await rgb.clone().toColourspace('b-w').png().toBuffer()],
    ['16-bit', await rgb.clone().toColourspace('rgb16').png().toBuffer()],
    ['interlaced', await rgb.clone().png({ progressive: true }).toBuffer()],
    ['with a colour profile', await rgb.clone().withIccProfile('p3').png().toBuffer()],
    ['with gAMA', withChunk(plain, 'gAMA', Buffer.from([0, 0, 0xb1, 0x8f]))],
    ['with eXIf', withChunk(plain, 'eXIf', Buffer.from('MM\0*\0\0\0\x08\0\0'))],
    ['with an unknown critical chunk', withChunk(plain, 'ABCD', Buffer.alloc(4))],
    ['a JPEG', await rgb.clone().jpeg().toBuffer()],
    ['cut short', plain.subarray(0, plain.length - 20)],
    ['empty', new Uint8Array(0)],
  ];
  const see = Buffer.alloc(40 * 30 * 4, 200);
  see[4 * 77 + 3] = 0; // one transparent pixel: libvips premultiplies alpha before resizing, so it decodes those
  left.push([
    'RGBA with a transparent pixel',
    await sharp(see, { raw: { width: 40, height: 30, channels: 4 } })
      .png()
      .toBuffer(),
  ]);
  const idat = plain.indexOf('IDAT') - 4;
  const idatEnd = idat + 12 + plain.readUInt32BE(idat);
  const split = Buffer.concat([
    plain.subarray(0, idatEnd),
    withChunk(Buffer.alloc(12), 'tEXt', Buffer.from('a\0b')).subarray(0, 25),
    plain.subarray(idat),
  ]);
  left.push(['IDAT chunks that are not consecutive', split]);
  const badCrc = Buffer.from(plain);
  badCrc[40] ^= 0xff; // inside IDAT
  left.push(['a CRC error', badCrc]);
  for (const [name, bytes] of left) t.equal(decodePlainPng(bytes, 1e8), undefined, name);
  t.equal(decodePlainPng(plain, 40 * 30 - 1), undefined, 'over the pixel limit');
  const ancillary = withChunk(plain, 'tEXt', Buffer.from('Comment\0hello'));
  t.ok(decodePlainPng(ancillary, 1e8), 'a text chunk changes nothing');
});

t.test(
  'a small file that inflates past its size, or over the size this reader takes, is left to libvips',
  async (t) => {
    const w = 2000;
    const h = 2000;
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(w, 0);
    ihdr.writeUInt32BE(h, 4);
    ihdr.set([8, 2, 0, 0, 0], 8);
    const chunk = (type: string, data: Buffer) => {
      const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      const c = Buffer.alloc(12 + data.length);
      c.writeUInt32BE(data.length, 0);
      body.copy(c, 4);
      c.writeUInt32BE(crc32(body), 8 + data.length);
      return c;
    };
    const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    t.ok(w * h > PLAIN_PNG_MAX_PIXELS);
    const big = Buffer.concat([
      sig,
      chunk('IHDR', ihdr),
      chunk('IDAT', deflateSync(Buffer.alloc(h * (3 * w + 1)))),
      chunk('IEND', Buffer.alloc(0)),
    ]);
    t.equal(decodePlainPng(big, 1e8), undefined, 'over PLAIN_PNG_MAX_PIXELS');
    ihdr.writeUInt32BE(100, 0);
    ihdr.writeUInt32BE(100, 4);
    const bomb = Buffer.concat([
      sig,
      chunk('IHDR', ihdr),
      chunk('IDAT', deflateSync(Buffer.alloc(50 * 2 ** 20))),
      chunk('IEND', Buffer.alloc(0)),
    ]);
    t.ok(bomb.length < 100_000);
    t.equal(decodePlainPng(bomb, 1e8), undefined, '50 MiB of zeros in a 100x100 file');
  },
);
