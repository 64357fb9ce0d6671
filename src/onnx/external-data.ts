/**
 * ONNX external data: tensors whose bytes live in a sidecar file instead of the protobuf.
 *
 * A protobuf message cannot exceed 2 GB, so large models keep their weights outside the `.onnx` file. The ONNX spec
 * marks such a tensor with `data_location = EXTERNAL` and `external_data` key/value entries:
 *
 * - `location` (required): a path relative to the folder of the `.onnx` file;
 * - `offset` / `length` (optional, decimal strings): the byte range in that file (default: from 0 to end of file);
 * - `checksum` (optional): a SHA-1 digest. The spec says "of the file under location"; some writers put the digest
 *   of the tensor's own bytes there, so readers here accept either.
 *
 * This module reads such models into memory with every tensor inlined ({@link loadModelFile}), so passes can work on
 * plain `raw_data`; writes models with large initializers moved to one sidecar ({@link saveModelFile}); and checks a
 * model's references without reading the data into memory ({@link checkExternalData}), for callers that hand the
 * file path to onnxruntime, which resolves the sidecar itself.
 *
 * Locations are untrusted input (a model downloaded from anywhere names files to read): absolute paths, and paths that
 * leave the model's folder (`..`, or a symlink pointing out), are refused.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, realpath, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { clearField, create, isFieldSet } from '@bufbuild/protobuf';
import { decodeModel, encodeModel, type ModelProto, type TensorProto } from './model.js';
import { StringStringEntryProtoSchema, TensorProto_DataLocation, TensorProtoSchema } from './proto/onnx_pb.js';
import { initializerSlots, tensorBytes, tensors } from './tensor-slots.js';

/** A broken or unsafe external data reference; the message names the tensor and the file. */
export class ExternalDataError extends Error {
  override name = 'ExternalDataError';
}

/** Options of {@link saveModelFile}. */
export interface SaveModelOptions {
  /**
   * Initializers whose `raw_data` has at least this many bytes go to the sidecar. Default: if the model's tensors add
   * up to more than {@link INLINE_LIMIT} bytes, 1024 (onnx's `size_threshold` default); otherwise every tensor stays
   * inline, so small models remain a single self-contained file.
   */
  externalDataThreshold?: number;
  /** Sidecar path, relative to the `.onnx` file's folder. Default `<basename of file>.data`. */
  location?: string;
}

/**
 * Above this many bytes of tensor data, {@link saveModelFile} moves weights out by default. It leaves headroom under
 * the 2 GiB protobuf limit for the graph itself and for the approximate size estimate.
 */
export const INLINE_LIMIT = 1.8e9;

/** Sidecar offsets are multiples of this, so runtimes can mmap each tensor (the spec's "SHOULD be multiples of 4096"). */
export const ALIGNMENT = 4096;

/** The default `externalDataThreshold` of large models, as in onnx's `convert_model_to_external_data`. */
const DEFAULT_THRESHOLD = 1024;

/**
 * Whether any tensor of the model (initializers, sparse initializers, attribute tensors, in every subgraph and
 * function) stores its data externally.
 *
 * @param model - a decoded model
 */
export function hasExternalData(model: ModelProto): boolean {
  for (const { tensor } of tensors(model)) if (isExternal(tensor)) return true;
  return false;
}

/**
 * Reads a `.onnx` file and inlines every external tensor: its bytes are read from the referenced file into `raw_data`,
 * and `external_data` / `data_location` are cleared, so the result is an ordinary in-memory model (which
 * `encodeModel` can serialize as long as it stays under 2 GB).
 *
 * Checks each reference: the location must stay inside the model's folder, the range must lie inside the file, and a
 * `checksum`, if present, must match.
 *
 * @param file - path of the `.onnx` file; locations are resolved against its folder
 * @returns the decoded model with all data inline
 * @throws {ExternalDataError} for an unsafe location, a missing file, an out-of-range segment or a checksum mismatch
 */
export async function loadModelFile(file: string): Promise<ModelProto> {
  const model = decodeModel(await readFile(file));
  if (!hasExternalData(model)) return model;
  const files = new SidecarFiles(path.dirname(file));
  try {
    // Check every reference before reading any, so a truncated file is reported as such, not as the whole-file
    // checksum mismatch it also causes, and nothing is read for a model that cannot load anyway.
    const refs: [TensorProto, ExternalRef][] = [];
    for (const { tensor } of tensors(model)) if (isExternal(tensor)) refs.push([tensor, await files.resolve(tensor)]);
    for (const [tensor, ref] of refs) {
      const data = await files.read(ref);
      await files.verify(ref, data);
      tensor.rawData = data;
      // Cleared, not set to DEFAULT: an unset field is what a tensor that was never external has, so the result
      // encodes exactly like the model did before it was saved with external data.
      tensor.externalData = [];
      clearField(tensor, TensorProtoSchema.field.dataLocation);
    }
  } finally {
    await files.close();
  }
  return model;
}

/**
 * Checks a model's external data references without loading the data: every location is inside `dir`, exists, and
 * holds the referenced range; and, with `verifyChecksums`, that `checksum` entries match (which reads each file once).
 * Meant for callers that pass the model's path to onnxruntime, so that a bad model fails with a clear message (and an
 * unsafe location is never opened by the runtime).
 *
 * @param model - a decoded model
 * @param dir - the folder of the `.onnx` file
 * @returns the distinct sidecar files referenced, as absolute paths
 * @throws {ExternalDataError} as {@link loadModelFile} does
 */
export async function checkExternalData(
  model: ModelProto,
  dir: string,
  opts: { verifyChecksums?: boolean } = {},
): Promise<string[]> {
  const files = new SidecarFiles(dir);
  const used = new Set<string>();
  try {
    for (const { tensor } of tensors(model)) {
      if (!isExternal(tensor)) continue;
      const ref = await files.resolve(tensor);
      used.add(ref.file);
      if (opts.verifyChecksums && ref.checksum !== undefined) await files.verify(ref, await files.read(ref));
    }
  } finally {
    await files.close();
  }
  return [...used];
}

/**
 * Writes a model to `file`, moving large initializers to one sidecar file next to it.
 *
 * Every initializer (of the main graph and of subgraphs) with at least `externalDataThreshold` bytes of `raw_data` is
 * appended to the sidecar at a {@link ALIGNMENT}-aligned offset, and its entry in the `.onnx` gets `location`,
 * `offset`, `length` and `checksum` (the SHA-1 of the whole sidecar, as the spec defines it) with
 * `data_location = EXTERNAL`. Tensors held in the typed fields (`float_data`, ...) stay inline, as onnx does.
 *
 * The caller's model is not modified. The sidecar is written before the `.onnx`, so a crash never leaves a model that
 * points at missing data; a sidecar is only written when some tensor goes to it.
 *
 * @param file - path of the `.onnx` file to write
 * @param model - the model, with its data inline (or already external with other locations, which are kept as is)
 * @param opts - threshold and sidecar name
 * @throws {ExternalDataError} for a location that is absolute or leaves the folder
 */
export async function saveModelFile(file: string, model: ModelProto, opts: SaveModelOptions = {}): Promise<void> {
  const dir = path.dirname(file);
  const location = opts.location ?? `${path.basename(file)}.data`;
  const threshold = opts.externalDataThreshold ?? (tensorBytes(model) > INLINE_LIMIT ? DEFAULT_THRESHOLD : Infinity);
  const sidecar = checkLocation(dir, location, `sidecar of ${file}`);

  const moved = [...initializerSlots(model)].filter(
    ({ tensor }) =>
      !isExternal(tensor) && isFieldSet(tensor, TensorProtoSchema.field.rawData) && tensor.rawData.length >= threshold,
  );
  if (moved.length === 0) {
    await writeFile(file, encodeModel(model));
    return;
  }

  // Stream the tensors to the sidecar one by one, so a large model is never copied into a second buffer.
  await mkdir(path.dirname(sidecar), { recursive: true });
  const sha1 = createHash('sha1');
  const ranges: { offset: number; length: number }[] = [];
  const out = await open(sidecar, 'w');
  try {
    let end = 0;
    for (const { tensor } of moved) {
      const offset = Math.ceil(end / ALIGNMENT) * ALIGNMENT;
      if (offset > end) {
        const pad = new Uint8Array(offset - end);
        await writeAll(out, pad, end);
        sha1.update(pad);
      }
      await writeAll(out, tensor.rawData, offset);
      sha1.update(tensor.rawData);
      ranges.push({ offset, length: tensor.rawData.length });
      end = offset + tensor.rawData.length;
    }
  } finally {
    await out.close();
  }
  const checksum = sha1.digest('hex');

  // Swap in external stand-ins, encode, and put the originals back. Encoding is synchronous, so no other code can
  // observe the swapped model; this avoids deep-cloning (and so copying every weight of) a model that may be huge.
  let bytes: Uint8Array;
  try {
    moved.forEach((slot, i) => slot.replace(externalStandIn(slot.tensor, location, ranges[i], checksum)));
    bytes = encodeModel(model);
  } finally {
    // slot.tensor is still the original object: the slot captured it before the swap
    for (const slot of moved) slot.replace(slot.tensor);
  }
  await writeFile(file, bytes);
}

/** A copy of `t` without its data, pointing at `range` of the sidecar; `t` itself is untouched. */
function externalStandIn(
  t: TensorProto,
  location: string,
  range: { offset: number; length: number },
  checksum: string,
): TensorProto {
  // A shallow copy that keeps protobuf-es's prototype (field defaults and presence) and unknown fields; the data
  // fields are then unset rather than emptied, as an external tensor must not carry raw_data.
  const copy = Object.assign(Object.create(Object.getPrototypeOf(t) as object) as TensorProto, t);
  clearField(copy, TensorProtoSchema.field.rawData);
  const entry = (key: string, value: string) => create(StringStringEntryProtoSchema, { key, value });
  copy.externalData = [
    entry('location', toPosix(location)),
    entry('offset', String(range.offset)),
    entry('length', String(range.length)),
    entry('checksum', checksum),
  ];
  copy.dataLocation = TensorProto_DataLocation.EXTERNAL;
  return copy;
}

function isExternal(t: TensorProto): boolean {
  return t.dataLocation === TensorProto_DataLocation.EXTERNAL || t.externalData.length > 0;
}

/** A resolved, bounds-checked external reference. */
interface ExternalRef {
  readonly tensor: string;
  readonly file: string;
  readonly offset: number;
  readonly length: number;
  readonly checksum: string | undefined;
}

/** Resolves references against one folder, keeping each sidecar open once. */
class SidecarFiles {
  readonly #open = new Map<string, { handle: FileHandle; size: number }>();
  readonly #digests = new Map<string, string>();
  #realDir: string | undefined;

  constructor(readonly dir: string) {}

  async resolve(t: TensorProto): Promise<ExternalRef> {
    const what = `tensor '${t.name}'`;
    const info = new Map(t.externalData.map((e) => [e.key, e.value]));
    const location = info.get('location');
    if (location === undefined || location === '')
      throw new ExternalDataError(`${what}: external data has no location`);
    const file = checkLocation(this.dir, location, what);
    // A symlink inside the folder could still point out of it; compare real paths too.
    this.#realDir ??= await realpath(this.dir);
    let real: string;
    try {
      real = await realpath(file);
    } catch (err) {
      throw new ExternalDataError(`${what}: external data file ${file} cannot be opened: ${(err as Error).message}`);
    }
    if (!isInside(this.#realDir, real)) {
      throw new ExternalDataError(`${what}: external data file ${file} resolves to ${real}, outside ${this.dir}`);
    }
    let f = this.#open.get(file);
    if (!f) {
      const handle = await open(file, 'r');
      f = { handle, size: (await handle.stat()).size };
      this.#open.set(file, f);
    }
    const offset = parseSize(info.get('offset'), 'offset', what, 0);
    const length = parseSize(info.get('length'), 'length', what, f.size - offset);
    if (offset + length > f.size || length < 0) {
      throw new ExternalDataError(
        `${what}: external data [${offset}, ${offset + length}) lies past the end of ${file} (${f.size} bytes; truncated?)`,
      );
    }
    return { tensor: t.name, file, offset, length, checksum: info.get('checksum') };
  }

  async read(ref: ExternalRef): Promise<Uint8Array> {
    const { handle } = this.#open.get(ref.file)!;
    const buf = Buffer.allocUnsafe(ref.length);
    let done = 0;
    while (done < ref.length) {
      const { bytesRead } = await handle.read(buf, done, ref.length - done, ref.offset + done);
      if (bytesRead === 0) throw new ExternalDataError(`tensor '${ref.tensor}': ${ref.file} ended early (truncated?)`);
      done += bytesRead;
    }
    return buf;
  }

  /** Accepts the digest of the tensor's bytes or of the whole file (the spec's wording), SHA-1, hex. */
  async verify(ref: ExternalRef, data: Uint8Array): Promise<void> {
    if (ref.checksum === undefined) return;
    const want = ref.checksum.toLowerCase();
    if (createHash('sha1').update(data).digest('hex') === want) return;
    let whole = this.#digests.get(ref.file);
    if (whole === undefined) {
      whole = await digestFile(ref.file);
      this.#digests.set(ref.file, whole);
    }
    if (whole !== want) {
      throw new ExternalDataError(
        `tensor '${ref.tensor}': checksum ${ref.checksum} does not match ${ref.file} (modified or corrupt)`,
      );
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.#open.values()].map((f) => f.handle.close()));
    this.#open.clear();
  }
}

async function digestFile(file: string): Promise<string> {
  const hash = createHash('sha1');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Resolves a location against `dir`, refusing absolute paths and anything outside `dir`. */
function checkLocation(dir: string, location: string, what: string): string {
  // Both separators and drive letters count as absolute: a model written on Windows is read on Linux and vice versa.
  if (path.isAbsolute(location) || path.win32.isAbsolute(location)) {
    throw new ExternalDataError(
      `${what}: external data location '${location}' is absolute; it must be relative to the model's folder`,
    );
  }
  const file = path.resolve(dir, toPosix(location).split('/').join(path.sep));
  if (!isInside(path.resolve(dir), file) || file === path.resolve(dir)) {
    throw new ExternalDataError(
      `${what}: external data location '${location}' points outside the model's folder ${dir}`,
    );
  }
  return file;
}

function isInside(dir: string, file: string): boolean {
  const rel = path.relative(dir, file);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function toPosix(p: string): string {
  return p.replaceAll('\\', '/');
}

function parseSize(raw: string | undefined, key: string, what: string, fallback: number): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new ExternalDataError(`${what}: external data ${key} '${raw}' is not a non-negative integer`);
  }
  return Number(raw);
}

async function writeAll(out: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await out.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}
