import { mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { DatasetError, folderMedia, loadSamples, parseNpy } from '../../src/quantize/dataset.js';

const root = path.resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(path.join(tmpdir(), 'muon-dataset-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** A NumPy v1 .npy file, as numpy.save writes it. */
function npy(descr: string, shape: number[], body: ArrayBufferView): Buffer {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header = header.padEnd(header.length + ((64 - (total % 64)) % 64), ' ') + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head.writeUInt16LE(header.length, 8);
  return Buffer.concat([
    head,
    Buffer.from(header, 'latin1'),
    Buffer.from(body.buffer, body.byteOffset, body.byteLength),
  ]);
}

t.test('.npy arrays', async (t) => {
  const a = parseNpy(npy('<f4', [2, 3], new Float32Array([1, 2, 3, 4, 5, 6])));
  t.same(a.dims, [2, 3]);
  t.same([...a.data], [1, 2, 3, 4, 5, 6]);
  const b = parseNpy(npy('<i8', [2], new BigInt64Array([7n, -8n])));
  t.match(b, { type: 'int64', dims: [2] });
  t.same([...b.data], [7n, -8n]);
  t.throws(() => parseNpy(npy('<c8', [1], new Float32Array(2))), DatasetError);
  t.throws(() => parseNpy(Buffer.from('not numpy')), /not a .npy file/);
});

t.test('a folder of images goes through the manifest preprocessing; npy and json too', async (t) => {
  const folder = await folderMedia(path.join(root, 'models/text-orientation-fp32'));
  t.teardown(() => folder.release());
  const { inputs } = folder;
  copyFileSync(path.join(root, 'test/fixtures/text-lines/line-01.png'), path.join(dir, 'a.png'));
  writeFileSync(path.join(dir, 'b.npy'), npy('<f4', [3, 48, 192], new Float32Array(3 * 48 * 192)));
  writeFileSync(
    path.join(dir, 'c.json'),
    JSON.stringify({ x: { dims: [1, 3, 48, 192], data: Array(3 * 48 * 192).fill(0) } }),
  );
  writeFileSync(path.join(dir, 'notes.md'), 'ignored');
  const samples = await loadSamples(dir, folder);
  t.same(
    samples.map((s) => [s.name, s.feeds.x.dims]),
    [
      ['a.png', [1, 3, 48, 192]],
      ['b.npy', [1, 3, 48, 192]],
      ['c.json', [1, 3, 48, 192]],
    ],
  );
  t.equal((await loadSamples(dir, { ...folder, maxSamples: 1 })).length, 1);
  await t.rejects(loadSamples(dir, { inputs }), /media files need the model's folder/);
  const empty = mkdtempSync(path.join(tmpdir(), 'muon-empty-'));
  t.teardown(() => rmSync(empty, { recursive: true, force: true }));
  await t.rejects(loadSamples(empty, { inputs }), /no samples/);
});

t.test(
  'recordings and texts go through their own task pipelines: a sample per run the server would make',
  async (t) => {
    const vad = await folderMedia(path.join(root, 'models/voice-activity-fp32'));
    t.teardown(() => vad.release());
    const audio = mkdtempSync(path.join(tmpdir(), 'muon-audio-'));
    t.teardown(() => rmSync(audio, { recursive: true, force: true }));
    copyFileSync(path.join(root, 'test/fixtures/audio/speech-44k-stereo.wav'), path.join(audio, 'a.wav'));
    const frames = await loadSamples(audio, vad);
    t.ok(frames.length > 20, `${frames.length} frames`);
    t.equal(frames[0].name, 'a.wav#0');
    const state = (i: number) => [...(frames[i].feeds.state.data as Float32Array)];
    t.ok(
      state(0).every((v) => v === 0),
      'the first frame starts from zero state',
    );
    t.ok(
      state(frames.length - 1).some((v) => v !== 0),
      'later frames carry the state the model produced',
    );

    const langid = await folderMedia(path.join(root, 'models/language-id'));
    t.teardown(() => langid.release());
    const texts = mkdtempSync(path.join(tmpdir(), 'muon-text-'));
    t.teardown(() => rmSync(texts, { recursive: true, force: true }));
    writeFileSync(path.join(texts, 'de.txt'), 'Das ist ein kurzer deutscher Satz.');
    writeFileSync(path.join(texts, 'bad.txt'), Buffer.from([0xff, 0xfe]));
    await t.rejects(loadSamples(texts, langid), /bad.txt: not valid UTF-8/);
    rmSync(path.join(texts, 'bad.txt'));
    const samples = await loadSamples(texts, langid);
    t.same(
      samples.map((s) => s.name),
      ['de.txt'],
    );
    copyFileSync(path.join(root, 'test/fixtures/audio/silence-16k.wav'), path.join(texts, 'x.wav'));
    await t.rejects(loadSamples(texts, langid), /x.wav: task 'language-id' takes text, not audio/);
  },
);
