import ort from 'onnxruntime-node';
const [a, shape, runs] = [process.argv[2], process.argv[3].split('x').map(Number), Number(process.argv[4] ?? 30)];
const mk = (lvl) => ort.InferenceSession.create(a, { graphOptimizationLevel: lvl, intraOpNumThreads: 1, interOpNumThreads: 1, extra: { session: { intra_op: { allow_spinning: '0' } } } });
const sa = await mk('all'), sb = await mk('extended');
const x = new ort.Tensor('float32', new Float32Array(shape.reduce((x, y) => x * y)).map((_, i) => Math.sin(i * 0.37) * 0.8), shape);
const ta = [], tb = [];
for (let i = 0; i < runs; i++) { let t = performance.now(); await sa.run({ x }); ta.push(performance.now() - t); t = performance.now(); await sb.run({ x }); tb.push(performance.now() - t); }
const med = (v) => v.sort((p, q) => p - q)[v.length >> 1];
console.log(shape.join('x'), 'all', med(ta).toFixed(2), 'extended', med(tb).toFixed(2));
