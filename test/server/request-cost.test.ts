import sharp from 'sharp';
import t from 'tap';
import type { Manifest } from '../../src/models/manifest.js';
import { inputCost } from '../../src/server/request-cost.js';

// What an input is priced at before it is decoded: the memory budget admits it for that.

const classifier = { task: 'image-classification' } as Manifest;
const image = (bytes: Uint8Array) => ({ kind: 'image', bytes }) as const;

t.test('images are priced from their header', async (t) => {
  const png = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#fff' } })
    .png()
    .toBuffer();
  t.equal(inputCost(image(png), classifier, 1e6), 300 * 200 * 4, 'pixels x 4 bytes');
  t.throws(
    () => inputCost(image(png), classifier, 300 * 200 - 1),
    { code: 'MUON_ERR_IMAGE_DIMENSIONS' },
    'over the limit: 422 before anything is decoded',
  );
  const unreadable = Buffer.concat([png.subarray(0, 8), Buffer.from('garbage that is no IHDR')]);
  t.equal(
    inputCost(image(unreadable), classifier, 1e6),
    1e6 * 4,
    'a PNG whose size cannot be read costs the most an image may',
  );
  const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8]), Buffer.alloc(1 << 20, 0xff)]);
  t.equal(inputCost(image(jpeg), classifier, 1e6), 1e6 * 4, 'so does a JPEG the walk gives up on');
  t.equal(inputCost(image(Buffer.from('GIF89a....')), classifier, 1e6), 0, 'a format refused at once costs nothing');
});

t.test('text is priced by its length', async (t) => {
  t.equal(inputCost({ kind: 'text', text: 'abc' }, { task: 'language-id' } as Manifest, 1e6), 24);
});
