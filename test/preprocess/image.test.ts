import sharp from 'sharp';
import t from 'tap';
import { imageToTensor, placement, sniffImageFormat, type ImageSpec } from '../../src/preprocess/image.js';

const base: ImageSpec = {
  layout: 'NCHW',
  height: 2,
  width: 4,
  channels: 'RGB',
  resize: 'stretch',
  cropRatio: 0.875,
  interpolation: 'linear',
  scale: 1,
  mean: [0, 0, 0],
  std: [1, 1, 1],
  padValue: -1,
};

/** A lossless PNG from interleaved RGB pixels. */
const png = (w: number, h: number, rgb: number[], channels: 1 | 3 = 3) =>
  sharp(Buffer.from(rgb), { raw: { width: w, height: h, channels } })
    .png()
    .toBuffer();

t.test('identity size: exact values, normalization, channel order and layout', async (t) => {
  // 2x1 image: red-ish then blue-ish
  const img = await png(2, 1, [10, 20, 30, 40, 50, 60]);
  const spec = { ...base, width: 2, height: 1 };
  t.same([...(await imageToTensor(img, spec, 1e6)).data], [10, 40, 20, 50, 30, 60], 'NCHW, RGB');
  t.same(
    [...(await imageToTensor(img, { ...spec, channels: 'BGR' }, 1e6)).data],
    [30, 60, 20, 50, 10, 40],
    'NCHW, BGR',
  );
  t.same([...(await imageToTensor(img, { ...spec, layout: 'NHWC' }, 1e6)).data], [10, 20, 30, 40, 50, 60], 'NHWC');
  const norm = await imageToTensor(img, { ...spec, scale: 1 / 10, mean: [1, 2, 3], std: [2, 2, 2] }, 1e6);
  [0, 1.5, 0, 1.5, 0, 1.5].forEach((v, i) =>
    t.ok(Math.abs(norm.data[i] - v) < 1e-6, `(x * scale - mean) / std [${i}]`),
  );
  const gray = await imageToTensor(await png(2, 1, [0, 200], 1), { ...spec, channels: 'GRAY' }, 1e6);
  t.same(gray.dims, [1, 1, 2]);
  t.same([...gray.data], [0, 200]);
});

t.test('bilinear resampling follows OpenCV INTER_LINEAR (pixel centres, clamped edges)', async (t) => {
  const img = await png(2, 1, [0, 0, 0, 100, 100, 100]);
  const out = await imageToTensor(img, { ...base, width: 4, height: 1, layout: 'NHWC' }, 1e6);
  // cv2.resize(np.array([[0, 100]]), (4, 1), interpolation=cv2.INTER_LINEAR) == [[0, 25, 75, 100]]
  t.same(
    [...out.data].filter((_, i) => i % 3 === 0),
    [0, 25, 75, 100],
  );
  const nearest = await imageToTensor(
    img,
    { ...base, width: 4, height: 1, layout: 'NHWC', interpolation: 'nearest' },
    1e6,
  );
  t.same(
    [...nearest.data].filter((_, i) => i % 3 === 0),
    [0, 0, 100, 100],
  );
});

t.test('placement of each resize mode', async (t) => {
  const spec = { ...base, height: 48, width: 192 };
  t.same(
    placement(100, 20, { ...spec, resize: 'fit-height' }),
    { resizeW: 192, resizeH: 48, left: 0, top: 0 },
    'long line squeezed',
  );
  t.same(
    placement(30, 20, { ...spec, resize: 'fit-height' }),
    { resizeW: 72, resizeH: 48, left: 0, top: 0 },
    'ceil(48 * 1.5)',
  );
  t.same(placement(400, 400, { ...spec, resize: 'letterbox' }), { resizeW: 48, resizeH: 48, left: 72, top: 0 });
  t.same(placement(300, 200, { ...base, height: 224, width: 224, resize: 'center-crop' }), {
    resizeW: 384,
    resizeH: 256,
    crop: { left: 80, top: 16, width: 224, height: 224 },
    left: 0,
    top: 0,
  });
  t.same(placement(5, 7, { ...spec, resize: 'stretch' }), { resizeW: 192, resizeH: 48, left: 0, top: 0 });
});

t.test('padding: fit-height pads on the right, letterbox on both sides', async (t) => {
  const white = await png(2, 2, Array(12).fill(255));
  const fit = await imageToTensor(white, { ...base, height: 2, width: 6, resize: 'fit-height' }, 1e6);
  t.same([...fit.data.subarray(0, 6)], [255, 255, -1, -1, -1, -1], 'first row of channel 0');
  const box = await imageToTensor(white, { ...base, height: 2, width: 6, resize: 'letterbox' }, 1e6);
  t.same([...box.data.subarray(0, 6)], [-1, -1, 255, 255, -1, -1]);
});

t.test('large downscales go through libvips and stay faithful', async (t) => {
  // left half black, right half white, 800x400 -> 4x2
  const rgb: number[] = [];
  for (let y = 0; y < 400; y++) for (let x = 0; x < 800; x++) rgb.push(...(x < 400 ? [0, 0, 0] : [255, 255, 255]));
  const out = await imageToTensor(await png(800, 400, rgb), base, 1e6);
  const row = [...out.data.subarray(0, 4)];
  t.ok(row[0] < 5 && row[1] < 128 && row[2] > 128 && row[3] > 250, `halves kept, edge antialiased: ${row}`);
});

t.test('EXIF orientation: a 90 degree tag swaps the reported size', async (t) => {
  const img = await sharp({ create: { width: 40, height: 10, channels: 3, background: '#888' } })
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toBuffer();
  const out = await imageToTensor(img, base, 1e6);
  t.same(out.original, { width: 10, height: 40 });
});

t.test('format sniffing', async (t) => {
  const b = (s: string) => Buffer.from(s, 'latin1');
  t.equal(sniffImageFormat(b('\xff\xd8\xff\xe0')), 'jpeg');
  t.equal(sniffImageFormat(b('\x89PNG\r\n\x1a\n')), 'png');
  t.equal(sniffImageFormat(b('RIFF\0\0\0\0WEBPVP8 ')), 'webp');
  t.equal(sniffImageFormat(b('GIF89a')), 'gif');
  t.equal(sniffImageFormat(b('II*\0')), 'tiff');
  t.equal(sniffImageFormat(b('BM')), 'bmp');
  t.equal(sniffImageFormat(b('\0\0\0\x18ftypheic')), 'heif/avif');
  t.equal(sniffImageFormat(b('  <svg xmlns="http://www.w3.org/2000/svg"/>')), 'svg');
  t.equal(sniffImageFormat(b('hello')), undefined);
  t.equal(sniffImageFormat(new Uint8Array(0)), undefined);
});

/**
 * The one-pass bilinear every tensor used to be made with, term for term (OpenCV INTER_LINEAR mapping): the
 * separable resampler must give the same float32 values.
 */
function onePass(px: number[], w: number, h: number, n: number, spec: ImageSpec): number[] {
  const C = spec.channels === 'GRAY' ? 1 : 3;
  const { width: W, height: H } = spec;
  const place = placement(w, h, spec);
  const crop = place.crop ?? { left: 0, top: 0, width: place.resizeW, height: place.resizeH };
  const out = new Float32Array(C * H * W).fill(spec.padValue);
  const map = (o: number, offset: number, resized: number, src: number) => {
    if (spec.interpolation === 'nearest') {
      const i = Math.min(src - 1, Math.floor((o + offset) * (src / resized)));
      return { i0: i, i1: i, f: 0 };
    }
    const s = Math.min(src - 1, Math.max(0, (o + offset + 0.5) * (src / resized) - 0.5));
    const lo = Math.floor(s);
    return { i0: lo, i1: Math.min(src - 1, lo + 1), f: Math.fround(s - lo) };
  };
  const order = C === 1 ? [0] : spec.channels === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  for (let c = 0; c < C; c++) {
    const a = Math.fround(spec.scale / spec.std[c % spec.std.length]);
    const b = Math.fround(-spec.mean[c % spec.mean.length] / spec.std[c % spec.std.length]);
    for (let y = 0; y < crop.height; y++) {
      const my = map(y, crop.top, place.resizeH, h);
      for (let x = 0; x < crop.width; x++) {
        const mx = map(x, crop.left, place.resizeW, w);
        const at = (yy: number, xx: number) => px[(yy * w + xx) * n + order[c]];
        const top = at(my.i0, mx.i0) + (at(my.i0, mx.i1) - at(my.i0, mx.i0)) * mx.f;
        const bottom = at(my.i1, mx.i0) + (at(my.i1, mx.i1) - at(my.i1, mx.i0)) * mx.f;
        const [tx, ty] = [x + place.left, y + place.top];
        const o = spec.layout === 'NCHW' ? c * H * W + ty * W + tx : (ty * W + tx) * C + c;
        out[o] = (top + (bottom - top) * my.f) * a + b;
      }
    }
  }
  return [...out];
}

t.test('the resampler gives the one-pass bilinear values exactly, in every mode', async (t) => {
  // mulberry32: a small PRNG whose every bit varies (an LCG in doubles loses its low bits)
  let seed = 7;
  const rand = (k: number) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) % k;
  };
  const modes = ['stretch', 'fit-height', 'letterbox', 'center-crop'] as const;
  const seen = new Set<string>();
  let cases = 0;
  while (cases < 80) {
    const gray = rand(4) === 0;
    const [w, h] = [1 + rand(40), 1 + rand(30)];
    const spec: ImageSpec = {
      ...base,
      width: 1 + rand(48),
      height: 1 + rand(24),
      layout: rand(2) ? 'NCHW' : 'NHWC',
      channels: gray ? 'GRAY' : rand(2) ? 'BGR' : 'RGB',
      resize: modes[rand(4)],
      interpolation: rand(3) ? 'linear' : 'nearest',
      scale: 1 / 255,
      mean: [0.5, 0.4, 0.3],
      std: [0.5, 0.25, 0.2],
      padValue: rand(2) ? 0 : -1,
    };
    const place = placement(w, h, spec);
    if (w > 2 * place.resizeW && h > 2 * place.resizeH) continue; // libvips shrinks these (tested above)
    cases++;
    for (const v of [spec.layout, spec.channels, spec.resize, spec.interpolation, `pad ${spec.padValue}`]) seen.add(v);
    const n = gray ? 1 : 3;
    const px = Array.from({ length: w * h * n }, () => rand(256));
    const got = await imageToTensor(await png(w, h, px, n), spec, 1e6);
    t.same([...got.data], onePass(px, w, h, n, spec), `${w}x${h} -> ${JSON.stringify(spec)}`);
  }
  t.same(
    [...seen].sort(),
    [...modes, 'BGR', 'GRAY', 'NCHW', 'NHWC', 'RGB', 'linear', 'nearest', 'pad -1', 'pad 0'].sort(),
    'every layout, channel order, resize mode, interpolation and padding was drawn',
  );
});
