import { create, toBinary } from '@bufbuild/protobuf';
import t from 'tap';
import * as pb from '../../src/grpc/gen/grpc_service_pb.js';
import { INFER_LIMITS, prescanModelInfer } from '../../src/grpc/prescan.js';
import { decodeRequest } from '../../src/grpc/service.js';
import { mulberry32 } from '../helpers/models.js';

// The ModelInfer wire scan (src/grpc/prescan.ts) must read a message as protobuf-es does: whatever it lets through
// decodes within INFER_LIMITS. The bytes below are the ones an adversarial review sent (each took the server's event
// loop for seconds and failed its liveness), then a seeded fuzz checks the property on many crafted messages.

const bytes = (...parts: (number[] | Uint8Array)[]) => Buffer.concat(parts.map((p) => Buffer.from(p)));
const rep = (b: number[], n: number) => Buffer.concat(Array.from({ length: n }, () => Buffer.from(b)));
const name = Buffer.from('text-orientation');
const head = bytes([0x0a, name.length], name);
/** A varint's bytes. */
const varint = (n: number) => {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
};
/** A length-delimited field. */
const len = (num: number, payload: Uint8Array) => bytes(varint(num * 8 + 2), varint(payload.length), payload);

/** What the message decodes into, in the terms of INFER_LIMITS. */
function decodedCounts(wire: Uint8Array) {
  const m = decodeRequest(pb.ModelInferRequestSchema, wire);
  const contents = m.inputs.map((i) => i.contents);
  const elements = contents.reduce(
    (n, c) =>
      n +
      (c === undefined
        ? 0
        : c.boolContents.length +
          c.intContents.length +
          c.int64Contents.length +
          c.uintContents.length +
          c.uint64Contents.length +
          c.fp32Contents.length +
          c.fp64Contents.length +
          c.bytesContents.length),
    0,
  );
  return {
    inputs: m.inputs.length,
    outputs: m.outputs.length,
    raw: m.rawInputContents.length,
    parameters: Math.max(
      Object.keys(m.parameters).length,
      ...m.inputs.map((i) => Object.keys(i.parameters).length),
      ...m.outputs.map((o) => Object.keys(o.parameters).length),
    ),
    dims: Math.max(0, ...m.inputs.map((i) => i.shape.length)),
    elements,
  };
}

const withinLimits = (c: ReturnType<typeof decodedCounts>) =>
  c.inputs <= INFER_LIMITS.tensors &&
  c.outputs <= INFER_LIMITS.tensors &&
  c.raw <= INFER_LIMITS.tensors &&
  c.parameters <= INFER_LIMITS.parameters &&
  c.dims <= INFER_LIMITS.dims &&
  c.elements <= INFER_LIMITS.typedElements;

t.test('a well-formed message passes, packed or not', async (t) => {
  const message = create(pb.ModelInferRequestSchema, {
    modelName: 'text-orientation',
    id: 'a',
    parameters: { p: { parameterChoice: { case: 'doubleParam', value: 1.5 } } },
    inputs: [
      { name: 'x', datatype: 'FP32', shape: [1n, 3n], contents: { fp32Contents: [1, 2, 3] } },
      { name: 'y', datatype: 'INT64', shape: [2n], contents: { int64Contents: [-1n, 2n ** 40n] } },
      {
        name: 'z',
        datatype: 'BYTES',
        shape: [2n],
        contents: { bytesContents: [new Uint8Array(3), new Uint8Array(0)] },
      },
    ],
    outputs: [{ name: 'o', parameters: { binary_data: { parameterChoice: { case: 'boolParam', value: true } } } }],
    rawInputContents: [new Uint8Array(8)],
  });
  const wire = toBinary(pb.ModelInferRequestSchema, message);
  t.doesNotThrow(() => prescanModelInfer(wire));
  // the same values one per field (unpacked): fp32 as I32 (tag 0x35), int64 as varints (tag 0x18)
  const unpacked = bytes(
    head,
    len(
      5,
      bytes(
        len(1, Buffer.from('x')),
        [0x18, 1, 0x18, 3],
        len(5, bytes([0x35], new Uint8Array(4), [0x35], new Uint8Array(4))),
      ),
    ),
  );
  t.doesNotThrow(() => prescanModelInfer(unpacked));
  t.same(decodedCounts(unpacked), { inputs: 1, outputs: 0, raw: 0, parameters: 0, dims: 2, elements: 2 });
});

t.test('known fields on a wire type their schema does not allow are refused (the review bytes)', async (t) => {
  const refused = (wire: Uint8Array, why: RegExp, what: string) =>
    t.throws(() => prescanModelInfer(wire), { code: 'MUON_ERR_BAD_REQUEST', message: why }, what);
  // `inputs` tagged as varints: protobuf-es reads a length (0) and decodes an empty input from each `28 00`
  const asVarint = bytes(head, rep([0x28, 0x00], 1000));
  t.ok(decodedCounts(asVarint).inputs > INFER_LIMITS.tensors, 'protobuf-es decodes them as inputs');
  refused(asVarint, /inputs sent as wire type 0/, 'inputs as varints');
  // tagged as fixed64: the 8 bytes the scan would skip hold a named input and two more entries
  const asI64 = bytes(head, rep([0x29, 0x03, 0x0a, 0x01, 0x41, 0x2a, 0x00, 0x2a, 0x00], 350));
  t.ok(decodedCounts(asI64).inputs > INFER_LIMITS.tensors);
  refused(asI64, /inputs sent as wire type 1/, 'inputs as fixed64');
  // a whole input hidden after a varint tag: its 100 dims would read as top-level fields to a lax scan
  const input = bytes(len(1, Buffer.from('x')), len(3, bytes(...Array.from({ length: 100 }, () => [1]))));
  refused(
    bytes(head, [0x28], varint(input.length), input),
    /inputs sent as wire type 0/,
    'an input after a varint tag',
  );
  // typed contents: fp32 values tagged as varints are read as 4-byte floats by protobuf-es
  refused(
    bytes(head, len(5, bytes(len(1, Buffer.from('x')), len(5, bytes([0x30, 1, 2, 3, 4]))))),
    /fp32_contents sent as wire type 0/,
    'fp32 as varints',
  );
  // a shape tagged as fixed32
  refused(
    bytes(head, len(5, bytes([0x1d, 0, 0, 0, 0]))),
    /dimensions in a shape sent as wire type 5/,
    'dims as fixed32',
  );
  // a map entry's value as a varint
  refused(
    bytes(head, len(4, bytes(len(1, Buffer.from('k')), [0x10, 0x00]))),
    /value sent as wire type 0/,
    'param value',
  );
});

t.test('packed runs must end on a value, tags must be uint32s, groups are refused', async (t) => {
  const refused = (wire: Uint8Array, why: RegExp) =>
    t.throws(() => prescanModelInfer(wire), { code: 'MUON_ERR_BAD_REQUEST', message: why });
  const input = (contents: Uint8Array) => bytes(head, len(5, bytes(len(1, Buffer.from('x')), len(5, contents))));
  // packed fp32 of 5 bytes: protobuf-es would read a second float 3 bytes past the run
  refused(input(len(6, new Uint8Array(5))), /packed fp32_contents of 5 bytes/);
  refused(input(len(7, new Uint8Array(12))), /packed fp64_contents of 12 bytes/);
  // packed int64 whose last varint runs on: protobuf-es would read into the next field
  refused(input(len(3, Uint8Array.from([1, 2, 0x80]))), /packed int64_contents ends inside a value/);
  refused(input(len(3, Uint8Array.from(Array.from({ length: 11 }, () => 0x80)))), /longer than 10 bytes/);
  // a packed shape the same way
  refused(bytes(head, len(5, len(3, Uint8Array.from([1, 0x81])))), /packed dimensions in a shape ends inside a value/);
  // a 6-byte tag (protobuf-es refuses it too), field 0, a group
  refused(bytes(head, [0xaa, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00]), /a tag that is not a uint32/);
  refused(bytes(head, [0x02, 0x00]), /field number 0/);
  refused(bytes(head, [0x43, 0x44]), /wire type 3/);
});

t.test('counts: entries, singular repeats, unknown fields, typed elements', async (t) => {
  t.throws(() => prescanModelInfer(bytes(head, rep([0x2a, 0x00], 257))), { message: /at most 256 inputs/ });
  t.doesNotThrow(() => prescanModelInfer(bytes(head, rep([0x2a, 0x00], 256))));
  // a singular field repeated (the decoder keeps the last; each repeat is a string made)
  t.throws(() => prescanModelInfer(rep([0x1a, 0x01, 0x41], 100_000)), { message: /at most 8 id/ });
  // unknown fields, at the top and inside an input
  t.throws(() => prescanModelInfer(bytes(head, rep([0x78, 0x00], 300))), { message: /at most 256 fields/ });
  t.throws(() => prescanModelInfer(bytes(head, len(5, rep([0x78, 0x00], 300)))), { message: /at most 256 fields/ });
  // typed elements over all inputs, packed and not
  const fp32 = (n: number) => len(5, bytes(len(1, Buffer.from('x')), len(5, len(6, new Uint8Array(4 * n)))));
  t.doesNotThrow(() => prescanModelInfer(bytes(head, fp32(INFER_LIMITS.typedElements))));
  t.throws(
    () =>
      prescanModelInfer(bytes(head, fp32(INFER_LIMITS.typedElements / 2), fp32(INFER_LIMITS.typedElements / 2 + 1))),
    {
      code: 'MUON_ERR_INVALID_TENSOR',
    },
  );
  // what the per-message limits let through but multiplies over nested messages (a review's cases): empty packed
  // runs (0 values each), unknown fields spread over parameter values; every tag counts against one request-wide cap
  t.throws(() => prescanModelInfer(bytes(head, len(5, rep([0x1a, 0x00], 400_000)))), {
    message: /at most 327680 fields in all/,
  });
  t.throws(() => prescanModelInfer(bytes(head, len(5, len(5, rep([0x32, 0x00], 400_000))))), {
    message: /at most 327680 fields in all/,
  });
  const value = len(2, rep([0x78, 0x00], 256));
  const entry = len(4, bytes(len(1, Buffer.from('k')), ...Array.from({ length: 8 }, () => value)));
  const input = len(5, bytes(...Array.from({ length: 64 }, () => entry)));
  t.throws(() => prescanModelInfer(bytes(head, ...Array.from({ length: 31 }, () => input))), {
    message: /at most 327680 fields in all/,
  });
  // a map entry's key repeated
  t.throws(() => prescanModelInfer(bytes(head, len(4, rep([0x0a, 0x00], 9)))), { message: /at most 8 key/ });
});

t.test('fuzz: the scan counts what the decoder builds, for every message it lets through', async (t) => {
  // well-formed messages of random fields (unknown ones too) and values, then, in most, one field's tag given another
  // wire type with its bytes left as they were: the two readers would part there if the scan read it differently
  const rand = mulberry32(13);
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]) => xs[int(xs.length)];
  const ascii = () => Uint8Array.from({ length: int(8) }, () => 0x20 + int(95));
  const smuggle = () => rep([0x2a, 0x00], 1 + int(6)); // `inputs` entries, should the bytes be read at the top
  const varints = () =>
    bytes(...Array.from({ length: int(6) }, () => (rand() < 0.7 ? [int(128)] : [0x80 | int(128), 1])));
  /** A field's kind: a nested message, a string or bytes, a scalar of a wire type, a repeated scalar of a width. */
  type Kind = { msg: string } | 'text' | 'blob' | { wire: 0 | 1 | 5 } | { packed: 0 | 4 | 8 };
  const schema: Record<string, Record<number, Kind>> = {
    request: {
      1: 'text',
      2: 'text',
      3: 'text',
      4: { msg: 'entry' },
      5: { msg: 'input' },
      6: { msg: 'output' },
      7: 'blob',
    },
    input: { 1: 'text', 2: 'text', 3: { packed: 0 }, 4: { msg: 'entry' }, 5: { msg: 'contents' } },
    output: { 1: 'text', 2: { msg: 'entry' } },
    entry: { 1: 'text', 2: { msg: 'param' } },
    param: { 1: { wire: 0 }, 2: { wire: 0 }, 3: 'text', 4: { wire: 1 }, 5: { wire: 0 } },
    contents: { 1: { packed: 0 }, 3: { packed: 0 }, 6: { packed: 4 }, 7: { packed: 8 }, 8: 'blob' },
  };
  type Part = { num: number; wire: number; body: Uint8Array };
  const encode = (parts: Part[]) =>
    bytes(...parts.map((p) => bytes(varint(p.num * 8 + p.wire), p.wire === 2 ? varint(p.body.length) : [], p.body)));
  const fixed = (n: number) => (rand() < 0.5 ? new Uint8Array(n) : bytes(smuggle(), new Uint8Array(n)).subarray(0, n));
  const value = (kind: Kind, depth: number): Omit<Part, 'num'> => {
    if (kind === 'text') return { wire: 2, body: ascii() };
    if (kind === 'blob') return { wire: 2, body: rand() < 0.5 ? smuggle() : ascii() };
    if ('msg' in kind) return { wire: 2, body: depth < 3 ? message(kind.msg, depth + 1) : new Uint8Array(0) };
    if ('wire' in kind)
      return {
        wire: kind.wire,
        body: kind.wire === 0 ? Uint8Array.from(varint(int(300))) : fixed(kind.wire === 1 ? 8 : 4),
      };
    // a repeated scalar: packed, or one value per field
    if (rand() < 0.5) return { wire: 2, body: kind.packed === 0 ? varints() : fixed(kind.packed * int(4)) };
    return {
      wire: kind.packed === 0 ? 0 : kind.packed === 4 ? 5 : 1,
      body: kind.packed === 0 ? Uint8Array.from(varint(int(300))) : fixed(kind.packed),
    };
  };
  function message(kind: string, depth: number): Uint8Array {
    const nums = Object.keys(schema[kind]).map(Number);
    const parts: Part[] = Array.from({ length: int(depth === 0 ? 24 : 6) }, () => {
      if (rand() < 0.1) {
        const wire = pick([0, 1, 2, 5]);
        return {
          num: 9 + int(5),
          wire,
          body: wire === 2 ? smuggle() : wire === 0 ? Uint8Array.from([1]) : fixed(wire === 1 ? 8 : 4),
        };
      }
      const num = pick(nums);
      return { num, ...value(schema[kind][num], depth) };
    });
    // one field, in some messages, on another wire type, its bytes as they were (a Len field's length kept)
    if (parts.length > 0 && rand() < 0.3) {
      const p = pick(parts);
      const wire = pick([0, 1, 2, 5].filter((w) => w !== p.wire));
      const body = p.wire === 2 ? bytes(varint(p.body.length), p.body) : p.body;
      Object.assign(p, { wire, body: wire === 2 ? body.subarray(1) : body });
    }
    return encode(parts);
  }
  const ROUNDS = 4000;
  let accepted = 0;
  let misread = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const wire = message('request', 0);
    let scanned;
    try {
      scanned = prescanModelInfer(wire);
    } catch {
      continue;
    }
    let decoded;
    try {
      decoded = decodedCounts(wire);
    } catch {
      continue; // protobuf-es refuses it: answered INVALID_ARGUMENT
    }
    accepted++;
    const most = (what: string) => scanned.most.get(what) ?? 0;
    const expected = {
      inputs: most('inputs'),
      outputs: most('outputs'),
      raw: most('raw_input_contents'),
      // a map keeps one entry per key: at most what was scanned
      parameters: Math.min(
        decoded.parameters,
        Math.max(most('parameters'), most('parameters on an input'), most('parameters on an output')),
      ),
      dims: most('dimensions in a shape'),
      elements: scanned.elements,
    };
    if (!withinLimits(decoded) || JSON.stringify(decoded) !== JSON.stringify(expected)) {
      if (++misread <= 3)
        t.fail(
          `scanned ${JSON.stringify(expected)}, decoded ${JSON.stringify(decoded)}: ${Buffer.from(wire).toString('hex')}`,
        );
    }
  }
  t.ok(accepted > ROUNDS / 8, `${accepted} of ${ROUNDS} messages passed the scan and decoded`);
  t.equal(misread, 0, 'the scan counted what the decoder built, for every one');
});
