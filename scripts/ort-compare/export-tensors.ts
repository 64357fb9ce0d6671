// Writes the tensors Muon Serve computes for each calibration image as .npy (float32 [1,3,H,W]: [1,3,48,192] for
// text-orientation, [1,3,48,W] for text-recognition, the resized page for the ocr detector), so onnxruntime's Python
// quantizer calibrates on exactly the same data as `muon-compress`.
// Usage: npx tsx scripts/ort-compare/export-tensors.ts <model folder> <image folder> <out folder>
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { folderMedia, loadSamples } from '../../src/quantize/dataset.js';

/** NumPy format v1: magic, version, header length (u16 LE), header padded with spaces to a multiple of 64. */
export function npyBytes(data: Float32Array, shape: readonly number[]): Buffer {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const preamble = 10;
  const total = Math.ceil((preamble + dict.length + 1) / 64) * 64;
  const header = dict.padEnd(total - preamble - 1, ' ') + '\n';
  const head = Buffer.alloc(preamble);
  head[0] = 0x93;
  head.write('NUMPY', 1, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), body]);
}

async function main() {
  const [modelDir, imageDir, outDir] = process.argv.slice(2);
  if (!modelDir || !imageDir || !outDir) {
    console.error('usage: export-tensors.ts <model folder> <image folder> <out folder>');
    process.exit(2);
  }
  const folder = await folderMedia(modelDir);
  const samples = await loadSamples(imageDir, folder).finally(() => folder.release());
  await mkdir(outDir, { recursive: true });
  for (const s of samples) {
    const t = s.feeds.x;
    if (!t || t.type !== 'float32') throw new Error(`${s.name}: no float32 'x' feed`);
    if (t.dims.length !== 4 || t.dims[0] !== 1 || t.dims[1] !== 3)
      throw new Error(`${s.name}: dims ${t.dims.join('x')}, expected 1x3xHxW`);
    await writeFile(path.join(outDir, `${s.name}.npy`), npyBytes(t.data as Float32Array, t.dims));
  }
  console.log(`exported ${samples.length} tensors to ${outDir}: ${samples.map((s) => s.name).join(' ')}`);
}

await main();
