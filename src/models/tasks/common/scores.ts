// Class scores: activations and the k best, for the tasks that classify.

/** One class in a classification answer. */
export interface ClassScore {
  label: string;
  index: number;
  score: number;
}

/** Turns a row of logits into scores, as the manifest's `output.activation` says. */
export function activate(x: Float32Array, kind: 'none' | 'softmax' | 'sigmoid'): Float32Array {
  if (kind === 'none') return x;
  const out = new Float32Array(x.length);
  if (kind === 'sigmoid') {
    for (let i = 0; i < x.length; i++) out[i] = 1 / (1 + Math.exp(-x[i]));
    return out;
  }
  let max = -Infinity;
  for (const v of x) if (v > max) max = v;
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += out[i] = Math.exp(x[i] - max);
  for (let i = 0; i < x.length; i++) out[i] /= sum;
  return out;
}

/** Up to this many best classes are selected by insertion; more are sorted. */
const SELECT_AT_MOST = 32;

/** The k best classes, best first; ties keep the lower index first. */
export function topK(scores: Float32Array, k: number, labels: readonly string[]): ClassScore[] {
  const n = Math.max(0, Math.min(Math.floor(k), scores.length));
  if (n > SELECT_AT_MOST) {
    // many asked for (a client's top_k): a stable sort of every class, O(classes log classes)
    const idx = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b);
    return idx.slice(0, n).map((i) => ({ label: labels[i] ?? String(i), index: i, score: scores[i] }));
  }
  // the k best by insertion, in index order (an equal score never passes an earlier one): O(classes x k) beats a
  // sort of every class for the few a client asks for
  const best: number[] = [];
  for (let i = 0; i < scores.length && n > 0; i++) {
    const v = scores[i];
    if (best.length === n && !(v > scores[best[n - 1]])) continue;
    let at = best.length === n ? n - 1 : best.length;
    while (at > 0 && v > scores[best[at - 1]]) at--;
    if (best.length === n) best.pop();
    best.splice(at, 0, i);
  }
  return best.map((i) => ({ label: labels[i] ?? String(i), index: i, score: scores[i] }));
}
