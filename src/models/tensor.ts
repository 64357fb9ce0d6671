import type { HostTensor } from './session.js';

/**
 * Stacks equal-shaped float rows into one batch tensor [n, ...rowDims], padding with zero rows up to `batch`
 * (for models whose batch axis is fixed). Rows of another shape are a bug: the batcher keys batches by shape.
 */
export function stackRows(rows: readonly Float32Array[], rowDims: readonly number[], batch = rows.length): HostTensor {
  const size = rowDims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(size * batch);
  rows.forEach((r, i) => {
    if (r.length !== size) throw new Error(`row ${i} has ${r.length} values, expected ${size}; this is a bug`);
    data.set(r, i * size);
  });
  return { type: 'float32', data, dims: [batch, ...rowDims] };
}

/** Splits the first `n` rows of a batch output into views (no copy), one per request. */
export function splitRows(t: HostTensor, n: number): { data: Float32Array; dims: number[] }[] {
  if (!(t.data instanceof Float32Array)) throw new Error(`expected a float32 output, got ${t.type}`);
  const [batch, ...rowDims] = t.dims;
  if (batch < n) throw new Error(`output has ${batch} rows for ${n} requests; this is a bug`);
  const size = rowDims.reduce((a, b) => a * b, 1);
  const data = t.data;
  return Array.from({ length: n }, (_, i) => ({ data: data.subarray(i * size, (i + 1) * size), dims: rowDims }));
}
