import { Errors } from '../errors.js';

// What a message may make once decoded, bounded from its wire bytes before protobuf-es decodes it: decoding is
// synchronous on the event loop, and a small wire form can decode into far more memory and time than its size says
// (8 MiB of empty `inputs` entries decoded into 800 MB and took 8 s here; 8 MiB of packed int64 zeros, 210 MB and
// 4 s, one BigInt each).

/** Limits of a ModelInfer message, checked on its wire bytes. */
export const INFER_LIMITS = {
  /** `inputs`, `outputs` and `raw_input_contents` entries, each. */
  tensors: 256,
  /** Entries of each `parameters` map. */
  parameters: 64,
  /** Dimensions of one input's shape. */
  dims: 64,
  /**
   * Elements in typed `contents`, over all inputs (1 MiB of FP32): larger tensors go as `raw_input_contents`, which
   * decode as one copy of their bytes.
   */
  typedElements: 262_144,
} as const;

/** The largest message of an RPC other than ModelInfer (names, versions and a few parameters). */
export const SMALL_MESSAGE_BYTES = 64 * 1024;

/** Protobuf wire types. */
const Wire = { Varint: 0, I64: 1, Len: 2, I32: 5 } as const;

/** A protobuf wire-format reader over one message's bytes: fields as (number, wire type, payload bounds). */
class Reader {
  pos: number;
  constructor(
    readonly bytes: Uint8Array,
    start = 0,
    readonly end = bytes.length,
  ) {
    this.pos = start;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (this.pos >= this.end) throw malformed();
      const b = this.bytes[this.pos++];
      if (shift < 49) value += (b & 0x7f) * 2 ** shift; // exact for what matters here (tags and lengths)
      if ((b & 0x80) === 0) return value;
    }
    throw malformed();
  }

  /** The next field: its number, wire type and payload bounds (a length-delimited field's, without its length). */
  field(): { num: number; wire: number; start: number; end: number } {
    const tag = this.varint();
    const num = Math.floor(tag / 8);
    const wire = tag & 7;
    const start = this.pos;
    switch (wire) {
      case Wire.Varint:
        this.varint();
        break;
      case Wire.I64:
        this.pos += 8;
        break;
      case Wire.I32:
        this.pos += 4;
        break;
      case Wire.Len: {
        const length = this.varint();
        const payload = this.pos;
        this.pos += length;
        if (this.pos > this.end) throw malformed();
        return { num, wire, start: payload, end: this.pos };
      }
      default:
        throw malformed(); // groups (3, 4) are not in these messages
    }
    if (this.pos > this.end) throw malformed();
    return { num, wire, start, end: this.pos };
  }
}

const malformed = () => new Errors.BAD_REQUEST('the ModelInferRequest message cannot be decoded: malformed wire data');

function count(what: string, n: number, limit: number): void {
  if (n > limit) throw new Errors.BAD_REQUEST(`a ModelInferRequest holds at most ${limit} ${what}`);
}

/**
 * Checks a ModelInferRequest's wire bytes against {@link INFER_LIMITS} without decoding it: entry counts of its
 * repeated fields and maps, shape ranks, and the elements of typed contents (packed or not). Malformed data and
 * counts over a limit are MUON_ERR_BAD_REQUEST, typed contents over their limit MUON_ERR_INVALID_TENSOR.
 */
export function prescanModelInfer(bytes: Uint8Array): void {
  const top = new Reader(bytes);
  const entries = { parameters: 0, inputs: 0, outputs: 0, raw: 0 };
  let typed = 0;
  while (!top.done()) {
    const f = top.field();
    if (f.wire !== Wire.Len) continue;
    if (f.num === 4) count('parameters', ++entries.parameters, INFER_LIMITS.parameters);
    else if (f.num === 5) {
      count('inputs', ++entries.inputs, INFER_LIMITS.tensors);
      typed += scanInput(bytes, f.start, f.end);
      if (typed > INFER_LIMITS.typedElements)
        throw new Errors.INVALID_TENSOR(
          `typed contents hold more than ${INFER_LIMITS.typedElements} elements: send large tensors as raw_input_contents`,
        );
    } else if (f.num === 6) {
      count('outputs', ++entries.outputs, INFER_LIMITS.tensors);
      scanParametersOf(bytes, f.start, f.end, 2);
    } else if (f.num === 7) count('raw_input_contents', ++entries.raw, INFER_LIMITS.tensors);
  }
}

/** One InferInputTensor: its shape's rank and parameters are bounded; returns its typed contents' element count. */
function scanInput(bytes: Uint8Array, start: number, end: number): number {
  const r = new Reader(bytes, start, end);
  let dims = 0;
  let params = 0;
  let elements = 0;
  while (!r.done()) {
    const f = r.field();
    if (f.num === 3) dims += f.wire === Wire.Len ? varints(bytes, f.start, f.end) : 1;
    else if (f.num === 4 && f.wire === Wire.Len) params++;
    else if (f.num === 5 && f.wire === Wire.Len) elements += contentsElements(bytes, f.start, f.end);
  }
  count('dimensions in a shape', dims, INFER_LIMITS.dims);
  count('parameters on an input', params, INFER_LIMITS.parameters);
  return elements;
}

/** Elements of an InferTensorContents: packed or one per field, whatever the type. */
function contentsElements(bytes: Uint8Array, start: number, end: number): number {
  const r = new Reader(bytes, start, end);
  let n = 0;
  while (!r.done()) {
    const f = r.field();
    if (f.wire !== Wire.Len || f.num === 8)
      n += 1; // one element per field; bytes_contents one per entry
    else if (f.num === 6)
      n += (f.end - f.start) / 4; // packed fp32
    else if (f.num === 7)
      n += (f.end - f.start) / 8; // packed fp64
    else n += varints(bytes, f.start, f.end); // packed bool, int32, int64, uint32, uint64
  }
  return n;
}

/** The parameters map entries (field `num`) of a message, bounded. */
function scanParametersOf(bytes: Uint8Array, start: number, end: number, num: number): void {
  const r = new Reader(bytes, start, end);
  let params = 0;
  while (!r.done()) if (r.field().num === num) count('parameters on an output', ++params, INFER_LIMITS.parameters);
}

/** Varints in a packed run: bytes whose continuation bit is clear. */
function varints(bytes: Uint8Array, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) if ((bytes[i] & 0x80) === 0) n++;
  return n;
}
