import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import t from 'tap';
import { lineSpec } from '../helpers/image-spec.js';
import { decodeWav } from '../../src/preprocess/audio.js';
import { imageToTensor } from '../../src/preprocess/image.js';
import { decodeUtf8 } from '../../src/preprocess/text.js';
import { decodeInferRequest, nestedDeeperThan, parseInferBody } from '../../src/protocol/v2-codec.js';

// Property tests over the request decoders: whatever bytes a client sends, a decoder returns a value or throws one
// of our client errors (a MUON_ERR_ code with a 4xx status); never a TypeError, a RangeError or a crash.

const clientError = (err: unknown) => {
  const e = err as { code?: string; statusCode?: number };
  return (
    typeof e?.code === 'string' && e.code.startsWith('MUON_ERR_') && (e.statusCode ?? 0) >= 400 && e.statusCode! < 500
  );
};
const settles = (f: () => unknown) => {
  try {
    f();
    return true;
  } catch (err) {
    return clientError(err) || (console.error(err), false);
  }
};
const settlesAsync = async (f: () => Promise<unknown>) =>
  f().then(
    () => true,
    (err) => clientError(err) || (console.error(err), false),
  );

const wav = readFileSync(new URL('../fixtures/audio/speech-16k-mono.wav', import.meta.url)).subarray(0, 4000);
const png = readFileSync(new URL('../fixtures/text-lines/line-03.png', import.meta.url));
/** A real file with some bytes overwritten and maybe cut short. */
const mutated = (base: Buffer) =>
  fc
    .tuple(
      fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      fc.nat(base.length),
    )
    .map(([edits, cut]) => {
      const b = Buffer.from(base.subarray(0, Math.max(1, cut)));
      for (const [i, v] of edits) if (i < b.length) b[i] = v;
      return b;
    });
const runs = { numRuns: 300, seed: 42 };

t.test('WAV decoding: random bytes and mutated real files', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (b) => settles(() => decodeWav(b, 600))),
    runs,
  );
  fc.assert(
    fc.property(mutated(wav), (b) => settles(() => decodeWav(b, 600))),
    runs,
  );
  t.pass('no decoder crash');
});

t.test('text decoding: random bytes', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (b) => settles(() => decodeUtf8(b))),
    runs,
  );
  t.pass('no decoder crash');
});

t.test('v2 infer bodies: random bytes, random JSON, random header lengths', async (t) => {
  const body = fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
    fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v))),
    fc
      .record({
        inputs: fc.array(
          fc.record(
            {
              name: fc.oneof(fc.string(), fc.constant('x')),
              shape: fc.array(fc.oneof(fc.integer({ min: -2, max: 5 }), fc.double()), { maxLength: 4 }),
              datatype: fc.constantFrom('FP32', 'INT64', 'BOOL', 'FP16', 'UINT8', 'INT32', 'BYTES', 'fp32'),
              data: fc.oneof(fc.array(fc.oneof(fc.double(), fc.boolean(), fc.string())), fc.double()),
              parameters: fc.record(
                { binary_data_size: fc.oneof(fc.integer({ min: -5, max: 64 }), fc.string()) },
                { requiredKeys: [] },
              ),
            },
            { requiredKeys: [] },
          ),
          { maxLength: 3 },
        ),
        outputs: fc.array(fc.record({ name: fc.string() }), { maxLength: 2 }),
      })
      .map((v) => Buffer.from(JSON.stringify(v))),
  );
  fc.assert(
    fc.property(body, fc.option(fc.integer({ min: -10, max: 400 })), fc.uint8Array({ maxLength: 64 }), (b, n, tail) =>
      settles(() => decodeInferRequest(parseInferBody(Buffer.concat([b, tail]), n ?? undefined))),
    ),
    runs,
  );
  t.pass('no decoder crash');
});

t.test('the JSON depth scan agrees with the parsed depth (brackets in strings and escapes included)', async (t) => {
  const depth = (v: unknown): number =>
    typeof v === 'object' && v !== null ? 1 + Math.max(0, ...Object.values(v).map(depth)) : 0;
  const tricky = fc.constantFrom('[', ']', '{', '}', '"', '\\', '\\"[', '[[[');
  const value = fc.jsonValue({ maxDepth: 8 }).chain((v) =>
    fc.oneof(
      fc.constant(v),
      tricky.map((s) => ({ s, v })),
      tricky.map((s) => [s, [v]]),
    ),
  );
  fc.assert(
    fc.property(value, fc.integer({ min: 0, max: 10 }), (v, limit) => {
      const text = Buffer.from(JSON.stringify(v));
      return nestedDeeperThan(text, limit) === depth(v) > limit;
    }),
    runs,
  );
  t.pass('scan and parse agree');
});

t.test('image decoding: random bytes and mutated real PNGs', async (t) => {
  const spec = lineSpec;
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 100 }).map((b) => Buffer.from(b)),
        mutated(png),
      ),
      (b) => settlesAsync(() => imageToTensor(b, spec, 1_000_000)),
    ),
    { numRuns: 150, seed: 42 },
  );
  t.pass('no decoder crash');
});
