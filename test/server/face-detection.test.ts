import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { startApp } from '../helpers/app.js';

// The default `face-detection` model (MediaPipe BlazeFace front, 128x128) through HTTP on real photos: the
// astronaut portrait has one face, the coffee cup none. The expected box was measured by hand on the 512x512 photo
// (skin from the hairline to the chin, ear to ear): about x 180..265, y 80..175.

const root = path.resolve(import.meta.dirname, '../..');
const photo = (name: string) => readFileSync(path.join(root, 'test/fixtures/photos', name));
const astronaut = photo('astronaut.jpg');
const handBox = [180, 80, 265, 175];

// only this model, so the test does not wait for (or depend on) the others
const repo = mkdtempSync(path.join(tmpdir(), 'muon-faces-'));
t.teardown(() => rmSync(repo, { recursive: true, force: true }));
cpSync(path.join(root, 'models/face-detection'), path.join(repo, 'face-detection'), { recursive: true });
const ctx = await startApp({ MUON_MODEL_REPOSITORY: repo, MUON_DEFAULT_MODEL: 'face-detection' });
t.teardown(() => ctx.close());
const { app } = ctx;

interface Face {
  box: number[];
  score: number;
  keypoints: number[][];
}

const detect = async (payload: Buffer, type = 'image/jpeg') => {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/models/face-detection/predict',
    headers: { 'content-type': type },
    payload,
  });
  if (res.statusCode !== 200) throw new Error(`${res.statusCode}: ${res.body}`);
  return res.json() as { model: string; task: string; faces: Face[] };
};

const iou = (a: number[], b: number[]) => {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const area = (r: number[]) => (r[2] - r[0]) * (r[3] - r[1]);
  return (w * h) / (area(a) + area(b) - w * h);
};

t.test('loads with a fixed batch of 1 and its input spec', async (t) => {
  t.same(ctx.failures, []);
  const desc = (await app.inject({ url: '/v1/models/face-detection' })).json();
  t.match(desc, {
    task: 'face-detection',
    state: 'READY',
    input: { name: 'input:0', shape: [1, 128, 128, 3], layout: 'NHWC', resize: 'letterbox' },
    batching: { max_batch_size: 1, fixed_batch: true },
  });
});

t.test('the astronaut photo has exactly one face, where it is, with plausible keypoints', async (t) => {
  const body = await detect(astronaut);
  t.match(body, { model: 'face-detection', task: 'face-detection' });
  t.equal(body.faces.length, 1, JSON.stringify(body.faces));
  const [face] = body.faces;
  t.ok(face.score > 0.75 && face.score <= 1, `score ${face.score}`);
  t.ok(iou(face.box, handBox) > 0.6, `box ${face.box} vs hand-measured ${handBox}: IoU ${iou(face.box, handBox)}`);
  t.equal(face.keypoints.length, 6);
  const [rightEye, leftEye, nose, mouth] = face.keypoints;
  for (const [x, y] of face.keypoints) {
    t.ok(x >= face.box[0] - 10 && x <= face.box[2] + 10 && y >= face.box[1] && y <= face.box[3], `${x},${y} in box`);
  }
  t.ok(rightEye[0] < leftEye[0], "the subject's right eye is on the image's left");
  t.ok(Math.max(rightEye[1], leftEye[1]) < nose[1] && nose[1] < mouth[1], 'eyes above the nose above the mouth');
  t.ok(mouth[0] > rightEye[0] && mouth[0] < leftEye[0], 'mouth between the eyes horizontally');
});

t.test('no face in the coffee photo', async (t) => {
  t.same((await detect(photo('coffee.jpg'))).faces, []);
});

t.test('letterboxing and EXIF rotation are undone: boxes are in the original (upright) pixels', async (t) => {
  const [ref] = (await detect(astronaut)).faces;
  // BlazeFace front is a short-range model: padding the photo would shrink the face below what it finds, so the
  // non-square images are crops (a wide one: the letterbox pads top and bottom; a tall one: left and right)
  for (const [what, crop] of [
    ['wide', { left: 60, top: 30, width: 330, height: 200 }],
    ['tall', { left: 130, top: 20, width: 200, height: 330 }],
  ] as const) {
    const faces = (await detect(await sharp(astronaut).extract(crop).png().toBuffer(), 'image/png')).faces;
    t.equal(faces.length, 1, what);
    const moved = [ref.box[0] - crop.left, ref.box[1] - crop.top, ref.box[2] - crop.left, ref.box[3] - crop.top];
    t.ok(iou(faces[0].box, moved) > 0.7, `${what}: ${faces[0].box} vs ${moved}`);
  }
  // stored turned 90 degrees counter-clockwise with EXIF orientation 6 (display: turn clockwise)
  const turned = await sharp(astronaut).rotate(270).withMetadata({ orientation: 6 }).jpeg().toBuffer();
  t.equal((await sharp(turned).metadata()).orientation, 6);
  const r = (await detect(turned)).faces;
  t.equal(r.length, 1);
  t.ok(iou(r[0].box, ref.box) > 0.8, `EXIF-rotated: ${r[0].box} vs ${ref.box}`);
  t.ok(r[0].keypoints[1][1] < r[0].keypoints[3][1], 'upright: eye above mouth');
});

t.test('concurrent requests on the fixed batch of 1 are each answered with their own image', async (t) => {
  const images = [astronaut, photo('coffee.jpg')];
  const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => detect(images[i % 2])));
  t.same(
    answers.map((a) => a.faces.length),
    Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? 1 : 0)),
  );
  const boxes = answers.filter((a) => a.faces.length === 1).map((a) => a.faces[0].box);
  for (const b of boxes) t.same(b, boxes[0], 'same image, same answer');
});

t.test('a text body is refused before any decoding', async (t) => {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/models/face-detection/predict',
    headers: { 'content-type': 'text/plain' },
    payload: 'hello',
  });
  t.ok(res.statusCode >= 400 && res.statusCode < 500, `${res.statusCode} ${res.body}`);
  t.match(res.json(), { code: /^MUON_ERR_/ });
});
