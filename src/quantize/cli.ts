#!/usr/bin/env node
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import cliProgress from 'cli-progress';
import { ManifestError, type Manifest } from '../models/manifest.js';
import { readManifest, resolveFile } from '../models/folder.js';
import { ModelSession } from '../models/session.js';
import { ExternalDataError, hasExternalData, loadModelFile, saveModelFile } from '../onnx/external-data.js';
import { decodeModel, encodeModel, type ModelProto } from '../onnx/model.js';
import { UnknownNodeError } from './build.js';
import { checkModelPath, help, InputError, modelArgument, parseCli } from './cli-args.js';
import { compress, sha256, toolName, type Progress, type Source } from './compress.js';
import { DatasetError, loadSamples, pipelineFeeds, type Sample } from './dataset.js';
import { reportMarkdown, searchMarkdown, type CompressionReport } from './report.js';
import { compressedEvidence } from './source-check.js';

export { parseCli, UsageError } from './cli-args.js';

/** Exit codes: documented in `--help` and the README. */
export const exitCodes = { ok: 0, gateFailed: 1, usage: 2, input: 3 } as const;

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
  return hasExternalData(decodeOnnx(file, bytes)) ? encodeModel(await loadModelFile(file)) : bytes;
}

/**
 * The model in `bytes`, or an InputError that says the file is not one, and what it looks like instead, rather than
 * the protobuf reader's own words (`illegal tag`, `cant skip wire type 4`): most bytes fail to parse, and some parse
 * into a model without a graph (an empty file does).
 */
export function decodeOnnx(file: string, bytes: Uint8Array): ModelProto {
  const notOnnx = (why: string) => new InputError(`not an ONNX model: ${file} (${why})`);
  if (bytes.length === 0) throw notOnnx('the file is empty');
  let model: ModelProto;
  try {
    model = decodeModel(bytes);
  } catch (err) {
    throw notOnnx(looksLike(bytes) ?? `its bytes are not an ONNX protobuf: ${(err as Error).message}`);
  }
  if (!model.graph || model.graph.node.length === 0)
    throw notOnnx(looksLike(bytes) ?? 'it parses as a protobuf but holds no graph');
  return model;
}

/** What a file that is not a model most likely is, from its first bytes. */
function looksLike(bytes: Uint8Array): string | undefined {
  const head = Buffer.from(bytes.subarray(0, 512));
  const magic: [string, string][] = [
    ['\x89PNG', 'a PNG image'],
    ['\xff\xd8\xff', 'a JPEG image'],
    ['GIF8', 'a GIF image'],
    ['RIFF', 'a RIFF file (WAV audio or a WebP image)'],
    ['PK\x03\x04', 'a zip archive'],
    ['\x1f\x8b', 'a gzip file'],
    ['%PDF', 'a PDF document'],
  ];
  for (const [prefix, what] of magic) if (head.toString('latin1').startsWith(prefix)) return `it is ${what}`;
  // an ONNX file starts with a field tag byte (ir_version: 0x08), never printable text
  if (/^[\t\n\r\x20-\x7e]+$/.test(head.toString('latin1'))) return 'it is text';
  return undefined;
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
 * budget, or slower than its original for the latency objective. One line: the whole report goes to a file.
 */
export function refusalOf(report: CompressionReport, budget: number | undefined): string | undefined {
  const { metric, value, samples } = report.fidelity;
  if (!report.passedGate)
    return (
      `muon-compress: over the fidelity budget: ${report.method} has ${metric} ${value.toFixed(4)} on ${samples} ` +
      `samples, a loss of ${(1 - value).toFixed(4)} where ${budget} is allowed; nothing written\n`
    );
  if (!report.objective.met) {
    const slower = report.objective.slowerAt
      .map((l) => `batch ${l.batch}: ${l.before.toFixed(2)} -> ${l.after.toFixed(2)} ms`)
      .join(', ');
    return `muon-compress: slower than the original (${slower}); nothing written. --objective size writes it for its size\n`;
  }
  return undefined;
}

/** Where the report of a model that was not written goes: next to where it would have been, not inside. */
const refusedReport = (out: string, ext: 'md' | 'json') => `${out}.refused-report.${ext}`;

/** Writes a refused model's whole report; returns the line that says where (or why it could not). */
async function writeRefusedReport(out: string, report: CompressionReport): Promise<string> {
  const [md, json] = [refusedReport(out, 'md'), refusedReport(out, 'json')];
  try {
    await writeFile(md, reportMarkdown(report));
    await writeFile(json, JSON.stringify(report, null, 2) + '\n');
    return `full report: ${md} (and ${path.basename(json)})\n`;
  } catch (err) {
    return `the full report was not written: ${(err as Error).message}\n`;
  }
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  // the model is checked first: a missing model is named as such, whatever else is wrong with the command line
  const model = argv.includes('--help') || argv.includes('-h') ? undefined : modelArgument(argv);
  try {
    if (model !== undefined) await checkModelPath(model);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    process.stderr.write(`muon-compress: ${err.message}\n`);
    return exitCodes.input;
  }
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
    const probe = await ModelSession.create(source.bytes, {
      provider: 'cpu',
      intraOpThreads: args.options.threads,
    }).catch((err: unknown) => {
      throw new InputError(`onnxruntime cannot load ${source.path}: ${(err as Error).message}`);
    });
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
      process.stderr.write(refusal + (await writeRefusedReport(args.out, report)));
      return exitCodes.gateFailed;
    }
    await rm(refusedReport(args.out, 'md'), { force: true }); // an earlier refusal's report is stale now
    await rm(refusedReport(args.out, 'json'), { force: true });
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
      err instanceof InputError ||
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
