import t from 'tap';
import { decodeWav, isWav, readWavHeader, resample } from '../../src/preprocess/audio.js';
import { encodeWav, wavFile } from '../helpers/wav.js';

// WAV decoding (every accepted encoding, channel mix-down, header checks) and the windowed-sinc resampler.

const tone = (hz: number, rate: number, seconds: number, amp = 0.5) =>
  Float32Array.from({ length: Math.round(rate * seconds) }, (_, i) => amp * Math.sin((2 * Math.PI * hz * i) / rate));
const rms = (x: Float32Array, from = 0, to = x.length) => {
  let s = 0;
  for (let i = from; i < to; i++) s += x[i] * x[i];
  return Math.sqrt(s / (to - from));
};

t.test('every accepted encoding decodes to the same samples', async (t) => {
  const x = tone(440, 16000, 0.1);
  const encodings = [
    { format: 'pcm', bits: 8, tol: 1 / 100 },
    { format: 'pcm', bits: 16, tol: 1e-4 },
    { format: 'pcm', bits: 24, tol: 1e-6 },
    { format: 'pcm', bits: 32, tol: 1e-6 },
    { format: 'float', bits: 32, tol: 1e-7 },
    { format: 'float', bits: 64, tol: 1e-7 },
  ] as const;
  for (const { format, bits, tol } of encodings) {
    const a = decodeWav(encodeWav([x], 16000, { format, bits }), 600);
    t.equal(a.sampleRate, 16000);
    t.equal(a.samples.length, x.length);
    t.ok(
      a.samples.every((v, i) => Math.abs(v - x[i]) <= tol),
      `${format} ${bits}-bit`,
    );
  }
});

t.test('channels are mixed down by averaging; duration comes from the header', async (t) => {
  const l = tone(440, 8000, 0.5);
  const r = l.map((v) => -v / 2);
  const a = decodeWav(encodeWav([l, r], 8000, { format: 'float', bits: 32 }), 600);
  t.ok(a.samples.every((v, i) => Math.abs(v - l[i] / 4) < 1e-7));
  t.equal(a.durationMs, 500);
  t.ok(isWav(encodeWav([l], 8000)));
  t.notOk(isWav(Buffer.from('RIFF\0\0\0\0WEBPVP8 ')));
});

t.test(
  'header errors are MUON_ERR_INVALID_AUDIO; no samples is MISSING_INPUT; too long is AUDIO_TOO_LONG',
  async (t) => {
    const good = encodeWav([tone(440, 16000, 0.1)], 16000);
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return (err as { code?: string }).code;
      }
      return 'no error';
    };
    const f = { tag: 1, channels: 1, sampleRate: 16000, bits: 16 };
    t.equal(
      code(() => decodeWav(good.subarray(0, good.length - 101), 600)),
      'MUON_ERR_INVALID_AUDIO',
      'truncated',
    );
    t.equal(
      code(() => decodeWav(good.subarray(0, 30), 600)),
      'MUON_ERR_INVALID_AUDIO',
      'cut inside fmt',
    );
    t.equal(
      code(() => decodeWav(wavFile(f, Buffer.alloc(100), 4000), 600)),
      'MUON_ERR_INVALID_AUDIO',
      'lying size',
    );
    t.equal(
      code(() => decodeWav(wavFile(f, Buffer.alloc(101)), 600)),
      'MUON_ERR_INVALID_AUDIO',
      'half a frame',
    );
    t.equal(
      code(() => decodeWav(wavFile({ ...f, tag: 2 }, Buffer.alloc(100)), 600)),
      'MUON_ERR_INVALID_AUDIO',
      'ADPCM',
    );
    t.equal(
      code(() => decodeWav(wavFile({ ...f, bits: 12 }, Buffer.alloc(96)), 600)),
      'MUON_ERR_INVALID_AUDIO',
    );
    t.equal(
      code(() => decodeWav(wavFile({ ...f, channels: 0 }, Buffer.alloc(0)), 600)),
      'MUON_ERR_INVALID_AUDIO',
    );
    t.equal(
      code(() => decodeWav(wavFile(f, Buffer.alloc(0)), 600)),
      'MUON_ERR_MISSING_INPUT',
    );
    t.equal(
      code(() => decodeWav(good, 0.05)),
      'MUON_ERR_AUDIO_TOO_LONG',
    );
    // a streaming writer's 0xFFFFFFFF data size means "to the end of the file"
    t.equal(readWavHeader(wavFile(f, Buffer.alloc(64), 0xffffffff)).frames, 32);
    // chunks before the data: a handful in real files; beyond 256, refused (the loop reads headers)
    const withChunks = (n: number) => {
      const file = wavFile(f, Buffer.alloc(64));
      const junk = Buffer.alloc(8 * n);
      for (let at = 0; at < junk.length; at += 8) junk.write('junk', at, 'latin1');
      return Buffer.concat([file.subarray(0, 12), junk, file.subarray(12)]);
    };
    t.equal(readWavHeader(withChunks(250)).frames, 32, '250 empty chunks, then fmt and data: read');
    t.equal(
      code(() => readWavHeader(withChunks(300))),
      'MUON_ERR_INVALID_AUDIO',
      '300: refused',
    );
  },
);

t.test('resampling keeps the pass band and removes what would alias', async (t) => {
  for (const from of [44100, 48000, 22050, 8000, 11025]) {
    const x = tone(1000, from, 1);
    const y = resample(x, from, 16000);
    t.equal(y.length, Math.ceil((x.length * 16000) / from), `${from} Hz length`);
    // away from the edges, a 1 kHz tone keeps its amplitude (rms 0.5/sqrt 2) and phase
    const mid = rms(y, 2000, 14000);
    t.ok(Math.abs(mid - 0.5 / Math.SQRT2) < 0.005, `${from} Hz: 1 kHz rms ${mid}`);
    const err = y
      .slice(2000, 14000)
      .reduce((m, v, i) => Math.max(m, Math.abs(v - 0.5 * Math.sin((2 * Math.PI * 1000 * (i + 2000)) / 16000))), 0);
    t.ok(err < 0.01, `${from} Hz: max error ${err}`);
  }
  // 12 kHz at 48 kHz is above the new Nyquist (8 kHz): it must not come back as a 4 kHz alias
  const alias = rms(resample(tone(12000, 48000, 1), 48000, 16000), 2000, 14000);
  t.ok(alias < 0.5 / Math.SQRT2 / 100, `12 kHz attenuated more than 40 dB (rms ${alias})`);
  const same = tone(1000, 16000, 0.1);
  t.equal(resample(same, 16000, 16000), same, '16 kHz passes through');
});

t.test('an odd client-chosen rate is refused quickly instead of building a huge filter', async (t) => {
  const { resample } = await import('../../src/preprocess/audio.js');
  t.throws(() => resample(new Float32Array(800), 383_999, 16_000), { code: 'MUON_ERR_INVALID_AUDIO' });
  t.throws(() => resample(new Float32Array(800), 44_101, 16_000), { code: 'MUON_ERR_INVALID_AUDIO' });
  t.equal(resample(new Float32Array(4410), 44_100, 16_000).length, 1600, 'standard rates still work');
});
