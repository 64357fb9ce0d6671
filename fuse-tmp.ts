import { readFileSync, writeFileSync } from 'node:fs';
import { encodeModel } from './src/onnx/model.js';
import { optimizeForQuantization } from './src/quantize/optimize.js';
import { foldAffine } from './src/quantize/passes/fold-affine.js';
const [src, dst] = process.argv.slice(2);
const r = foldAffine(await optimizeForQuantization(readFileSync(src)));
writeFileSync(dst, encodeModel(r.model)); console.log(r.stats);
