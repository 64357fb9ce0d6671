import ort from 'onnxruntime-node';
const file = process.argv[2]; const shape = process.argv[3].split('x').map(Number);
const s = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, enableProfiling: true, profileFilePrefix: '/tmp/li/ortprof' });
const x = new ort.Tensor('float32', new Float32Array(shape.reduce((a, b) => a * b)).map(() => Math.random() - 0.5), shape);
for (let i = 0; i < 10; i++) await s.run({ x });
const f = s.endProfiling ? (s.endProfiling(), null) : null;
