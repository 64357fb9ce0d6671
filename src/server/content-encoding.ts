import { Transform, type Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip, createInflate, deflate, gzip } from 'node:zlib';
import type { FastifyRequest } from 'fastify';
import { Errors } from '../errors.js';
import { BodyMeter, type AdmissionBudget } from './memory-budget.js';

// HTTP compression of v2 infer bodies, as tritonclient's `request_compression_algorithm` and
// `response_compression_algorithm` use it: `Content-Encoding: gzip | deflate` (deflate is the zlib format) on the
// request, `Accept-Encoding` for the answer. Node's zlib, streaming, on the thread pool: no dependency.

/** A request's Content-Encoding, trimmed and lower-cased; undefined when it says none (absent, empty, identity). */
export function declaredEncoding(req: Pick<FastifyRequest, 'headers'>): string | undefined {
  const e = req.headers['content-encoding']?.trim().toLowerCase();
  return e === undefined || e === '' || e === 'identity' ? undefined : e;
}

/** Whether a request carries a body to read (and so to inflate): a content-length over 0, or a chunked one. */
export const carriesBody = (req: Pick<FastifyRequest, 'headers'>): boolean =>
  Number(req.headers['content-length']) > 0 || req.headers['transfer-encoding'] !== undefined;

/** The request body's encoding: undefined for none (or identity); a 415 for any other than gzip or deflate. */
export function requestEncoding(req: FastifyRequest): 'gzip' | 'deflate' | undefined {
  const e = declaredEncoding(req);
  if (e === undefined) return undefined;
  const raw = req.headers['content-encoding']!;
  if (e === 'gzip' || e === 'x-gzip') return 'gzip';
  if (e === 'deflate') return 'deflate';
  throw new Errors.UNSUPPORTED_MEDIA_TYPE(`Content-Encoding '${raw.slice(0, 64)}' (send gzip, deflate or identity)`);
}

/** A stream that counts what passes, refusing more than `limit` bytes with a 413 (`what` says which bytes). */
function capped(limit: number, what: string, counted: (n: number) => void): Transform {
  let total = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      total += chunk.length;
      counted(total);
      if (total > limit) return done(new Errors.BODY_TOO_LARGE(`MUON_MAX_BODY_BYTES (${what})`));
      done(null, chunk);
    },
  });
}

/**
 * The request body inflated as it arrives. The inflated bytes are capped at `maxBytes` (a zip bomb stops there: 413
 * MUON_ERR_BODY_TOO_LARGE, having held at most that) and charged to the memory budget like a body; the compressed
 * bytes were charged as they arrived, and are reported as `receivedEncodedLength`, which Fastify compares with
 * Content-Length. A corrupt or truncated stream fails with zlib's error (Z_DATA_ERROR, Z_BUF_ERROR: a 400).
 * The request stream itself is never destroyed, so the client still reads the refusal.
 */
export function inflatedBody(
  req: FastifyRequest,
  payload: Readable,
  encoding: 'gzip' | 'deflate',
  maxBytes: number,
  budget: AdmissionBudget,
): Readable {
  const inflate = encoding === 'gzip' ? createGunzip() : createInflate();
  const meter = new BodyMeter(budget, req.holdings, undefined);
  const inflated = inflate.pipe(capped(maxBytes, 'inflated', () => {}));
  // errors of `inflated` reach `out` through the meter's pipeline
  const out = meter.stream(inflated) as Readable & { receivedEncodedLength?: number };
  const encoded = capped(maxBytes, 'compressed', (n) => (out.receivedEncodedLength = n));
  for (const s of [payload, encoded, inflate]) s.on('error', (err: Error) => out.destroy(err));
  // once refused, the rest of the upload is read and dropped, so the client gets to read the refusal
  out.once('close', () => {
    inflate.destroy(); // frees zlib's memory now, not at the next collection
    if (payload.readableEnded) return;
    payload.unpipe(encoded);
    payload.resume();
  });
  payload.pipe(encoded).pipe(inflate);
  return out;
}

/**
 * Answers smaller than this go as they are, whatever Accept-Encoding says (identity is always acceptable, and
 * clients read Content-Encoding): compressing 150 bytes saves nothing and costs a deflate state (about 256 KB) and a
 * thread-pool hop, which every fetch() client (it sends `accept-encoding: gzip, deflate`) would pay per request.
 */
export const COMPRESS_MIN_BYTES = 1024;

/**
 * The encoding to answer a `bytes`-long body with for an `Accept-Encoding` header: gzip, else deflate, when the
 * client takes one and the body is worth it ({@link COMPRESS_MIN_BYTES}).
 */
export function responseEncoding(accept: string | undefined, bytes = Infinity): 'gzip' | 'deflate' | undefined {
  if (accept === undefined || bytes < COMPRESS_MIN_BYTES) return undefined;
  const q = new Map<string, number>();
  for (const part of accept.toLowerCase().split(',')) {
    const [name, ...params] = part.split(';').map((s) => s.trim());
    const qv = params.find((p) => p.startsWith('q='));
    q.set(name, qv === undefined ? 1 : Number(qv.slice(2)) || 0);
  }
  const takes = (e: string) => (q.get(e) ?? q.get('*') ?? 0) > 0;
  return takes('gzip') ? 'gzip' : takes('deflate') ? 'deflate' : undefined;
}

const compressors = { gzip: promisify(gzip), deflate: promisify(deflate) };

/** `body` compressed on the thread pool (the event loop only waits). */
export function compress(body: Buffer, encoding: 'gzip' | 'deflate'): Promise<Buffer> {
  return compressors[encoding](body);
}
