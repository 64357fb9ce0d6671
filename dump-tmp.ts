import { readFileSync } from 'node:fs';
import { decodeModel } from './src/onnx/model.js';
import { GraphIndex, readFloats, elementCount } from './src/quantize/graph.js';
const m = decodeModel(readFileSync(process.argv[2])); const g = new GraphIndex(m);
const desc = (n: any) => { if (n.opType === 'Conv') { const gr = n.attribute.find((a: any) => a.name === 'group')?.i ?? 1n; const k = g.initializers.get(n.input[1])?.dims.map(Number).join('x'); const p = n.attribute.find((a: any) => a.name === 'pads')?.ints?.map(Number).join(','); return `Conv[${k} g${gr} p${p}]`; } 
  const sc = n.input.slice(1).map((i: string) => { const t = g.initializers.get(i); return t ? (elementCount(t) === 1 ? readFloats(t)[0].toFixed(3) : 'W' + t.dims.join('x')) : ''; }).join(','); return n.opType + (sc ? `(${sc})` : ''); };
const seqs = new Map<string, number>();
for (const n of g.graph.node) if (n.opType === 'HardSwish') {
  const chain: string[] = []; let cur = n;
  for (let k = 0; k < 4; k++) { const c = g.consumers.get(cur.output[0]) ?? []; if (c.length !== 1) { chain.push(`x${c.length}:` + c.map(desc).join('/')); break; } cur = c[0]; chain.push(desc(cur)); }
  const p = g.producers.get(n.input[0]); const s = (p ? desc(p) : 'input') + ' > HS > ' + chain.join(' > ');
  seqs.set(s, (seqs.get(s) ?? 0) + 1);
}
for (const [s, c] of seqs) console.log(c, s);
