import { readFileSync } from 'node:fs';
import { optimizeForQuantization } from './src/quantize/optimize.js';
import { foldAffine } from './src/quantize/passes/fold-affine.js';
const m = foldAffine(await optimizeForQuantization(readFileSync(process.argv[2]))).model;
const nodes = m.graph!.node;
const firstMatMul = nodes.findIndex((n) => n.opType === 'MatMul');
// the last Conv before the first MatMul and everything after it
let start = firstMatMul; while (start > 0 && nodes[start].opType !== 'Conv') start--;
console.error('total', nodes.length, 'first MatMul at', firstMatMul, 'tail from', start, nodes.slice(start - 3, start + 3).map(n => n.opType + ':' + n.name).join(' '));
console.log(nodes.slice(Number(process.argv[3] ?? start)).map((n) => n.name).filter(Boolean).join(','));
