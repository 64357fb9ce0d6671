import { Errors } from '../errors.js';

// What a message may make once decoded, bounded from its wire bytes before protobuf-es decodes it: decoding is
// synchronous on the event loop, and a small wire form can decode into far more memory and time than its size says
// (8 MiB of empty `inputs` entries decoded into 800 MB and took 8 s here; 8 MiB of packed int64 zeros, 210 MB and
// 4 s, one BigInt each).
//
// The scan must read the bytes exactly as protobuf-es will, or a message can say one thing to it and another to the
// decoder. protobuf-es reads a known field by its schema whatever wire type its tag says (a message field tagged as
// a varint still has a length read and a message decoded), and a packed run to its end even when its last value
// runs past it. So the scan refuses what the two could read apart: a known field on a wire type its schema does not
// allow, a packed run that does not end on a value's end, a tag that is not a uint32 of at most 5 bytes, a group.

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
  /** Fields of one message that its schema does not know (skipped by the decoder, but each costs a step). */
  unknownFields: 256,
  /** Occurrences of a singular field in one message (the last wins; an encoder writes it once). */
  singular: 8,
  /**
   * Fields in the whole request, every tag counted (known, unknown, each packed run, empty ones too): each is a step
   * of the decoder and often an allocation, and the per-message limits multiply over nested messages (8 MiB of empty
   * packed runs, or of unknown fields spread over parameter values, scanned and decoded in 0.3-0.9 s). A request
   * with typed contents sent one value per field needs one per value.
   */
  fields: 262_144 + 65_536,
} as const;

/** The largest message of an RPC other than ModelInfer (names, versions and a few parameters). */
export const SMALL_MESSAGE_BYTES = 64 * 1024;

/** Protobuf wire types. */
const Wire = { Varint: 0, I64: 1, Len: 2, I32: 5 } as const;

/** How one field of a message may travel, and what bounds it. */
interface Field {
  /** The wire type of one value: `Len` for strings, bytes, messages and map entries. */
  readonly wire: number;
  /** A repeated scalar may also come packed: one length-delimited run of values `width` bytes each (0: varints). */
  readonly packed?: { readonly width: 0 | 4 | 8 };
  /** The message each value holds, scanned in turn. */
  readonly message?: Message;
  /** Values allowed in one message, and what they are called in the refusal. */
  readonly max: number;
  readonly what: string;
  /** Its values are tensor elements: bounded over the whole request ({@link INFER_LIMITS.typedElements}) instead. */
  readonly elements?: true;
}

/** A message's known fields by number. */
type Message = Readonly<Record<number, Field>>;

const { singular } = INFER_LIMITS;
const text = (what: string): Field => ({ wire: Wire.Len, max: singular, what });

/** InferParameter: a oneof of scalars. */
const Parameter: Message = {
  1: { wire: Wire.Varint, max: singular, what: 'bool_param' },
  2: { wire: Wire.Varint, max: singular, what: 'int64_param' },
  3: text('string_param'),
  4: { wire: Wire.I64, max: singular, what: 'double_param' },
  5: { wire: Wire.Varint, max: singular, what: 'uint64_param' },
};
/** map<string, InferParameter> entries. */
const parameters = (what: string): Field => ({
  wire: Wire.Len,
  max: INFER_LIMITS.parameters,
  what,
  message: { 1: text('key'), 2: { wire: Wire.Len, max: singular, what: 'value', message: Parameter } },
});

/** A typed contents field: repeated scalars, packed or one per field, each an element. */
const elements = (wire: number, width: 0 | 4 | 8, what: string): Field => ({
  wire,
  packed: { width },
  max: Infinity,
  what,
  elements: true,
});
const Contents: Message = {
  1: elements(Wire.Varint, 0, 'bool_contents'),
  2: elements(Wire.Varint, 0, 'int_contents'),
  3: elements(Wire.Varint, 0, 'int64_contents'),
  4: elements(Wire.Varint, 0, 'uint_contents'),
  5: elements(Wire.Varint, 0, 'uint64_contents'),
  6: elements(Wire.I32, 4, 'fp32_contents'),
  7: elements(Wire.I64, 8, 'fp64_contents'),
  8: { wire: Wire.Len, max: Infinity, what: 'bytes_contents', elements: true },
};

const Input: Message = {
  1: text('name'),
  2: text('datatype'),
  3: { wire: Wire.Varint, packed: { width: 0 }, max: INFER_LIMITS.dims, what: 'dimensions in a shape' },
  4: parameters('parameters on an input'),
  5: { wire: Wire.Len, max: singular, what: 'contents', message: Contents },
};

const Output: Message = { 1: text('name'), 2: parameters('parameters on an output') };

/** ModelInferRequest. */
const InferRequest: Message = {
  1: text('model_name'),
  2: text('model_version'),
  3: text('id'),
  4: parameters('parameters'),
  5: { wire: Wire.Len, max: INFER_LIMITS.tensors, what: 'inputs', message: Input },
  6: { wire: Wire.Len, max: INFER_LIMITS.tensors, what: 'outputs', message: Output },
  7: { wire: Wire.Len, max: INFER_LIMITS.tensors, what: 'raw_input_contents' },
};

const malformed = (why: string) =>
  new Errors.BAD_REQUEST(`the ModelInferRequest message cannot be decoded: malformed wire data (${why})`);

/** A protobuf wire-format reader over one message's bytes, read as protobuf-es reads them. */
class Reader {
  pos: number;
  constructor(
    readonly bytes: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint of at most 10 bytes; its value exact up to 2^49, which is all that is read of one here. */
  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (this.pos >= this.end) throw malformed('a value runs past its message');
      const b = this.bytes[this.pos++];
      if (shift < 49) value += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return value;
    }
    throw malformed('a varint longer than 10 bytes');
  }

  /** The last field read by {@link next}: its number, wire type and payload bounds (without a length's bytes). */
  num = 0;
  wire = 0;
  start = 0;
  stop = 0;

  /** Reads the next field into {@link num}, {@link wire}, {@link start} and {@link stop} (no object per field). */
  next(): void {
    const at = this.pos;
    const tag = this.varint();
    // protobuf-es reads a tag as a uint32 of at most 5 bytes
    if (this.pos - at > 5 || tag >= 2 ** 32) throw malformed('a tag that is not a uint32');
    this.num = Math.floor(tag / 8);
    this.wire = tag & 7;
    if (this.num === 0) throw malformed('field number 0');
    switch (this.wire) {
      case Wire.Varint:
        this.start = this.pos;
        this.varint();
        break;
      case Wire.I64:
        this.start = this.pos;
        this.pos += 8;
        break;
      case Wire.I32:
        this.start = this.pos;
        this.pos += 4;
        break;
      case Wire.Len: {
        const length = this.varint();
        this.start = this.pos;
        this.pos += length;
        if (this.pos > this.end) throw malformed('a length runs past its message');
        break;
      }
      default:
        throw malformed(`wire type ${this.wire}`); // groups (3, 4) are not in these messages
    }
    if (this.pos > this.end) throw malformed('a value runs past its message');
    this.stop = this.pos;
  }
}

/** Values in a packed run of `width`-byte values (0: varints), which must end where its last value ends. */
function packedValues(bytes: Uint8Array, start: number, end: number, width: 0 | 4 | 8, what: string): number {
  if (width > 0) {
    if ((end - start) % width !== 0) throw malformed(`packed ${what} of ${end - start} bytes`);
    return (end - start) / width;
  }
  let n = 0;
  let run = 0;
  for (let i = start; i < end; i++) {
    if ((bytes[i] & 0x80) === 0) {
      n++;
      run = 0;
    } else if (++run >= 10) throw malformed(`a varint longer than 10 bytes in packed ${what}`);
  }
  if (run > 0) throw malformed(`packed ${what} ends inside a value`);
  return n;
}

/** What a ModelInferRequest decodes into, as the scan counted it. */
export interface WireCounts {
  /** Typed contents elements over all inputs. */
  elements: number;
  /** Fields read, at every level. */
  fields: number;
  /** The most values of each field (by the name in {@link INFER_LIMITS}' refusals) that one message holds. */
  readonly most: Map<string, number>;
}

/** Scans one message of `schema` in `bytes[start, end)`, and the messages its fields hold. */
function scanMessage(bytes: Uint8Array, start: number, end: number, schema: Message, totals: WireCounts): void {
  const r = new Reader(bytes, start, end);
  const seen: number[] = []; // values of each known field, by number (the schemas' numbers are small)
  let unknown = 0;
  while (!r.done()) {
    r.next();
    if (++totals.fields > INFER_LIMITS.fields)
      throw new Errors.BAD_REQUEST(`a ModelInferRequest holds at most ${INFER_LIMITS.fields} fields in all`);
    const field = schema[r.num];
    if (field === undefined) {
      if (++unknown > INFER_LIMITS.unknownFields)
        throw new Errors.BAD_REQUEST(
          `a ModelInferRequest message holds at most ${INFER_LIMITS.unknownFields} fields its schema does not know`,
        );
      continue;
    }
    let values = 1;
    if (field.packed && r.wire === Wire.Len)
      values = packedValues(bytes, r.start, r.stop, field.packed.width, field.what);
    else if (r.wire !== field.wire) throw malformed(`${field.what} sent as wire type ${r.wire}`);
    if (field.elements) {
      totals.elements += values;
      if (totals.elements > INFER_LIMITS.typedElements)
        throw new Errors.INVALID_TENSOR(
          `typed contents hold more than ${INFER_LIMITS.typedElements} elements: send large tensors as raw_input_contents`,
        );
    } else {
      const n = (seen[r.num] ?? 0) + values;
      if (n > field.max) throw new Errors.BAD_REQUEST(`a ModelInferRequest holds at most ${field.max} ${field.what}`);
      seen[r.num] = n;
    }
    if (field.message) scanMessage(bytes, r.start, r.stop, field.message, totals);
  }
  seen.forEach((n, num) => {
    const { what } = schema[num];
    if (n > (totals.most.get(what) ?? 0)) totals.most.set(what, n);
  });
}

/**
 * Checks a ModelInferRequest's wire bytes against {@link INFER_LIMITS} without decoding it, reading every message
 * the decoder would build: entry counts of its repeated fields and maps, shape ranks, fields it does not know, the
 * elements of typed contents (packed or not), and that each known field travels as its schema says. Malformed data
 * and counts over a limit are MUON_ERR_BAD_REQUEST, typed contents over their limit MUON_ERR_INVALID_TENSOR. Returns
 * what it counted (the tests check that the decoder builds exactly that).
 */
export function prescanModelInfer(bytes: Uint8Array): WireCounts {
  const counts: WireCounts = { elements: 0, fields: 0, most: new Map() };
  scanMessage(bytes, 0, bytes.length, InferRequest, counts);
  return counts;
}
