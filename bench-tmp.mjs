import ort from 'onnxruntime-node';
const [a, b, shape, runs] = [process.argv[2], process.argv[3], process.argv[4].split('x').map(Number), Number(process.argv[5] ?? 30)];
const opts = { graphOptimizationLevel: process.env.LVL ?? 'all', intraOpNumThreads: 1, interOpNumThreads: 1, extra: { session: { intra_op: { allow_spinning: '0' } } } };
const sa = await ort.InferenceSession.create(a, opts), sb = await ort.InferenceSession.create(b, opts);
const data = new Float32Array(shape.reduce((x, y) => x * y)).map((_, i) => Math.sin(i * 0.37) * 0.8);
const x = new ort.Tensor('float32', data, shape);
const ra = await sa.run({ x }), rb = await sb.run({ x });
const oa = Object.values(ra)[0].data, ob = Object.values(rb)[0].data; let md = 0; for (let i = 0; i < oa.length; i++) md = Math.max(md, Math.abs(oa[i] - ob[i]));
const ta = [], tb = [];
for (let i = 0; i < runs; i++) { let t = performance.now(); await sa.run({ x }); ta.push(performance.now() - t); t = performance.now(); await sb.run({ x }); tb.push(performance.now() - t); }
const med = (v) => v.sort((p, q) => p - q)[v.length >> 1];
console.log(shape.join('x'), 'A', med(ta).toFixed(2), 'B', med(tb).toFixed(2), 'speedup', (med(ta) / med(tb)).toFixed(2), 'max|diff|', md.toExponential(2));
