import { inverse, Matrix } from 'ml-matrix';

/**
 * Channel selection by reconstruction (`--prune-importance reconstruction`): which input channels of a group's
 * pointwise readers (1 x 1 Convs, Gemms, MatMuls) to remove so that the readers, refit by least squares on the
 * channels kept, lose the least of their output. Greedy backward elimination with the Optimal Brain Surgeon update
 * (Hassibi & Stork 1993; structured, per input channel, as in Frantar & Alistarh's Optimal Brain Compression,
 * 2022): for a reader with weights W (input x output, a bias row last) and the Gram matrix H of its inputs (a
 * constant 1 last), removing channel j and refitting the others costs ||W_j||² / (H⁻¹)_jj of output energy, and the
 * refit is W -= (H⁻¹)_:j W_j / (H⁻¹)_jj; H⁻¹ loses row and column j the same way. Unlike a score per channel, this
 * sees that two correlated channels can stand in for each other, and only one of them needs keeping.
 */

/** One reader of the group: its weight [C + 1, M] (row c: what input channel c feeds each output; row C: bias). */
export interface Reader {
  readonly weight: Float64Array;
  readonly outputs: number;
  /** Gram matrix [C + 1, C + 1] of its input channels and a constant 1, over calibration positions. */
  readonly gram: Float64Array;
}

/** Ridge on the Gram matrix, relative to its mean diagonal (as in passes/refit.ts). */
const RIDGE = 1e-4;

/**
 * The channels to keep (ascending) of `channels`, removing `remove` of them, by the output energy the readers lose
 * (each reader's loss relative to its output energy, summed). Ties go to the lower channel index.
 */
export function selectByReconstruction(readers: readonly Reader[], channels: number, remove: number): number[] {
  const C = channels;
  const D = C + 1;
  const state = readers.map((r) => {
    if (r.gram.length !== D * D || r.weight.length !== D * r.outputs)
      throw new RangeError(`a reader's weight or Gram matrix does not have ${C} channels and a bias`);
    let trace = 0;
    for (let i = 0; i < D; i++) trace += r.gram[i * D + i];
    const lambda = RIDGE * (trace / D || 1);
    const h = new Matrix(D, D);
    for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) h.set(i, j, r.gram[i * D + j] + (i === j ? lambda : 0));
    const hinv = Float64Array.from(inverse(h).to1DArray());
    const w = Float64Array.from(r.weight);
    const M = r.outputs;
    // the reader's output energy, w' H w over its outputs: what its losses are measured against
    let energy = 0;
    for (let m = 0; m < M; m++)
      for (let i = 0; i < D; i++) {
        let hw = 0;
        for (let j = 0; j < D; j++) hw += r.gram[i * D + j] * w[j * M + m];
        energy += w[i * M + m] * hw;
      }
    return { hinv, w, M, energy: energy > 0 ? energy : 1 };
  });
  const alive = new Array<boolean>(C).fill(true);
  for (let step = 0; step < remove; step++) {
    let best = -1;
    let bestCost = Infinity;
    for (let j = 0; j < C; j++) {
      if (!alive[j]) continue;
      let cost = 0;
      for (const s of state) {
        const d = s.hinv[j * D + j];
        let wj = 0;
        for (let m = 0; m < s.M; m++) wj += s.w[j * s.M + m] ** 2;
        cost += d > 0 ? wj / d / s.energy : Infinity;
      }
      if (cost < bestCost) {
        bestCost = cost;
        best = j;
      }
    }
    if (best < 0) break;
    alive[best] = false;
    for (const s of state) {
      const { hinv, w, M } = s;
      const d = hinv[best * D + best];
      if (!(d > 0)) continue;
      const col = new Float64Array(D);
      for (let i = 0; i < D; i++) col[i] = hinv[i * D + best];
      const row = w.slice(best * M, (best + 1) * M);
      for (let i = 0; i < D; i++) {
        const f = col[i] / d;
        if (f === 0) continue;
        for (let m = 0; m < M; m++) w[i * M + m] -= f * row[m];
        for (let k = 0; k < D; k++) hinv[i * D + k] -= f * col[k];
      }
    }
  }
  return alive.flatMap((a, c) => (a ? [c] : []));
}
