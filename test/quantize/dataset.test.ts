import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parseManifest } from '../../src/models/manifest.js';
import { DatasetError, loadSamples, parseNpy } from '../../src/quantize/dataset.js';

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
  const manifestFile = path.join(root, 'models/text-orientation/manifest.json');
  const manifest = parseManifest(JSON.parse(readFileSync(manifestFile, 'utf8')), manifestFile);
  const inputs = [{ name: 'x', type: 'float32', shape: ['b', 3, 48, 192] }];
  copyFileSync(path.join(root, 'test/fixtures/text-lines/line-01.png'), path.join(dir, 'a.png'));
  writeFileSync(path.join(dir, 'b.npy'), npy('<f4', [3, 48, 192], new Float32Array(3 * 48 * 192)));
  writeFileSync(
    path.join(dir, 'c.json'),
    JSON.stringify({ x: { dims: [1, 3, 48, 192], data: Array(3 * 48 * 192).fill(0) } }),
  );
  writeFileSync(path.join(dir, 'notes.txt'), 'ignored');
  const samples = await loadSamples(dir, { manifest, inputs });
  t.same(
    samples.map((s) => [s.name, s.feeds.x.dims]),
    [
      ['a.png', [1, 3, 48, 192]],
      ['b.npy', [1, 3, 48, 192]],
      ['c.json', [1, 3, 48, 192]],
    ],
  );
  t.equal((await loadSamples(dir, { manifest, inputs, maxSamples: 1 })).length, 1);
  await t.rejects(loadSamples(dir, { inputs }), /images need the model's manifest/);
  const empty = mkdtempSync(path.join(tmpdir(), 'muon-empty-'));
  t.teardown(() => rmSync(empty, { recursive: true, force: true }));
  await t.rejects(loadSamples(empty, { inputs }), /no samples/);
});
