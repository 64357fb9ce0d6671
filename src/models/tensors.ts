import { RowFailure } from '../batching/batcher.js';
import { Errors } from '../errors.js';
import type { HostTensor, SessionRunner, TensorInfo, TensorType } from './session.js';

// Raw tensor requests (the Open Inference Protocol's `infer`): feeds in, graph outputs out, no pre- or
// post-processing. They queue on the model's own batcher next to its task rows; their key keeps them apart.

/** One raw tensor request as the batcher sees it. */
export class TensorRow {
  constructor(
    readonly feeds: Readonly<Record<string, HostTensor>>,
    /** Its size along axis 0 (1 when the request is stacked with others). */
    readonly batch: number,
  ) {}
}

/** A raw request's answer: every graph output, this request's rows only. */
export type TensorOutputs = Record<string, HostTensor>;

/** Typed-array constructors by element type (bool travels as one byte, float16 as its bits). */
const arrays: Record<TensorType, new (n: number) => HostTensor['data']> = {
  float32: Float32Array,
  int64: BigInt64Array,
  int32: Int32Array,
  float16: Uint16Array,
  uint8: Uint8Array,
  bool: Uint8Array,
};

/** Element types a raw request may carry. */
export function isTensorType(t: string): t is TensorType {
  return Object.hasOwn(arrays, t);
}

/** A graph input or output whose axis 0 is free: the axis raw requests stack along. */
export function batchesOnAxis0(info: TensorInfo): boolean {
  return info.shape.length > 0 && typeof info.shape[0] !== 'number';
}

/**
 * Checks raw feeds against the graph: every input present and no other, element types equal, rank equal, fixed
 * dimensions equal, and a common size along axis 0 for graphs that batch there. Throws INVALID_TENSOR (400) naming
 * the input. Returns the batcher key: requests of one row whose inputs all have a free axis 0 stack with requests of
 * the same other dimensions; anything else runs alone.
 */
export function checkFeeds(
  feeds: Readonly<Record<string, HostTensor>>,
  inputs: readonly TensorInfo[],
  outputs: readonly TensorInfo[],
  solo: () => string,
): { key: string; batch: number } {
  for (const name of Object.keys(feeds)) {
    if (!inputs.some((i) => i.name === name)) {
      throw new Errors.INVALID_TENSOR(`unexpected input '${name}' (inputs: ${inputs.map((i) => i.name).join(', ')})`);
    }
  }
  const batches = new Set<number>();
  const named = new Map<string, { size: number; input: string }>();
  for (const info of inputs) {
    const t = feeds[info.name];
    if (!t) throw new Errors.INVALID_TENSOR(`missing input '${info.name}'`);
    if (t.type !== info.type) throw new Errors.INVALID_TENSOR(`input '${info.name}' is ${info.type}, got ${t.type}`);
    const fixedOk =
      t.dims.length === info.shape.length && info.shape.every((d, i) => typeof d !== 'number' || d === t.dims[i]);
    if (!fixedOk) {
      throw new Errors.INVALID_TENSOR(
        `input '${info.name}' has shape [${info.shape.map((d) => (typeof d === 'number' ? d : -1)).join(', ')}], got [${t.dims.join(', ')}]`,
      );
    }
    if (t.dims.some((d) => !Number.isInteger(d) || d < 0))
      throw new Errors.INVALID_TENSOR(`input '${info.name}': dimensions must be non-negative integers`);
    const empty = t.dims.findIndex((d, i) => d === 0 && typeof info.shape[i] !== 'number');
    if (empty >= 0) throw new Errors.INVALID_TENSOR(`input '${info.name}' is empty (axis ${empty} has size 0)`);
    // a dimension the graph names (`batch`) is one size wherever it appears
    info.shape.forEach((d, i) => {
      if (typeof d !== 'string' || d === '') return;
      const seen = named.get(d);
      if (seen && seen.size !== t.dims[i])
        throw new Errors.INVALID_TENSOR(
          `input '${info.name}' axis ${i} ('${d}') is ${t.dims[i]}, but ${seen.size} in input '${seen.input}'`,
        );
      named.set(d, { size: t.dims[i], input: info.name });
    });
    if (info.shape.length > 0 && typeof info.shape[0] !== 'number') batches.add(t.dims[0]);
  }
  const stackable =
    inputs.every(batchesOnAxis0) && outputs.every(batchesOnAxis0) && batches.size === 1 && batches.has(1);
  if (!stackable) return { key: solo(), batch: batches.size === 1 ? [...batches][0] : 1 };
  const shapes = inputs.map((i) => `${i.name}:${feeds[i.name].dims.slice(1).join('x')}`).join(';');
  return { key: `tensors|${shapes}`, batch: 1 };
}

/**
 * The runtime's own refusal of inputs, when a graph fails on what a raw request fed it (a Conv on a 1x1 image, a
 * recurrent state of the wrong batch size): the message onnxruntime gives for a node that failed, except failures
 * of the machine itself (memory, the GPU). Returns that message, or undefined for any other error.
 */
export function graphRejection(err: unknown): string | undefined {
  const message = err instanceof Error ? err.message : typeof err === 'string' ? err : '';
  // nested graphs (If, Loop) repeat the header for each level: the innermost node says what failed
  const nodes = [
    ...message.matchAll(/Non-zero status code returned while running (\S+) node\. Name:'[^']*' Status Message: /g),
  ];
  const last = nodes.at(-1);
  if (!last) return undefined;
  const status = message.slice(last.index + last[0].length).split('\n')[0];
  if (/alloc|out of memory|CUDA|cuDNN|cuBLAS/i.test(status)) return undefined;
  return `${last[1]}: ${status}`.slice(0, 300);
}

/**
 * Runs a batch, and when it fails, each row alone: one bad row (an input the graph rejects at run time) fails by
 * itself with its own error, its batch neighbours get their outputs. A batch of one fails as it is.
 */
export async function isolated<Row, Out>(
  rows: readonly Row[],
  run: (rows: Row[]) => Promise<Out[]>,
): Promise<(Out | RowFailure)[]> {
  try {
    return await run([...rows]);
  } catch (err) {
    if (rows.length === 1) throw err;
    const alone: (Out | RowFailure)[] = [];
    for (const row of rows)
      alone.push(
        await run([row]).then(
          (r) => r[0],
          (e: unknown) => new RowFailure(e),
        ),
      );
    return alone;
  }
}

/** Runs a batch of raw requests: stacked along axis 0 when there are several, then split back per request. */
export async function runTensorRows(session: SessionRunner, rows: readonly TensorRow[]): Promise<TensorOutputs[]> {
  const names = session.outputs.map((o) => o.name);
  if (rows.length === 1) return [await session.run(rows[0].feeds, names)];
  const feeds: Record<string, HostTensor> = {};
  for (const name of Object.keys(rows[0].feeds)) {
    const parts = rows.map((r) => r.feeds[name]);
    const first = parts[0];
    const data = new arrays[first.type](parts.reduce((n, p) => n + p.data.length, 0));
    let at = 0;
    for (const p of parts) {
      (data as Float32Array).set(p.data as Float32Array, at);
      at += p.data.length;
    }
    feeds[name] = { type: first.type, data, dims: [rows.length, ...first.dims.slice(1)] };
  }
  const out = await session.run(feeds, names);
  for (const [name, t] of Object.entries(out)) {
    // an output whose axis 0 is not the batch (a list of detections) cannot be split: the caller runs rows alone
    if (t.dims[0] !== rows.length)
      throw new Error(`output '${name}' has ${t.dims[0]} rows for ${rows.length} requests`);
  }
  return rows.map((_, r) => {
    const mine: TensorOutputs = {};
    for (const [name, t] of Object.entries(out)) {
      const per = t.data.length / t.dims[0];
      mine[name] = { type: t.type, data: t.data.slice(r * per, (r + 1) * per), dims: [1, ...t.dims.slice(1)] };
    }
    return mine;
  });
}
