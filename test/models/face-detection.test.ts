import t from 'tap';
import {
  decodeDetections,
  iou,
  ssdAnchors,
  weightedNms,
  type AnchorOptions,
  type Detection,
} from '../../src/models/tasks/face-detection/pipeline.js';

// MediaPipe's face_detection_short_range (BlazeFace front) anchor options
const front: AnchorOptions = {
  strides: [8, 16, 16, 16],
  minScale: 0.1484375,
  maxScale: 0.75,
  offset: 0.5,
  aspectRatios: [1],
  interpolatedScaleAspectRatio: 1,
  fixedAnchorSize: true,
};

t.test('BlazeFace front anchors: 896, 2 per cell on 16x16 then 6 per cell on 8x8', async (t) => {
  const a = ssdAnchors(front, 128, 128);
  t.equal(a.length, 896);
  t.same(a[0], { x: 0.5 / 16, y: 0.5 / 16, w: 1, h: 1 });
  t.same(a[1], a[0], 'two anchors share the first cell');
  t.same(a[2], { x: 1.5 / 16, y: 0.5 / 16, w: 1, h: 1 });
  t.same(a[511], { x: 15.5 / 16, y: 15.5 / 16, w: 1, h: 1 });
  t.same(a[512], { x: 0.5 / 8, y: 0.5 / 8, w: 1, h: 1 });
  t.same(a[517], a[512], 'six anchors share a cell of the merged stride-16 layers');
  t.same(a[518], { x: 1.5 / 8, y: 0.5 / 8, w: 1, h: 1 });
  t.same(a[895], { x: 7.5 / 8, y: 7.5 / 8, w: 1, h: 1 });
});

t.test('anchor sizes follow the SSD scales when the size is not fixed', async (t) => {
  const a = ssdAnchors({ ...front, fixedAnchorSize: false }, 128, 128);
  const s0 = 0.1484375;
  const s1 = 0.1484375 + (0.75 - 0.1484375) / 3;
  t.equal(a[0].w, s0);
  t.ok(Math.abs(a[1].w - Math.sqrt(s0 * s1)) < 1e-12, 'interpolated scale between layers 0 and 1');
  t.ok(Math.abs(a[895].w - Math.sqrt(0.75 * 1)) < 1e-12, 'the last layer interpolates towards 1');
});

t.test('decoding: regressors in input pixels around the anchor, clipped sigmoid scores', async (t) => {
  const anchors = [
    { x: 0.25, y: 0.5, w: 1, h: 1 },
    { x: 0.75, y: 0.5, w: 1, h: 1 },
  ];
  const stride = 4 + 2 * 1;
  const boxes = new Float32Array(2 * stride);
  boxes.set([16, -32, 64, 32, 8, 8], 0); // centre (0.25 + 0.125, 0.5 - 0.25), 0.5 x 0.25, keypoint (+1/16, +1/16)
  const scores = new Float32Array([1e9, -1]);
  const d = decodeDetections(scores, boxes, anchors, {
    scoreThreshold: 0.5,
    scoreClip: 100,
    keypoints: 1,
    xScale: 128,
    yScale: 128,
  });
  t.equal(d.length, 1, 'the sigmoid(-1) = 0.27 anchor is under the threshold');
  t.equal(d[0].score, 1 / (1 + Math.exp(-100)), 'logits clipped at 100');
  t.same(d[0].box, [0.375 - 0.25, 0.25 - 0.125, 0.375 + 0.25, 0.25 + 0.125]);
  t.same(d[0].keypoints, [0.25 + 1 / 16, 0.5 + 1 / 16]);
});

t.test('iou', async (t) => {
  t.equal(iou([0, 0, 2, 2], [1, 1, 3, 3]), 1 / 7);
  t.equal(iou([0, 0, 1, 1], [2, 2, 3, 3]), 0);
  t.equal(iou([0, 0, 1, 1], [0, 0, 1, 1]), 1);
});

t.test('weighted NMS blends overlapping boxes by score, keeps the best score, leaves others alone', async (t) => {
  const det = (score: number, box: [number, number, number, number], kp: number[]): Detection => ({
    score,
    box,
    keypoints: kp,
  });
  const input = [
    det(0.6, [0.12, 0.1, 0.32, 0.3], [0.2, 0.2]), // overlaps the best one (IoU 0.67)
    det(0.9, [0.1, 0.1, 0.3, 0.3], [0.1, 0.1]),
    det(0.8, [0.6, 0.6, 0.8, 0.8], [0.7, 0.7]), // a second face
    det(0.7, [0.2, 0.2, 0.4, 0.4], [0.3, 0.3]), // IoU 0.14 with the best: under 0.3, kept apart
  ];
  const out = weightedNms(input, 0.3, 20);
  t.equal(out.length, 3);
  t.same(
    out.map((d) => d.score),
    [0.9, 0.8, 0.7],
    'best first, each keeps its top score',
  );
  const close = (a: readonly number[], b: number[]) => a.every((v, i) => Math.abs(v - b[i]) < 1e-12);
  t.ok(close(out[0].box, [(0.9 * 0.1 + 0.6 * 0.12) / 1.5, 0.1, (0.9 * 0.3 + 0.6 * 0.32) / 1.5, 0.3]), `${out[0].box}`);
  t.ok(close(out[0].keypoints, [(0.9 * 0.1 + 0.6 * 0.2) / 1.5, (0.9 * 0.1 + 0.6 * 0.2) / 1.5]));
  t.same(out[1].box, [0.6, 0.6, 0.8, 0.8], 'a lone detection is unchanged');
  t.same(out[2].box, [0.2, 0.2, 0.4, 0.4]);
  t.equal(weightedNms(input, 0.3, 2).length, 2, 'maxDetections caps the answer');
  t.same(weightedNms([], 0.3, 20), []);
  t.equal(weightedNms(input, 0.01, 20).length, 2, 'a lower threshold merges the third box into the first');
});
