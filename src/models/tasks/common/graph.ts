import { ManifestError } from './manifest.js';

// Finding and checking a task's graph input and output against its manifest.

/** The graph input or output the manifest names, or the only / first one when it names none. */
export function pick<T extends { name: string }>(
  list: T[],
  wanted: string | undefined,
  what: string,
  where: string,
): T {
  if (wanted === undefined) {
    if (list.length === 1 || what === 'output') return list[0];
    throw new ManifestError(
      `${where}: the model has ${list.length} inputs (${list.map((i) => i.name).join(', ')}); set /input/name`,
    );
  }
  const found = list.find((i) => i.name === wanted);
  if (!found)
    throw new ManifestError(
      `${where}: /${what}/name '${wanted}' is not a graph ${what} (have ${list.map((i) => i.name).join(', ')})`,
    );
  return found;
}

/** Checks a graph input's shape against the row the manifest's `/input` describes (batch axis aside). */
export function checkShape(
  shape: readonly (number | string)[],
  rowDims: readonly number[],
  what: string,
  where: string,
): void {
  if (shape.length !== rowDims.length + 1) {
    throw new ManifestError(
      `${where}: ${what} has rank ${shape.length}, the manifest's /input describes rank ${rowDims.length + 1}`,
    );
  }
  rowDims.forEach((d, i) => {
    const g = shape[i + 1];
    if (typeof g === 'number' && g !== d) {
      throw new ManifestError(
        `${where}: ${what} has shape [${shape.join(', ')}] but /input (layout, height, width, channels) gives [batch, ${rowDims.join(', ')}]`,
      );
    }
  });
}
