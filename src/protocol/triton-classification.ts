import { Errors } from '../errors.js';
import type { HostTensor, TensorInfo } from '../models/session.js';
import { halfToFloat } from '../onnx/float16.js';

// Triton's classification extension: an output asked for with `"parameters": {"classification": N}` (what
// tritonclient's `InferRequestedOutput(name, class_count=N)` sends) comes back as a BYTES tensor of its N best
// classes per batch row, each "score:index" or "score:index:label", best first.

/**
 * The classes of one batch row of an output: every element but the batch axis when the model batches on its first
 * axis (`batched`: what its Triton configuration says, max_batch_size > 0), else every element of the output.
 */
function layout(dims: readonly number[], batched: boolean): { rows: number; classes: number } {
  const all = dims.reduce((a, b) => a * b, 1);
  const rows = batched && dims.length >= 1 ? dims[0] : 1;
  return { rows, classes: rows === 0 ? 0 : all / rows };
}

/** `parameters.classification` of a requested output: undefined when absent, else a positive integer or a 400. */
export function parseClassCount(output: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)
    throw new Errors.BAD_REQUEST(
      `output '${output}': "classification" must be a positive integer (the classes to return), got ${JSON.stringify(value)}`,
    );
  return value;
}

/** Refuses an output that has no scores to classify. (A count over the classes is cut to them, as Triton does.) */
export function checkClassCount(output: string, info: TensorInfo): void {
  if (info.type === 'bool') throw new Errors.BAD_REQUEST(`output '${output}' is BOOL: it has no scores to classify`);
}

/** Triton's score format: C's `std::to_string`, 6 decimals for a float, none for an integer. */
const score = (v: number, integer: boolean) => (integer ? String(v) : v.toFixed(6));

/**
 * The `asked` best classes (at most all of them, as Triton) of each batch row of `t`, best first (ties: the lower
 * index), as Triton formats them; `labels` name the classes when there is one per class. Shape `[rows, n]` for a
 * model batched on its first axis, else `[n]`.
 */
export function classify(
  output: string,
  t: HostTensor,
  asked: number,
  labels: readonly string[],
  batched: boolean,
): { dims: number[]; data: string[] } {
  if (t.type === 'bool') throw new Errors.BAD_REQUEST(`output '${output}' is BOOL: it has no scores to classify`);
  const { rows, classes } = layout(t.dims, batched);
  const n = Math.min(asked, classes);
  const integer = t.type !== 'float32' && t.type !== 'float16';
  const value: (i: number) => number =
    t.type === 'float16'
      ? (i) => halfToFloat((t.data as Uint16Array)[i])
      : t.type === 'int64'
        ? (i) => Number((t.data as BigInt64Array)[i])
        : (i) => (t.data as Float32Array)[i];
  const named = labels.length === classes;
  const data: string[] = [];
  const order = Array.from({ length: classes }, (_, i) => i);
  for (let r = 0; r < rows; r++) {
    const base = r * classes;
    order.sort((a, b) => value(base + b) - value(base + a) || a - b);
    for (let k = 0; k < n; k++) {
      const c = order[k];
      data.push(`${score(value(base + c), integer)}:${c}${named ? `:${labels[c]}` : ''}`);
    }
    order.sort((a, b) => a - b);
  }
  return { dims: batched && t.dims.length >= 1 ? [rows, n] : [n], data };
}

/** A BYTES tensor's binary form (Triton's): each element as a 4-byte little-endian length and its UTF-8 bytes. */
export function bytesTensor(data: readonly string[]): Buffer {
  const parts = data.map((s) => Buffer.from(s, 'utf8'));
  const out = Buffer.alloc(parts.reduce((n, p) => n + 4 + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.writeUInt32LE(p.length, at);
    p.copy(out, at + 4);
    at += 4 + p.length;
  }
  return out;
}

/**
 * An infer response's output of classes ({@link classify}): its JSON with the strings as data, or, when `binary`
 * collects the binary outputs, with their size (the strings appended to `binary` in Triton's binary form).
 */
export function classifiedOutput(
  name: string,
  t: HostTensor,
  n: number,
  labels: readonly string[],
  batched: boolean,
  binary: Buffer[] | undefined,
): Record<string, unknown> {
  const c = classify(name, t, n, labels, batched);
  const head = { name, datatype: 'BYTES', shape: c.dims };
  if (binary === undefined) return { ...head, data: c.data };
  const bytes = bytesTensor(c.data);
  binary.push(bytes);
  return { ...head, parameters: { binary_data_size: bytes.length } };
}
