import { createHash } from 'node:crypto';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { WireInput } from '../models/tasks/task.js';
import { sniffImageFormat } from '../preprocess/image.js';

/** Where, how often and how much to capture. */
export interface CaptureOptions {
  readonly dir: string;
  /** Fraction of successful requests kept, 0..1. */
  readonly rate: number;
  /** Stop capturing once the folder holds this many bytes (counted across restarts). */
  readonly maxBytes: number;
}

const extensions: Record<string, string> = { jpeg: 'jpg', png: 'png', webp: 'webp' };

/**
 * Opt-in capture of real request inputs, for calibrating compressed models on real traffic
 * (`muon-compress --calibration <dir>/<model>`). The files are user data: off unless `MUON_CAPTURE_DIR` is set.
 * Layout: `<dir>/<model>/<sha256 prefix>.<ext>`, the request body as received (content-addressed, so repeats are
 * stored once). Writes are fire-and-forget: capture never delays or fails a request.
 */
export class RequestCapture {
  #used = 0;
  #full = false;
  readonly #ready: Promise<void>;

  /**
   * @param random sampling source; tests pass a fixed one
   */
  constructor(
    private readonly opts: CaptureOptions,
    private readonly log: Logger,
    private readonly random: () => number = Math.random,
  ) {
    this.#ready = this.#measure();
  }

  /** Bytes the capture folder holds. */
  get usedBytes(): number {
    return this.#used;
  }

  /** Maybe stores one input (after its request succeeded). Resolves when the write is done or skipped. */
  async offer(model: string, input: WireInput): Promise<void> {
    if (this.#full || this.random() >= this.opts.rate) return;
    await this.#ready;
    // text is stored as its UTF-8 bytes, the body a client would send to reproduce the request
    const bytes = input.kind === 'text' ? Buffer.from(input.text, 'utf8') : input.bytes;
    if (this.#used + bytes.length > this.opts.maxBytes) {
      this.#full = true;
      this.log.warn({ dir: this.opts.dir, maxBytes: this.opts.maxBytes }, 'capture folder full; capture stopped');
      return;
    }
    const ext =
      input.kind === 'text'
        ? 'txt'
        : input.kind === 'audio'
          ? 'wav'
          : (extensions[sniffImageFormat(bytes) ?? ''] ?? 'bin');
    const name = `${createHash('sha256').update(bytes).digest('hex').slice(0, 32)}.${ext}`;
    const folder = path.join(this.opts.dir, model);
    this.#used += bytes.length; // reserved before the write, so concurrent offers cannot overshoot the cap
    try {
      await mkdir(folder, { recursive: true });
      await writeFile(path.join(folder, name), bytes, { flag: 'wx' });
    } catch (err) {
      this.#used -= bytes.length;
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') this.log.warn({ err }, 'capture write failed');
    }
  }

  async #measure(): Promise<void> {
    const walk = async (dir: string): Promise<number> => {
      let total = 0;
      for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const p = path.join(dir, e.name);
        total += e.isDirectory() ? await walk(p) : ((await stat(p).catch(() => undefined))?.size ?? 0);
      }
      return total;
    };
    this.#used = await walk(this.opts.dir);
  }
}
