import type { ImageTensor } from '../../../preprocess/image.js';
import { imageTensor, isSmallImage, type Sizing } from '../../../workers/ops.js';
import { imageOf, type ModelInput, type TaskContext } from '../task.js';

/** Bytes a decoded pixel holds while libvips works on it (RGBA, before the alpha is dropped): the memory budget's price. */
export const DECODED_BYTES_PER_PIXEL = 4;

/**
 * An image input (encoded bytes, or another pipeline's pixels) to its tensor row, sized by `sizing`: on the event
 * loop when it is small (a text line: the hop would cost as much) and nothing else is being prepared, else on a
 * task worker.
 */
export function imageRow(
  ctx: TaskContext<unknown>,
  input: ModelInput,
  task: string,
  sizing: Sizing,
): Promise<ImageTensor> {
  const source = imageOf(input, task);
  return ctx.workers.run(
    imageTensor,
    { source, sizing, maxPixels: ctx.maxImagePixels },
    { inline: isSmallImage(source) },
  );
}
