import type { Fidelity } from './evaluate.js';
import { LATENCY_TOLERANCE, type BatchLatency, type Objective, type Unmeasured } from './latency.js';
import type { SearchCandidate } from './search.js';

/** Everything the CLI measured about one compression run; written as report.json and report.md. */
export interface CompressionReport {
  readonly tool: string;
  readonly createdAt: string;
  readonly source: { readonly path: string; readonly sha256: string };
  readonly method: string;
  readonly options: Record<string, unknown>;
  readonly sizeBytes: { readonly before: number; readonly after: number };
  /** Gzipped sizes: what magnitude pruning gains (dense kernels do not get faster from zeros). */
  readonly compressedSizeBytes?: { readonly before: number; readonly after: number };
  /** Median `session.run` latency on the CPU, same process, same threads: at batch 1, then per batch size. */
  readonly latencyMs: {
    readonly before: number;
    readonly after: number;
    readonly runs: number;
    readonly threads: number;
    readonly batches: readonly BatchLatency[];
    /** Batch sizes served that this sample could not measure (see compareLatency). */
    readonly unmeasured: readonly Unmeasured[];
  };
  /** The objective (see latency.ts), and the batch sizes at which it was missed. */
  readonly objective: { readonly name: Objective; readonly met: boolean; readonly slowerAt: readonly BatchLatency[] };
  readonly fidelity: Fidelity & { readonly metric: string; readonly value: number; readonly budget?: number };
  /** Operators of the graph onnxruntime runs, before and after. */
  readonly kernels: { readonly before: Record<string, number>; readonly after: Record<string, number> };
  /** Per-step notes: pruned layers, skipped layers and why, excluded nodes, search steps. */
  readonly steps: readonly { readonly step: string; readonly detail: unknown }[];
  readonly passedGate: boolean;
  /** `--search`: every candidate built and measured, and the index of the one written (none met the objective). */
  readonly search?: { readonly candidates: readonly SearchCandidate[]; readonly chosen?: number };
}

const pct = (after: number, before: number) => `${((after / before) * 100).toFixed(1)} %`;
const mib = (b: number) => `${(b / 1024 / 1024).toFixed(2)} MiB`;

/** The markdown version of a report, for humans and pull requests. */
export function reportMarkdown(r: CompressionReport): string {
  const lines = [
    `# Compression report: ${r.method}`,
    '',
    `Source \`${r.source.path}\` (sha256 \`${r.source.sha256}\`), written by ${r.tool} at ${r.createdAt}.`,
    '',
    '| | before | after | ratio |',
    '| --- | --- | --- | --- |',
    `| size | ${mib(r.sizeBytes.before)} | ${mib(r.sizeBytes.after)} | ${pct(r.sizeBytes.after, r.sizeBytes.before)} |`,
  ];
  if (r.compressedSizeBytes) {
    const c = r.compressedSizeBytes;
    lines.push(`| size, gzipped | ${mib(c.before)} | ${mib(c.after)} | ${pct(c.after, c.before)} |`);
  }
  const { threads, runs } = r.latencyMs;
  for (const l of r.latencyMs.batches)
    lines.push(
      `| median latency, batch ${l.batch} (CPU, ${threads} threads, ${runs} runs) | ${l.before.toFixed(3)} ms | ${l.after.toFixed(3)} ms | speed-up ${(l.before / l.after).toFixed(2)}x |`,
    );
  for (const u of r.latencyMs.unmeasured) lines.push(`| latency, batch ${u.batch} | not measured: ${u.reason} | | |`);
  const o = r.objective;
  lines.push(
    '',
    `Objective **${o.name}**: ` +
      (o.name === 'size'
        ? 'the smaller model ships whatever its speed.'
        : o.met
          ? `not slower than the original (beyond ${LATENCY_TOLERANCE * 100} %) at any batch size measured: **met**.`
          : `slower than the original at batch ${o.slowerAt.map((l) => l.batch).join(', ')}: **MISSED (model not written)**.`),
    '',
    `## Fidelity on ${r.fidelity.samples} samples`,
    '',
    `Gate metric **${r.fidelity.metric} = ${r.fidelity.value.toFixed(4)}**` +
      (r.fidelity.budget !== undefined
        ? `, allowed loss ${r.fidelity.budget}: **${r.passedGate ? 'passed' : 'FAILED (model not written)'}**`
        : ''),
    '',
    '| top-1 agreement | cosine mean | cosine min | max abs error | decision agreement |',
    '| --- | --- | --- | --- | --- |',
    `| ${r.fidelity.top1Agreement.toFixed(4)} | ${r.fidelity.cosineMean.toFixed(6)} | ${r.fidelity.cosineMin.toFixed(6)} | ${r.fidelity.maxAbsError.toExponential(3)} | ${r.fidelity.decisionAgreement?.toFixed(4) ?? 'n/a'} |`,
    '',
    '## Kernels onnxruntime runs',
    '',
    '| operator | before | after |',
    '| --- | --- | --- |',
  );
  const ops = [...new Set([...Object.keys(r.kernels.before), ...Object.keys(r.kernels.after)])].sort();
  for (const op of ops) lines.push(`| ${op} | ${r.kernels.before[op] ?? 0} | ${r.kernels.after[op] ?? 0} |`);
  if (r.search) lines.push('', ...searchMarkdown(r.search, false));
  lines.push('', '## Steps', '');
  for (const s of r.steps)
    lines.push(`- **${s.step}**: ${typeof s.detail === 'string' ? s.detail : '`' + JSON.stringify(s.detail) + '`'}`);
  lines.push('', `Options: \`${JSON.stringify(r.options)}\``, '');
  return lines.join('\n');
}

/**
 * The search's candidates as a table (only the Pareto front when `frontOnly`): size, speed-up over the original
 * (geometric mean over the batch sizes served), gate loss.
 */
export function searchMarkdown(s: NonNullable<CompressionReport['search']>, frontOnly: boolean): string[] {
  const lines = [
    frontOnly ? '## Search: the Pareto front (size, speed-up, loss)' : '## Search: every candidate',
    '',
    '| | method | kept in float | size | speed-up | loss | within budget | Pareto front |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  s.candidates.forEach((c, i) => {
    if (frontOnly && !c.pareto && i !== s.chosen) return;
    lines.push(
      `| ${i === s.chosen ? '**written**' : ''} | ${c.method} | ${c.keptInFloat} | ${mib(c.sizeBytes)} | ` +
        `${c.speedUp.toFixed(2)}x${c.slower ? ' (slower at a batch size)' : ''} | ${c.loss.toFixed(4)} | ` +
        `${c.withinBudget ? 'yes' : 'no'} | ${c.pareto ? 'yes' : ''} |`,
    );
  });
  if (s.chosen === undefined) lines.push('', 'No candidate met the budget and the objective.');
  return lines;
}
