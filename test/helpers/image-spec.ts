import type { ImageSpec } from '../../src/preprocess/image.js';

/** A text line as `text-orientation` prepares it (PaddleOCR's `ClsResizeImg`): BGR, 48 high, up to 192 wide. */
export const lineSpec: ImageSpec = {
  layout: 'NCHW',
  height: 48,
  width: 192,
  channels: 'BGR',
  resize: 'fit-height',
  cropRatio: 1,
  interpolation: 'linear',
  scale: 1 / 255,
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
  padValue: 0,
};
