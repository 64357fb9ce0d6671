import type { ImageTensor } from '../../../preprocess/image.js';
import { imageTensor, isSmallImage, type Sizing } from '../../../workers/ops.js';
import { imageOf, type ModelInput, type TaskContext } from '../task.js';
import type { RowSlots } from './buffers.js';

/** Bytes a decoded pixel holds while libvips works on it (RGBA, before the alpha is dropped): the memory budget's price. */
export const DECODED_BYTES_PER_PIXEL = 4;

/** A prepared image row, and how to give back the slot it may have been written into. */
export interface ImageRow {
  readonly tensor: ImageTensor;
  /** Gives the row's slot back once its request is done (see {@link RowSlots}); the tensor is unusable after. */
  readonly release: () => void;
}

/**
 * An image input (encoded bytes, or another pipeline's pixels) to its tensor row, sized by `sizing`: on the event
 * loop when it is small (a text line: the hop would cost as much) and its request is the only one in progress
 * (see TaskWorkers.run), else on a task worker. The row is written into a slot of `slots` when one is free.
 */
export async function imageRow(
  ctx: TaskContext<unknown>,
  input: ModelInput,
  task: string,
  sizing: Sizing,
  slots?: RowSlots,
): Promise<ImageRow> {
  const source = imageOf(input, task);
  const { slot: out, release } = slots?.lend() ?? { slot: undefined, release: () => {} };
  try {
    const tensor = await ctx.workers.run(
      imageTensor,
      { source, sizing, maxPixels: ctx.maxImagePixels, out },
      { inline: isSmallImage(source) },
    );
    return { tensor, release };
  } catch (err) {
    // the op has ended (it failed, or its thread is gone), so nothing writes the slot any more
    release();
    throw err;
  }
}
