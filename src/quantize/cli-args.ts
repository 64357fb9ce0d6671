import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { modes, type CompressOptions, type Mode } from './compress.js';
import { LATENCY_TOLERANCE, objectives } from './latency.js';

// The command line of muon-compress: its options, their checks, and the checks of the model path, which come first
// (a missing model is named before any option is judged).

/** Every option; `parseArgs` reads them, and a mistyped name is matched against them. */
const cliOptions = {
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
} satisfies NonNullable<ParseArgsConfig['options']>;

export const help = `Usage: muon-compress <model.onnx | model folder> --out <folder> [options]

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
  --prune-importance <i>      l1 | bn-gamma | activation | reconstruction (default l1). On the calibration data:
                              activation ranks each channel by its mean square times the weights that read it;
                              reconstruction removes, one by one, the channel the 1 x 1 layers reading it, refit
                              on the others, miss least
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
                              Pareto front (size, speed-up, loss), write the best in budget for --objective
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
  checkOptionNames(argv);
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: cliOptions });
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
    pruneImportance: oneOf('prune-importance', values['prune-importance'], [
      'l1',
      'bn-gamma',
      'activation',
      'reconstruction',
    ] as const),
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
  if ((options.pruneImportance === 'activation' || options.pruneImportance === 'reconstruction') && !values.calibration)
    throw new UsageError(
      `--prune-importance ${options.pruneImportance} needs --calibration <folder>: it ranks channels on that data`,
    );
  if (options.search && options.maxFidelityLoss === undefined)
    throw new UsageError('--search needs --max-fidelity-loss: the budget its candidates must meet');
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

/** A model path, option value or data file that cannot be used (exit 3). */
export class InputError extends Error {
  override name = 'InputError';
}

/** The command line as parseArgs reads it without judging it: unknown options become tokens too. */
const tokensOf = (argv: string[]) =>
  parseArgs({ args: argv, options: cliOptions, allowPositionals: true, strict: false, tokens: true }).tokens;

/**
 * Refuses unknown options and options without their value, by their exact names (node's own message for an unknown
 * option quotes it with an unbalanced quote), suggesting the closest known option.
 */
function checkOptionNames(argv: string[]): void {
  const tokens = tokensOf(argv);
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const option = (cliOptions as Record<string, { type: string; short?: string }>)[token.name];
    if (!option) {
      const near = closestOptions(token.name).map((n) => `--${n}`);
      const or = near.length > 1 ? `${near.slice(0, -1).join(', ')} or ${near.at(-1)}` : near[0];
      throw new UsageError(`unknown option ${token.rawName}${or ? ` (did you mean ${or}?)` : ''}`);
    }
    // a separate value that starts with a dash is the next option (node refuses it as "ambiguous")
    const missing = token.value === undefined || (!token.inlineValue && token.value.startsWith('-'));
    if (option.type === 'string' && missing) throw new UsageError(`${token.rawName} needs a value`);
    if (option.type === 'boolean' && token.value !== undefined) throw new UsageError(`${token.rawName} takes no value`);
  }
}

/**
 * The known options a mistyped one most likely meant: those it starts (the shortest, where it starts the others too:
 * `--calib` is `--calibration`), else the nearest within a few edits (`--objectiv`).
 */
export function closestOptions(name: string): string[] {
  const names = Object.keys(cliOptions);
  const started = names.filter((n) => n.startsWith(name)).sort((a, b) => a.length - b.length);
  if (name.length >= 3 && started.length > 0)
    return started.every((n) => n.startsWith(started[0])) ? [started[0]] : started;
  const distances = names.map((n) => ({ n, d: editDistance(name, n) }));
  const best = Math.min(...distances.map((x) => x.d));
  if (best > Math.max(2, Math.floor(name.length / 3))) return [];
  return distances.filter((x) => x.d === best).map((x) => x.n);
}

/** Levenshtein distance: insertions, deletions and substitutions. */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++)
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length];
}

/**
 * The model path of a command line, read before its options are checked. A word right after an unknown option is
 * taken as that option's value (`--objectiv latency model.onnx`), not as the model.
 */
export function modelArgument(argv: string[]): string | undefined {
  const tokens = tokensOf(argv);
  const known = new Set(Object.keys(cliOptions));
  let afterUnknown = false;
  for (const token of tokens) {
    if (token.kind === 'positional' && !afterUnknown) return token.value;
    afterUnknown = token.kind === 'option' && !known.has(token.name) && token.value === undefined;
  }
  return undefined;
}

/** Throws an InputError unless `p` is a file or a folder this process can read. */
export async function checkModelPath(p: string): Promise<void> {
  try {
    const s = await stat(p);
    if (!s.isFile() && !s.isDirectory()) throw new InputError(`${p} is not a file or a model folder`);
    await access(p, s.isDirectory() ? constants.R_OK | constants.X_OK : constants.R_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new InputError(`no such file or folder: ${p}`);
    if (code === 'EACCES' || code === 'EPERM') throw new InputError(`cannot read ${p}: permission denied`);
    throw err;
  }
}
