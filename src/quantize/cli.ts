#!/usr/bin/env node
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { ManifestError, type Manifest } from '../models/manifest.js';
import { readManifest, resolveFile } from '../models/folder.js';
import { ModelSession } from '../models/session.js';
import { ExternalDataError, hasExternalData, loadModelFile, saveModelFile } from '../onnx/external-data.js';
import { decodeModel, encodeModel } from '../onnx/model.js';
import { UnknownNodeError } from './build.js';
import {
  compress,
  modes,
  sha256,
  toolName,
  type CompressOptions,
  type Mode,
  type Progress,
  type Source,
} from './compress.js';
import { DatasetError, loadSamples, pipelineFeeds, type Sample } from './dataset.js';
import { LATENCY_TOLERANCE, objectives } from './latency.js';
import { reportMarkdown, searchMarkdown, type CompressionReport } from './report.js';
import { compressedEvidence } from './source-check.js';

/** Exit codes: documented in `--help` and the README. */
export const exitCodes = { ok: 0, gateFailed: 1, usage: 2, input: 3 } as const;

const help = `Usage: muon-compress <model.onnx | model folder> --out <folder> [options]

Compresses an ONNX model for Muon Serve and writes a model folder the server loads as is:
model.onnx, manifest.json (with a compression record), report.json and report.md.

Options:
  --out <folder>              output model folder (required; refused if it exists, unless --force)
  --mode <mode>               ${modes.join(' | ')} (default int8-static)
  --calibration <folder>      real sample inputs: images, .wav, .txt (through the server's own preprocessing
                              for the model folder's task), or .npy / .json tensors;
                              a server capture folder (MUON_CAPTURE_DIR/<model>) works as is
  --calibration-method <m>    minmax | percentile (default minmax)
  --percentile <p>            for percentile calibration (default 99.999)
  --eval <folder>             evaluation samples (default: the calibration folder)
  --max-samples <n>           use at most n files of each folder (default 256)
  --exclude <a,b,...>         node names kept in float
  --exclude-from <node>       keep this node and every node after it (in graph order, after optimization) in
                              float, e.g. a recognizer's attention neck and head
  --fix-input <input=value>   pin a scalar input the server always feeds the same value (e.g. sr=16000) to a
                              constant, so branches on it fold away and get quantized (repeatable)
  --no-fold                   keep per-channel Mul/Add steps beside the Convs and hard-swish as exported (by
                              default they are folded into the Convs' weights and bias and hard-swish becomes
                              x * HardSigmoid(x): the same function up to float rounding, fewer passes)
  --no-per-channel            per-tensor weight scales (default per-channel)
  --reduce-range              7-bit weights, for CPUs without VNNI
  --block-size <n>            int4-weight block size (default 32)
  --prune-ratio <r>           structured channel pruning: fraction of Conv output channels removed
  --prune-importance <i>      l1 | bn-gamma (default l1)
  --prune-layer <node=r>      per-layer prune ratio (repeatable)
  --no-prune-refit            keep the weights of layers that read pruned channels as they were (by default they
                              are refit by least squares on the calibration data, with at least 32 inputs and
                              --eval data of its own)
  --sparsity <s>              magnitude pruning: fraction of weights zeroed (a size gain after compression,
                              not a speed-up)
  --max-fidelity-loss <x>     deploy gate: refuse (exit 1, nothing written) when 1 - the task's metric
                              exceeds x: top-1 agreement (classifiers, language-id), per-step argmax
                              agreement (text-recognition), speech decision agreement (voice-activity),
                              text-mask agreement (ocr detector), mean output cosine (anything else)
  --search                    explore quantization mode x prune ratio x layers kept in float, print the
                              Pareto front (size, speed-up, loss), write the best one for --objective
                              to fit the budget
  --objective <o>             latency | size (default latency): for latency, a model slower than its original
                              (beyond ${LATENCY_TOLERANCE * 100} %) at a batch size the manifest serves (1 and batching.maxBatchSize)
                              is not written (exit 1); for size, the smaller model is written whatever its speed
  --allow-compressed-source   compress a model that was compressed already (refused by default: exit 2)
  --runs <n>                  latency runs per model and batch size (default 50)
  --threads <n>               onnxruntime intra-op threads for measurements (default 1)
  --force                     replace --out if it exists
  -h, --help                  this text

Exit codes: 0 written; 1 over the fidelity budget or slower than the original for --objective latency (nothing
written); 2 bad arguments, or a source that was compressed already; 3 unreadable model or data.`;

/** Turns argv into options, or throws a UsageError naming the problem. */
export function parseCli(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      mode: { type: 'string', default: 'int8-static' },
      calibration: { type: 'string' },
      'calibration-method': { type: 'string', default: 'minmax' },
      percentile: { type: 'string', default: '99.999' },
      eval: { type: 'string' },
      'max-samples': { type: 'string', default: '256' },
      exclude: { type: 'string', default: '' },
      'exclude-from': { type: 'string' },
      'no-per-channel': { type: 'boolean', default: false },
      'reduce-range': { type: 'boolean', default: false },
      'block-size': { type: 'string', default: '32' },
      'prune-ratio': { type: 'string' },
      'prune-importance': { type: 'string', default: 'l1' },
      'prune-layer': { type: 'string', multiple: true, default: [] },
      'no-prune-refit': { type: 'boolean', default: false },
      'no-fold': { type: 'boolean', default: false },
      'fix-input': { type: 'string', multiple: true, default: [] },
      sparsity: { type: 'string' },
      'max-fidelity-loss': { type: 'string' },
      search: { type: 'boolean', default: false },
      objective: { type: 'string', default: 'latency' },
      'allow-compressed-source': { type: 'boolean', default: false },
      runs: { type: 'string', default: '50' },
      threads: { type: 'string', default: '1' },
      force: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return { help: true as const };
  if (positionals.length !== 1) throw new UsageError('give exactly one model (a .onnx file or a model folder)');
  if (!values.out) throw new UsageError('--out <folder> is required');
  const num = (name: string, raw: string | undefined, min: number, max: number, integer = false) => {
    if (raw === undefined) return undefined;
    const v = Number(raw);
    if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      throw new UsageError(
        `--${name} must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got '${raw}'`,
      );
    }
    return v;
  };
  const oneOf = <T extends string>(name: string, raw: string, allowed: readonly T[]): T => {
    if (!(allowed as readonly string[]).includes(raw))
      throw new UsageError(`--${name} must be one of ${allowed.join(', ')}`);
    return raw as T;
  };
  const pairs = (name: 'prune-layer' | 'fix-input', what: string, min: number, max: number) => {
    const out: Record<string, number> = {};
    for (const spec of values[name]) {
      const [key, v] = spec.split('=');
      if (!key || v === undefined) throw new UsageError(`--${name} takes ${what}, got '${spec}'`);
      out[key] = num(name, v, min, max)!;
    }
    return out;
  };
  const pruneLayers = pairs('prune-layer', 'node=ratio', 0, 0.99);
  const fixInputs = pairs('fix-input', 'input=value', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const options: CompressOptions = {
    mode: oneOf<Mode>('mode', values.mode, modes),
    calibrationMethod: oneOf('calibration-method', values['calibration-method'], ['minmax', 'percentile'] as const),
    percentile: num('percentile', values.percentile, 50, 100)!,
    excludeNodes: values.exclude.split(',').filter(Boolean),
    ...(values['exclude-from'] ? { excludeFrom: values['exclude-from'] } : {}),
    perChannel: !values['no-per-channel'],
    reduceRange: values['reduce-range'],
    blockSize: num('block-size', values['block-size'], 16, 4096, true)!,
    pruneRatio: num('prune-ratio', values['prune-ratio'], 0, 0.99),
    pruneImportance: oneOf('prune-importance', values['prune-importance'], ['l1', 'bn-gamma'] as const),
    pruneLayers,
    pruneRefit: !values['no-prune-refit'],
    fold: !values['no-fold'],
    fixInputs,
    sparsity: num('sparsity', values.sparsity, 0, 0.999),
    maxFidelityLoss: num('max-fidelity-loss', values['max-fidelity-loss'], 0, 1),
    search: values.search,
    objective: oneOf('objective', values.objective, objectives),
    runs: num('runs', values.runs, 1, 100_000, true)!,
    threads: num('threads', values.threads, 1, 1024, true)!,
  };
  if (options.mode === 'int8-static' && !values.calibration)
    throw new UsageError('int8-static needs --calibration <folder>');
  if (!values.calibration && !values.eval)
    throw new UsageError('give --eval <folder> (or --calibration) to measure fidelity');
  return {
    help: false as const,
    model: positionals[0],
    out: values.out,
    calibration: values.calibration,
    evaluation: values.eval ?? values.calibration!,
    maxSamples: num('max-samples', values['max-samples'], 1, 1_000_000, true)!,
    force: values.force,
    allowCompressedSource: values['allow-compressed-source'],
    options,
  };
}

/** A bad command line (exit 2). */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Reads a `.onnx` file, or a model folder with its manifest (the model file may live in an npm package). */
async function readSource(p: string): Promise<Source> {
  if ((await stat(p)).isDirectory()) {
    const { manifest, where } = await readManifest(p);
    const file = resolveFile(p, manifest.model.path, manifest.model.package, '/model', where);
    return { path: file, bytes: await readModelBytes(file), manifest, dir: p };
  }
  return { path: p, bytes: await readModelBytes(p) };
}

/**
 * A model file's bytes, with external data inlined (the passes and onnxruntime-from-bytes need it inline), so the
 * source must fit in one 2 GB protobuf once inlined.
 */
async function readModelBytes(file: string): Promise<Uint8Array> {
  const bytes = await readFile(file);
  return hasExternalData(decodeModel(bytes)) ? encodeModel(await loadModelFile(file)) : bytes;
}

/** The output manifest: the source's, pointing at the new file, with the compression record added. */
function outputManifest(
  source: Source,
  bytes: Uint8Array,
  report: Awaited<ReturnType<typeof compress>>['report'],
): object | undefined {
  if (!source.manifest) return undefined;
  const { $schema, ...m } = source.manifest;
  return {
    ...($schema ? { $schema } : {}),
    ...m,
    description: `${m.description ?? ''} [${report.method}]`.trim(),
    model: { path: 'model.onnx', sha256: sha256(bytes) },
    compression: {
      method: report.method,
      sourceSha256: report.source.sha256,
      source: source.manifest.source ?? report.source.path,
      tool: toolName,
      options: report.options,
      sizeBytes: report.sizeBytes,
      fidelity: { metric: report.fidelity.metric, value: report.fidelity.value, samples: report.fidelity.samples },
      latencyMs: { before: report.latencyMs.before, after: report.latencyMs.after },
      createdAt: report.createdAt,
    },
  } satisfies Partial<Manifest> & object;
}

function progressBars(): Progress & { stop(): void } {
  if (!process.stderr.isTTY) {
    return {
      phase: (name, total) => process.stderr.write(`${name}: ${total} steps\n`),
      tick: () => {},
      stop: () => {},
    };
  }
  const bar = new cliProgress.SingleBar(
    { format: '{phase} [{bar}] {value}/{total} {eta_formatted}', stream: process.stderr, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    phase(name, total) {
      if (started) bar.stop();
      bar.start(total, 0, { phase: name.padEnd(11) });
      started = true;
    },
    tick: () => bar.increment(),
    stop: () => started && bar.stop(),
  };
}

/** One line: sizes, latencies per batch size, the gate metric. */
export function summaryOf(report: CompressionReport): string {
  const mb = (b: number) => (b / 1e6).toFixed(2);
  const latency = [
    ...report.latencyMs.batches.map((l) => `${l.before.toFixed(2)} -> ${l.after.toFixed(2)} ms (batch ${l.batch})`),
    ...report.latencyMs.unmeasured.map((u) => `batch ${u.batch} not measured`),
  ];
  return (
    `${report.method}: ${mb(report.sizeBytes.before)} MB -> ${mb(report.sizeBytes.after)} MB, ` +
    `latency ${latency.join(', ')}, ` +
    `${report.fidelity.metric} ${report.fidelity.value.toFixed(4)} on ${report.fidelity.samples} samples`
  );
}

/**
 * Why a compressed model must not be written (exit 1), as printed; undefined when it may be: over the fidelity
 * budget (with the whole report), or slower than its original for the latency objective.
 */
export function refusalOf(report: CompressionReport, budget: number | undefined): string | undefined {
  if (!report.passedGate)
    return (
      `muon-compress: over the fidelity budget (${summaryOf(report)}, allowed loss ${budget}); nothing written\n` +
      reportMarkdown(report)
    );
  if (!report.objective.met) {
    const slower = report.objective.slowerAt
      .map((l) => `batch ${l.batch}: ${l.before.toFixed(2)} -> ${l.after.toFixed(2)} ms`)
      .join(', ');
    return `muon-compress: slower than the original (${slower}); nothing written. --objective size writes it for its size\n`;
  }
  return undefined;
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parseCli>;
  try {
    args = parseCli(argv);
  } catch (err) {
    process.stderr.write(`muon-compress: ${(err as Error).message}\n\n${help}\n`);
    return exitCodes.usage;
  }
  if (args.help) {
    process.stdout.write(help + '\n');
    return exitCodes.ok;
  }
  if (existsSync(args.out) && !args.force) {
    process.stderr.write(`muon-compress: ${args.out} exists (use --force to replace it)\n`);
    return exitCodes.usage;
  }
  const bars = progressBars();
  const tmp = `${args.out}.tmp-${process.pid}`;
  try {
    const source = await readSource(args.model);
    const evidence = compressedEvidence(decodeModel(source.bytes), source.manifest);
    if (evidence.length > 0) {
      const made = source.manifest?.compression?.source;
      const message =
        `${args.model} was compressed already: ${evidence.join('; ')}. ` +
        `Compress its original${made ? ` (${made})` : ''} instead: compressing again stacks both passes' errors and ` +
        'reports against the wrong "before"';
      if (!args.allowCompressedSource) {
        bars.stop();
        process.stderr.write(`muon-compress: ${message}; --allow-compressed-source does it anyway\n`);
        return exitCodes.usage;
      }
      process.stderr.write(`muon-compress: warning: ${message}\n`);
    }
    // the source's own session preprocesses media samples (the server's pipeline, recorded at session.run)
    const probe = await ModelSession.create(source.bytes, { provider: 'cpu', intraOpThreads: args.options.threads });
    let calibration: Sample[];
    let evaluation: Sample[];
    try {
      const media =
        source.manifest && source.dir
          ? await pipelineFeeds(source.manifest, probe, source.dir, path.join(source.dir, 'manifest.json'))
          : undefined;
      const ctx = { inputs: probe.inputs, maxSamples: args.maxSamples, media };
      calibration = args.calibration ? await loadSamples(args.calibration, ctx) : [];
      evaluation = args.evaluation === args.calibration ? calibration : await loadSamples(args.evaluation, ctx);
    } finally {
      await probe.release();
    }
    const { bytes, report } = await compress(source, calibration, evaluation, args.options, bars);
    bars.stop();
    if (report.search) process.stdout.write(searchMarkdown(report.search, true).join('\n') + '\n\n');
    const refusal = refusalOf(report, args.options.maxFidelityLoss);
    if (refusal !== undefined) {
      process.stderr.write(refusal);
      return exitCodes.gateFailed;
    }
    // write next to the target and rename, so a crash never leaves a half-written model folder
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    // large weights go to model.onnx.data when the model would not fit in one protobuf; the manifest pins model.onnx,
    // which pins the sidecar through its checksum entries
    await saveModelFile(path.join(tmp, 'model.onnx'), decodeModel(bytes));
    const manifest = outputManifest(source, await readFile(path.join(tmp, 'model.onnx')), report);
    if (manifest) await writeFile(path.join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    await writeFile(path.join(tmp, 'report.json'), JSON.stringify(report, null, 2) + '\n');
    await writeFile(path.join(tmp, 'report.md'), reportMarkdown(report));
    await rm(args.out, { recursive: true, force: true });
    await rename(tmp, args.out);
    process.stdout.write(`${summaryOf(report)}\nwrote ${args.out}\n`);
    return exitCodes.ok;
  } catch (err) {
    bars.stop();
    await rm(tmp, { recursive: true, force: true }); // a failed write leaves nothing behind
    const known =
      err instanceof ManifestError ||
      err instanceof DatasetError ||
      err instanceof ExternalDataError ||
      (err as NodeJS.ErrnoException).code === 'ENOENT';
    process.stderr.write(`muon-compress: ${(err as Error).message}\n`);
    if (err instanceof UnknownNodeError) return exitCodes.usage;
    if (!known) process.stderr.write(`${(err as Error).stack}\n`);
    return exitCodes.input;
  }
}

// run when executed directly (node dist/quantize/cli.js or the muon-compress bin), not when imported by tests
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
