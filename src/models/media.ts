import path from 'node:path';
import type { WireInput } from './tasks/task.js';

/**
 * Media files by extension: the layout of a capture folder (`MUON_CAPTURE_DIR/<model>`), of calibration folders and
 * of a manifest's rollout samples. One file is one request.
 */
const kinds: Record<string, WireInput['kind']> = {
  '.jpg': 'image',
  '.jpeg': 'image',
  '.png': 'image',
  '.webp': 'image',
  '.wav': 'audio',
  '.txt': 'text',
};

/** The request kind a file holds, by its extension, or undefined for other files. */
export function mediaKind(file: string): WireInput['kind'] | undefined {
  return kinds[path.extname(file).toLowerCase()];
}

/** A media file's bytes as the request a client would send; throws for a text file that is not UTF-8. */
export function mediaInput(kind: WireInput['kind'], bytes: Uint8Array, file: string): WireInput {
  if (kind !== 'text') return { kind, bytes };
  try {
    return { kind, text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
  } catch {
    throw new Error(`${file}: not valid UTF-8`);
  }
}
