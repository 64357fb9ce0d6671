import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { exitCodes, main, refusalOf, summaryOf } from '../../src/quantize/cli.js';
import type { CompressionReport } from '../../src/quantize/report.js';
import { startApp } from '../helpers/app.js';

// The compression CLI end to end on the real default model and real calibration images: a model folder the server
// loads as is, a report that says what onnxruntime runs, and a gate that refuses a model over budget.

const root = path.resolve(import.meta.dirname, '../..');
const work = mkdtempSync(path.join(tmpdir(), 'muon-cli-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
const source = path.join(root, 'models/text-orientation-fp32');
const calibration = path.join(root, 'test/fixtures/text-lines');

/**
 * Runs the CLI with stdout/stderr captured, for the size objective unless `args` name one: whether a model is
 * faster than its original is a wall-clock measurement no test may depend on (the latency objective's decision is
 * tested on given latencies in latency.test.ts).
 */
async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  if (args.length > 1 && !args.includes('--objective')) args = [...args, '--objective', 'size'];
  let out = '';
  let err = '';
  const w1 = process.stdout.write.bind(process.stdout);
  const w2 = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    return { code: await main(args), out, err };
  } finally {
    process.stdout.write = w1;
    process.stderr.write = w2;
  }
}

t.test('usage', async (t) => {
  t.equal((await run(['--help'])).code, exitCodes.ok);
  t.match((await run(['--help'])).out, /--max-fidelity-loss/);
  const bad = await run([source, '--out', path.join(work, 'x'), '--mode', 'int3']);
  t.equal(bad.code, exitCodes.usage);
  t.match(bad.err, /--mode must be one of/);
  t.equal((await run([source, '--out', path.join(work, 'x')])).code, exitCodes.usage, 'int8-static needs calibration');
  t.equal(
    (
      await run([
        path.join(work, 'missing.onnx'),
        '--out',
        path.join(work, 'y'),
        '--mode',
        'fp16',
        '--eval',
        calibration,
      ])
    ).code,
    exitCodes.input,
  );
});

t.test('a file that is not a model, or is not there, is named in one line, before any option is judged', async (t) => {
  const png = path.join(work, 'photo.onnx');
  cpSync(path.join(calibration, 'line-03.png'), png);
  const text = path.join(work, 'notes.onnx');
  writeFileSync(text, 'a text file, not a model\n');
  const empty = path.join(work, 'empty.onnx');
  writeFileSync(empty, '');
  const args = (model: string) => [model, '--out', path.join(work, 'never'), '--mode', 'fp16', '--eval', calibration];
  for (const [file, why] of [
    [png, 'it is a PNG image'],
    [text, 'it is text'],
    [empty, 'the file is empty'],
  ]) {
    const r = await run(args(file));
    t.equal(r.code, exitCodes.input, why);
    t.equal(r.err, `muon-compress: not an ONNX model: ${file} (${why})\n`, 'one line, no stack');
  }
  const missing = path.join(work, 'missing.onnx');
  const r = await run([missing, '--out', path.join(work, 'never'), '--objectiv', 'latency', '--mode', 'int3']);
  t.equal(r.code, exitCodes.input);
  t.equal(r.err, `muon-compress: no such file or folder: ${missing}\n`, 'the model first, not the options');
  const device = await run(args('/dev/null'));
  t.equal(device.code, exitCodes.input);
  t.equal(device.err, 'muon-compress: /dev/null is not a file or a model folder\n');
  t.notOk(existsSync(path.join(work, 'never')));
});

t.test('a mistyped option is named exactly, with the closest known one', async (t) => {
  const r = await run([source, '--out', path.join(work, 'never'), '--objectiv', 'latency', '--eval', calibration]);
  t.equal(r.code, exitCodes.usage);
  t.equal(r.err.split('\n')[0], 'muon-compress: unknown option --objectiv (did you mean --objective?)');
  const calib = await run([source, '--out', path.join(work, 'never'), '--calib', calibration]);
  t.equal(calib.err.split('\n')[0], 'muon-compress: unknown option --calib (did you mean --calibration?)');
  const prune = await run([source, '--out', path.join(work, 'never'), '--pru', '0.5', '--eval', calibration]);
  t.equal(
    prune.err.split('\n')[0],
    'muon-compress: unknown option --pru (did you mean --prune-ratio, --prune-layer or --prune-importance?)',
  );
  const none = await run([source, '--out', path.join(work, 'never'), '--xyzzy', '--eval', calibration]);
  t.equal(none.err.split('\n')[0], 'muon-compress: unknown option --xyzzy');
  const value = await run([source, '--eval', calibration, '--out']);
  t.equal(value.err.split('\n')[0], 'muon-compress: --out needs a value');
  const flag = await run([source, '--out', path.join(work, 'never'), '--force=yes', '--eval', calibration]);
  t.equal(flag.err.split('\n')[0], 'muon-compress: --force takes no value');
});

t.test('int8-static on the default model: a folder the server serves, with an honest report', async (t) => {
  const out = path.join(work, 'text-orientation-int8');
  const r = await run([
    source,
    '--out',
    out,
    '--calibration',
    calibration,
    '--max-fidelity-loss',
    '0.05',
    '--runs',
    '5',
  ]);
  t.equal(r.code, exitCodes.ok, r.err);
  for (const f of ['model.onnx', 'manifest.json', 'report.json', 'report.md']) t.ok(existsSync(path.join(out, f)), f);
  const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
  t.ok(
    report.sizeBytes.after < report.sizeBytes.before * 0.6,
    `size ${report.sizeBytes.before} -> ${report.sizeBytes.after}`,
  );
  t.ok(report.kernels.after.QLinearConv > 0, 'onnxruntime runs QLinearConv');
  t.equal(report.fidelity.metric, 'top1-agreement');
  t.ok(report.fidelity.value >= 0.95, `agreement ${report.fidelity.value}`);
  const manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8'));
  t.match(manifest.compression, {
    method: 'int8-static',
    sourceSha256: /^[0-9a-f]{64}$/,
    sizeBytes: { before: Number, after: Number },
  });
  t.notOk(manifest.model.package, 'the output points at its own model.onnx');
  t.same(
    report.latencyMs.batches.map((l: { batch: number }) => l.batch),
    [1, manifest.batching.maxBatchSize],
    'latency at one request and at the largest batch the manifest serves',
  );
  t.match(report.objective, { name: 'size', met: true });

  // the server loads the output folder as is
  const repo = mkdtempSync(path.join(tmpdir(), 'muon-cli-repo-'));
  t.teardown(() => rmSync(repo, { recursive: true, force: true }));
  cpSync(out, path.join(repo, 'text-orientation-int8'), { recursive: true });
  const app = await startApp({ MUON_MODEL_REPOSITORY: repo, MUON_DEFAULT_MODEL: 'text-orientation-int8' });
  t.teardown(() => app.close());
  t.same(app.failures, []);
  const models = (await app.app.inject({ url: '/v1/models' })).json().models;
  t.match(models[0].compression, { method: 'int8-static', fidelity: { metric: 'top1-agreement' } });
  for (const [file, label] of [
    ['line-03.png', '0'],
    ['line-03-rot180.png', '180'],
  ]) {
    const res = await app.app.inject({
      method: 'POST',
      url: '/predict',
      headers: { 'content-type': 'image/png' },
      payload: readFileSync(path.join(calibration, file)),
    });
    t.equal(res.json().predictions[0].label, label, file);
  }
});

t.test('the latency objective: a model slower than its original is refused, naming where', async (t) => {
  // on given latencies: whether a real model measures faster is not something a test may depend on
  const l = (batch: number, before: number, after: number) => ({ batch, before, after });
  const report = (name: 'latency' | 'size', met: boolean, slowerAt: ReturnType<typeof l>[]) =>
    ({
      method: 'int8-static',
      sizeBytes: { before: 580_000, after: 330_000 },
      latencyMs: {
        before: 0.74,
        after: 1.08,
        runs: 50,
        threads: 1,
        batches: [l(1, 0.74, 1.08), l(32, 32.76, 31.24)],
        unmeasured: [{ batch: 64, reason: 'x' }],
      },
      fidelity: { metric: 'top1-agreement', value: 1, samples: 29 },
      objective: { name, met, slowerAt },
      passedGate: true,
    }) as unknown as CompressionReport;
  t.equal(
    summaryOf(report('size', true, [])),
    'int8-static: 0.58 MB -> 0.33 MB, latency 0.74 -> 1.08 ms (batch 1), 32.76 -> 31.24 ms (batch 32), ' +
      'batch 64 not measured, top1-agreement 1.0000 on 29 samples',
  );
  t.equal(refusalOf(report('size', true, []), undefined), undefined, 'size: written');
  t.equal(refusalOf(report('latency', true, []), undefined), undefined, 'latency, not slower: written');
  t.equal(
    refusalOf(report('latency', false, [l(1, 0.74, 1.08)]), undefined),
    'muon-compress: slower than the original (batch 1: 0.74 -> 1.08 ms); nothing written. ' +
      '--objective size writes it for its size\n',
  );
  const bad = await run([source, '--out', path.join(work, 'x'), '--objective', 'speed', '--eval', calibration]);
  t.equal(bad.code, exitCodes.usage);
  t.match(bad.err, /--objective must be one of latency, size/);
  const importance = await run([
    source,
    '--out',
    path.join(work, 'x'),
    '--prune-importance',
    'gradient',
    '--eval',
    calibration,
  ]);
  t.equal(importance.code, exitCodes.usage);
  t.match(importance.err, /--prune-importance must be one of l1, bn-gamma, activation, reconstruction/);
  for (const data of ['activation', 'reconstruction']) {
    const blind = await run([
      source,
      '--out',
      path.join(work, 'x'),
      '--mode',
      'none',
      '--prune-importance',
      data,
      '--eval',
      calibration,
    ]);
    t.equal(blind.code, exitCodes.usage, `${data} without calibration data`);
    t.match(blind.err, new RegExp(`--prune-importance ${data} needs --calibration <folder>`));
  }
  t.notOk(existsSync(path.join(work, 'x')), 'nothing written');
});

t.test('a source that was compressed already is refused unless asked for, naming what shows it', async (t) => {
  const served = path.join(root, 'models/text-recognition'); // the int8 default
  const out = path.join(work, 'twice');
  const args = [served, '--out', out, '--mode', 'none', '--eval', calibration, '--max-samples', '2', '--runs', '1'];
  const refused = await run(args);
  t.equal(refused.code, exitCodes.usage);
  t.match(refused.err, /was compressed already: its manifest records a compression \(int8-static\)/);
  t.match(refused.err, /quantized ops \(\d+ DequantizeLinear, \d+ QuantizeLinear\)/);
  t.match(refused.err, /Compress its original \(npm:/, 'names the original');
  t.match(refused.err, /--allow-compressed-source/);
  t.notOk(existsSync(out), 'nothing written');
  const allowed = await run([...args, '--allow-compressed-source']);
  t.equal(allowed.code, exitCodes.ok, allowed.err);
  t.match(allowed.err, /warning: .* was compressed already/);
});

t.test('the gate refuses a model over budget and writes nothing', async (t) => {
  // channel pruning without fine-tuning costs this model much of its accuracy: far over a 5 % budget
  const out = path.join(work, 'refused');
  const r = await run([
    source,
    '--out',
    out,
    '--mode',
    'none',
    '--prune-ratio',
    '0.25',
    '--eval',
    calibration,
    '--max-fidelity-loss',
    '0.05',
    '--runs',
    '2',
  ]);
  t.equal(r.code, exitCodes.gateFailed, r.err);
  // two short lines: the metric, its value and the budget; then where the whole report is
  // (progress goes to stderr too: a line per phase where it is not a terminal)
  const [why, where, ...rest] = r.err.split('\n').filter((line) => !/^[\w -]+: \d+ steps$/.test(line));
  t.match(
    why,
    /^muon-compress: over the fidelity budget: [\w+.-]*prune[\w+.-]* has top1-agreement 0\.\d{4} on \d+ samples, a loss of 0\.\d{4} where 0\.05 is allowed; nothing written$/,
  );
  t.equal(where, `full report: ${out}.refused-report.md (and refused.refused-report.json)`);
  t.same(rest, [''], 'nothing more: no report, no JSON on the terminal');
  const md = readFileSync(`${out}.refused-report.md`, 'utf8');
  t.match(md, /prune-channels/);
  t.match(md, /prune-refit\*\*: not refit: it needs at least 32 calibration inputs/, 'no calibration: no refit');
  t.equal(JSON.parse(readFileSync(`${out}.refused-report.json`, 'utf8')).passedGate, false);
  t.notOk(existsSync(out), 'nothing written');
});

t.test('--search needs a fidelity budget', async (t) => {
  const r = await run([
    source,
    '--out',
    path.join(work, 'nobudget'),
    '--mode',
    'none',
    '--eval',
    calibration,
    '--search',
  ]);
  t.equal(r.code, exitCodes.usage);
  t.match(r.err, /--search needs --max-fidelity-loss/);
});

t.test(
  '--search explores mode x prune ratio x float layers, prints the front, writes the best in budget',
  async (t) => {
    const out = path.join(work, 'searched');
    const r = await run([
      source,
      '--out',
      out,
      '--mode',
      'int8-static',
      '--prune-ratio',
      '0.25',
      '--calibration',
      calibration,
      '--max-fidelity-loss',
      '0.05',
      '--search',
      '--runs',
      '2',
    ]);
    t.equal(r.code, exitCodes.ok, r.err);
    t.match(r.out, /Pareto front/);
    const report: CompressionReport = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
    const candidates = report.search!.candidates;
    const methods = candidates.map((c) => c.method);
    for (const m of [
      'fold+prune-channels-0.25+int8-static',
      'fold+prune-channels-0.125+int8-static',
      'fold+int8-static',
    ])
      t.ok(methods.includes(m), `tried ${m}`);
    t.notOk(
      methods.some((m) => m.includes('int8-dynamic')),
      'not int8-dynamic: the manifest batches, and its activation scale would span the batch',
    );
    t.ok(report.steps.some((s) => s.step === 'search: int8-dynamic not tried'));
    t.ok(methods.includes('fold'), 'and no quantization');
    t.ok(
      candidates.some((c) => c.pareto),
      'a Pareto front',
    );
    const chosen = candidates[report.search!.chosen!];
    t.ok(chosen.withinBudget);
    const inBudget = candidates.filter((c) => c.withinBudget);
    t.equal(Math.min(...inBudget.map((c) => c.sizeBytes)), chosen.sizeBytes, 'the smallest in budget (size objective)');
    t.equal(report.passedGate, true);
    t.ok(report.fidelity.value >= 0.95);
    t.equal(report.method, chosen.method, 'the report names what was written, not what was asked');
    t.equal(JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')).compression.method, chosen.method);
    t.match(readFileSync(path.join(out, 'report.md'), 'utf8'), /## Search: every candidate/);
  },
);

t.test('folding is on by default and named in the method; --no-fold leaves the graph as exported', async (t) => {
  const folded = path.join(work, 'folded');
  const plain = path.join(work, 'not-folded');
  const common = ['--mode', 'none', '--eval', calibration, '--max-samples', '4', '--runs', '2', '--objective', 'size'];
  t.equal((await run([source, '--out', folded, ...common])).code, exitCodes.ok);
  t.equal((await run([source, '--out', plain, ...common, '--no-fold'])).code, exitCodes.ok);
  const report = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'report.json'), 'utf8'));
  const fold = report(folded).steps.find((s: { step: string }) => s.step === 'fold affine');
  t.equal(report(folded).method, 'fold');
  t.ok(
    fold.detail.hardSwish > 0,
    'hard-swish fused (MobileNetV3 has no scale steps left after BatchNormalization folding)',
  );
  t.equal(report(folded).fidelity.top1Agreement, 1, 'the same answers');
  t.equal(report(plain).method, 'none');
  t.notOk(report(plain).steps.some((s: { step: string }) => s.step === 'fold affine'));
});

t.test(
  '--exclude-from keeps a node and everything after it in float; a name the model lacks is a usage error',
  async (t) => {
    const tail = path.join(work, 'head-in-float');
    const common = ['--mode', 'int8-static', '--calibration', calibration, '--max-samples', '8', '--runs', '2'];
    const r = await run([source, '--out', tail, ...common, '--objective', 'size', '--exclude-from', 'p2o.Conv.52']);
    t.equal(r.code, exitCodes.ok, r.err);
    const report = JSON.parse(readFileSync(path.join(tail, 'report.json'), 'utf8'));
    t.equal(report.options.excludeFrom, 'p2o.Conv.52', 'the option is recorded as given');
    t.ok(report.kernels.after.Conv >= 1, 'the last Conv runs in float');
    t.ok(report.kernels.after.QLinearConv >= 50, 'the ones before it in int8');
    const bad = await run([source, '--out', path.join(work, 'no-such'), ...common, '--exclude-from', 'no-such-node']);
    t.equal(bad.code, exitCodes.usage);
    t.match(bad.err, /--exclude-from no-such-node: the model has no node of that name/);
    t.notMatch(bad.err, /at .*\.ts:\d+/, 'no stack');
  },
);
