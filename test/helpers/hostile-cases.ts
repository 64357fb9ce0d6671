import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { multipart } from './app.js';

// Hostile requests, built from the committed fixtures and sharp at test time (deterministic): every input kind, both
// APIs. Each names the answer a production server owes: a status and a stable code, or a 200.

const fixtures = path.resolve(import.meta.dirname, '../fixtures');
const fixture = (p: string) => readFileSync(path.join(fixtures, p));

/** One hostile request and the answer it must get. */
export interface HostileCase {
  readonly name: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly payload?: Buffer | string;
  readonly status: number;
  /** The error code, for 4xx answers. */
  readonly code?: string;
}

/** A WAV file: 16-bit PCM unless told otherwise; `dataBytes` lets the header lie about the data size. */
function wav(opts: { rate?: number; channels?: number; bits?: number; samples: number; dataBytes?: number }): Buffer {
  const { rate = 16000, channels = 1, bits = 16, samples } = opts;
  const block = (channels * bits) / 8;
  const data = Buffer.alloc(samples * block);
  for (let i = 0; i < samples * channels && bits === 16; i++)
    data.writeInt16LE(Math.round(8000 * Math.sin(i / 7)), i * 2);
  const head = Buffer.alloc(44);
  head.write('RIFF', 0, 'latin1');
  head.writeUInt32LE(36 + data.length, 4);
  head.write('WAVEfmt ', 8, 'latin1');
  head.writeUInt32LE(16, 16);
  head.writeUInt16LE(1, 20);
  head.writeUInt16LE(channels, 22);
  head.writeUInt32LE(rate, 24);
  head.writeUInt32LE(rate * block, 28);
  head.writeUInt16LE(block, 32);
  head.writeUInt16LE(bits, 34);
  head.write('data', 36, 'latin1');
  head.writeUInt32LE(opts.dataBytes ?? data.length, 40);
  return Buffer.concat([head, data]);
}

/** A PNG whose IHDR claims `w` x `h` (CRC fixed up), with the pixels of a 1 x 1 image: a decompression bomb's header. */
async function lyingPng(w: number, h: number): Promise<Buffer> {
  const png = Buffer.from(
    await sharp({ create: { width: 1, height: 1, channels: 3, background: '#fff' } })
      .png()
      .toBuffer(),
  );
  png.writeUInt32BE(w, 16);
  png.writeUInt32BE(h, 20);
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
  return png;
}

function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

const img = (type: string) => ({ 'content-type': type });
const orient = '/predict?model=text-orientation';
const vad = '/predict?model=voice-activity';
const lang = '/predict?model=language-id';
const infer = '/v2/models/text-orientation/infer';
const json = { 'content-type': 'application/json' };
const tensor = (over: object) =>
  JSON.stringify({
    inputs: [{ name: 'x', shape: [1, 3, 2, 2], datatype: 'FP32', data: new Array(12).fill(0), ...over }],
  });

/** Every case; `maxBodyBytes` is the app's MUON_MAX_BODY_BYTES. */
export async function hostileCases(maxBodyBytes: number): Promise<HostileCase[]> {
  const png = fixture('text-lines/line-03.png');
  const jpeg = fixture('photos/coffee.jpg');
  const rgba = await sharp(png).ensureAlpha(0.5).png().toBuffer();
  const cases: HostileCase[] = [
    // images
    {
      name: 'zero-byte body',
      url: orient,
      headers: img('image/png'),
      payload: Buffer.alloc(0),
      status: 400,
      code: 'MUON_ERR_MISSING_INPUT',
    },
    {
      name: 'truncated PNG',
      url: orient,
      headers: img('image/png'),
      payload: png.subarray(0, 100),
      status: 400,
      code: 'MUON_ERR_INVALID_IMAGE',
    },
    {
      name: 'truncated JPEG',
      url: orient,
      headers: img('image/jpeg'),
      payload: jpeg.subarray(0, 2000),
      status: 400,
      code: 'MUON_ERR_INVALID_IMAGE',
    },
    {
      name: 'PNG claiming 100000 x 100000 pixels',
      url: orient,
      headers: img('image/png'),
      payload: await lyingPng(100000, 100000),
      status: 422,
      code: 'MUON_ERR_IMAGE_DIMENSIONS',
    },
    {
      name: 'GIF',
      url: orient,
      headers: img('image/gif'),
      payload: fixture('bad/image.gif'),
      status: 415,
      code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'TIFF',
      url: orient,
      headers: img('image/tiff'),
      payload: fixture('bad/image.tiff'),
      status: 415,
      code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'SVG',
      url: orient,
      headers: img('image/svg+xml'),
      payload: fixture('bad/tiny.svg'),
      status: 415,
      code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'HEIC/AVIF header',
      url: orient,
      headers: img('image/heic'),
      payload: Buffer.from('\0\0\0\x18ftypheic\0\0\0\0mif1heic'),
      status: 415,
      code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'EXIF-rotated JPEG',
      url: orient,
      headers: img('image/jpeg'),
      payload: fixture('text-lines/line-01-exif180.jpg'),
      status: 200,
    },
    {
      name: '16-bit PNG',
      url: orient,
      headers: img('image/png'),
      payload: await sharp(png).toColourspace('rgb16').png().toBuffer(),
      status: 200,
    },
    {
      name: 'grayscale PNG',
      url: orient,
      headers: img('image/png'),
      payload: await sharp(png).grayscale().png().toBuffer(),
      status: 200,
    },
    {
      name: 'CMYK JPEG',
      url: orient,
      headers: img('image/jpeg'),
      payload: await sharp(jpeg).toColourspace('cmyk').jpeg().toBuffer(),
      status: 200,
    },
    { name: 'PNG with alpha', url: orient, headers: img('image/png'), payload: rgba, status: 200 },
    {
      name: '1 x 1 image, through OCR',
      url: '/predict?model=ocr',
      headers: img('image/png'),
      payload: await sharp({ create: { width: 1, height: 1, channels: 3, background: '#000' } })
        .png()
        .toBuffer(),
      status: 200,
    },
    {
      name: '20000 x 20 image, through OCR',
      url: '/predict?model=ocr',
      headers: img('image/png'),
      payload: await sharp({ create: { width: 20000, height: 20, channels: 3, background: '#fff' } })
        .png()
        .toBuffer(),
      status: 200,
    },
    {
      name: 'PNG bytes sent as text/plain to an image model',
      url: orient,
      headers: img('text/plain'),
      payload: png,
      status: 400,
      code: 'MUON_ERR_INVALID_TEXT',
    },
    {
      name: 'text sent to an image model',
      url: orient,
      headers: img('text/plain'),
      payload: 'hello',
      status: 415,
      code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
    },
    // multipart
    {
      name: 'multipart without a file',
      url: orient,
      ...multipart([{ name: 'note', data: 'no file' }]),
      status: 400,
      code: 'MUON_ERR_MISSING_INPUT',
    },
    {
      name: 'multipart with two files',
      url: orient,
      ...multipart([
        { name: 'a', filename: 'a.png', type: 'image/png', data: png },
        { name: 'b', filename: 'b.png', type: 'image/png', data: png },
      ]),
      status: 400,
      code: 'MUON_ERR_BAD_REQUEST',
    },
    {
      name: 'multipart with a 1 MB text field',
      url: orient,
      ...multipart([
        { name: 'note', data: 'x'.repeat(1 << 20) },
        { name: 'file', filename: 'a.png', type: 'image/png', data: png },
      ]),
      status: 400,
      code: 'MUON_ERR_BAD_REQUEST',
    },
    {
      name: 'multipart with an unterminated boundary',
      url: orient,
      ...multipart([{ name: 'file', filename: 'a.png', type: 'image/png', data: png }], { close: false }),
      status: 400,
      code: 'MUON_ERR_BAD_REQUEST',
    },
    {
      name: 'body over the limit',
      url: orient,
      headers: img('image/png'),
      payload: Buffer.alloc(maxBodyBytes + 1),
      status: 413,
      code: 'MUON_ERR_BODY_TOO_LARGE',
    },
    // audio
    {
      name: 'WAV whose header claims more data than it has',
      url: vad,
      headers: img('audio/wav'),
      payload: wav({ samples: 1600, dataBytes: 1_000_000 }),
      status: 400,
      code: 'MUON_ERR_INVALID_AUDIO',
    },
    { name: '8-bit WAV', url: vad, headers: img('audio/wav'), payload: wav({ samples: 1600, bits: 8 }), status: 200 },
    { name: '24-bit WAV', url: vad, headers: img('audio/wav'), payload: wav({ samples: 1600, bits: 24 }), status: 200 },
    {
      name: 'WAV with 0 samples',
      url: vad,
      headers: img('audio/wav'),
      payload: wav({ samples: 0 }),
      status: 400,
      code: 'MUON_ERR_MISSING_INPUT',
    },
    {
      name: 'WAV of 10 minutes (over the body limit)',
      url: vad,
      headers: img('audio/wav'),
      payload: wav({ samples: 600 * 16000 }),
      status: 413,
      code: 'MUON_ERR_BODY_TOO_LARGE',
    },
    {
      name: 'not a WAV, as audio/wav',
      url: vad,
      headers: img('audio/wav'),
      payload: png,
      status: 415,
      code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
    },
    // text
    {
      name: 'text with invalid UTF-8',
      url: lang,
      headers: img('text/plain'),
      payload: Buffer.from([0x48, 0xff, 0xfe, 0x21]),
      status: 400,
      code: 'MUON_ERR_INVALID_TEXT',
    },
    {
      name: 'text of emoji only',
      url: lang,
      headers: img('text/plain; charset=utf-8'),
      payload: '😀🎉🚀',
      status: 400,
      code: 'MUON_ERR_MISSING_INPUT',
    },
    {
      name: 'text over the size limit',
      url: lang,
      headers: img('text/plain'),
      payload: 'a'.repeat(16385),
      status: 413,
      code: 'MUON_ERR_TEXT_TOO_LARGE',
    },
    {
      name: 'text in another charset',
      url: lang,
      headers: img('text/plain; charset=latin1'),
      payload: 'caf\xe9',
      status: 415,
      code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE',
    },
    // v2
    {
      name: 'v2: wrong shape',
      url: infer,
      headers: json,
      payload: tensor({ shape: [3, 2, 2] }),
      status: 400,
      code: 'MUON_ERR_INVALID_TENSOR',
    },
    {
      name: 'v2: wrong datatype',
      url: infer,
      headers: json,
      payload: tensor({ datatype: 'INT32' }),
      status: 400,
      code: 'MUON_ERR_INVALID_TENSOR',
    },
    {
      name: 'v2: NaN and Infinity (not JSON numbers)',
      url: infer,
      headers: json,
      payload: tensor({}).replace('[0,0', '[NaN,Infinity'),
      status: 400,
      code: 'MUON_ERR_BAD_REQUEST',
    },
    {
      name: 'v2: data length mismatch',
      url: infer,
      headers: json,
      payload: tensor({ data: [1, 2, 3] }),
      status: 400,
      code: 'MUON_ERR_INVALID_TENSOR',
    },
    {
      name: 'v2: binary size mismatch',
      url: infer,
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': '109' },
      payload: Buffer.concat([
        Buffer.from(tensor({ data: undefined, parameters: { binary_data_size: 48 } }).padEnd(109)),
        Buffer.alloc(20),
      ]),
      status: 400,
      code: 'MUON_ERR_INVALID_TENSOR',
    },
    {
      name: 'v2: header length past the body',
      url: infer,
      headers: { 'content-type': 'application/json', 'inference-header-content-length': '999999' },
      payload: tensor({}),
      status: 400,
      code: 'MUON_ERR_BAD_REQUEST',
    },
    // names
    {
      name: 'unknown model',
      url: '/predict?model=nope',
      headers: img('image/png'),
      payload: png,
      status: 404,
      code: 'MUON_ERR_MODEL_NOT_FOUND',
    },
    {
      name: 'model name with ../',
      url: '/predict?model=..%2F..%2Fetc%2Fpasswd',
      headers: img('image/png'),
      payload: png,
      status: 400,
      code: 'MUON_ERR_BAD_REQUEST',
    },
    {
      name: 'model name with NUL',
      url: '/v1/models/a%00b/predict',
      headers: img('image/png'),
      payload: png,
      status: 400,
      code: 'MUON_ERR_BAD_REQUEST',
    },
    {
      name: 'model name of 10 KB',
      url: `/v2/models/${'a'.repeat(10_000)}/infer`,
      headers: json,
      payload: tensor({}),
      status: 400,
      code: 'MUON_ERR_BAD_REQUEST',
    },
  ];
  return cases;
}
