import { STATUS_CODES } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Errors, type ErrorBody } from '../errors.js';

/** An error as the client will see it, plus response headers it needs (Retry-After). */
export interface ClientError {
  readonly body: ErrorBody;
  readonly headers: Record<string, string>;
  /**
   * True for server faults (500): logged at error level with the stack, answered without it. The 503s and 504s of
   * load, readiness and deadlines are expected under overload and are logged like refusals, at info, without one.
   */
  readonly serverFault: boolean;
}

/** Fastify's and @fastify/multipart's own error codes, translated to ours. */
const frameworkCodes: Record<string, (err: Error) => Error> = {
  FST_ERR_CTP_BODY_TOO_LARGE: () => new Errors.BODY_TOO_LARGE('MUON_MAX_BODY_BYTES'),
  FST_REQ_FILE_TOO_LARGE: () => new Errors.BODY_TOO_LARGE('MUON_MAX_BODY_BYTES'),
  FST_ERR_CTP_INVALID_MEDIA_TYPE: (e) =>
    new Errors.UNSUPPORTED_MEDIA_TYPE(e.message.replace(/^Unsupported Media Type:?\s*/i, '') || 'unknown'),
  FST_INVALID_MULTIPART_CONTENT_TYPE: () => new Errors.UNSUPPORTED_MEDIA_TYPE('expected multipart/form-data'),
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: () => new Errors.BAD_REQUEST('the content-length header does not match the body'),
  FST_ERR_CTP_EMPTY_JSON_BODY: () => new Errors.MISSING_INPUT('the JSON body is empty'),
  FST_ERR_CTP_INVALID_JSON_BODY: (e) => new Errors.BAD_REQUEST(e.message),
  FST_PARTS_LIMIT: () => new Errors.BAD_REQUEST('too many multipart parts'),
  FST_FILES_LIMIT: () => new Errors.BAD_REQUEST('send exactly one file'),
  FST_FIELDS_LIMIT: () => new Errors.BAD_REQUEST('too many multipart fields'),
  FST_PROTO_VIOLATION: (e) => new Errors.BAD_REQUEST(e.message),
  FST_MP_PREMATURE_CLOSE: () => new Errors.BAD_REQUEST('the multipart body ended early'),
  FST_ERR_VALIDATION: (e) => new Errors.BAD_REQUEST(e.message),
  FST_ERR_MAX_PARAM_LENGTH: () => new Errors.BAD_REQUEST('a path parameter is too long'),
  FST_ERR_BAD_URL: () => new Errors.BAD_REQUEST('the URL is malformed'),
  // zlib's, inflating a request body sent with Content-Encoding (content-encoding.ts)
  Z_DATA_ERROR: (e) => new Errors.BAD_REQUEST(`the compressed body cannot be inflated: ${e.message}`),
  Z_BUF_ERROR: () => new Errors.BAD_REQUEST('the compressed body ends early'),
  Z_NEED_DICT: () => new Errors.BAD_REQUEST('the compressed body needs a preset dictionary'),
};

/**
 * The one place where any error becomes an HTTP answer. Our own errors pass through; the batcher's and the
 * framework's are translated; anything else becomes a 500 that names the request id and nothing more.
 * An error may carry `retryAfterSeconds`, which becomes the Retry-After header.
 */
export function toClientError(err: unknown, requestId: string): ClientError {
  let e: (Error & { code?: string; statusCode?: number; retryAfterSeconds?: number }) | undefined =
    err instanceof Error ? err : undefined;
  const headers: Record<string, string> = {};
  if (e?.retryAfterSeconds !== undefined) headers['retry-after'] = String(e.retryAfterSeconds);
  if (e?.code && frameworkCodes[e.code]) {
    e = frameworkCodes[e.code](e);
  } else if (e && !e.code?.startsWith('MUON_ERR_') && e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
    // a client error from a plugin we do not know by code: keep its status, give it our generic code
    const status = e.statusCode;
    e = Object.assign(new Errors.BAD_REQUEST(e.message), { statusCode: status });
  }
  if (!e?.code?.startsWith('MUON_ERR_')) e = new Errors.INTERNAL(requestId);
  const statusCode = e.statusCode ?? 500;
  return {
    body: { statusCode, code: e.code!, error: STATUS_CODES[statusCode] ?? 'Error', message: e.message },
    headers,
    serverFault: statusCode >= 500 && statusCode !== 503 && statusCode !== 504,
  };
}

/** The error body formats: ours (Fastify's shape plus `code`), or the Open Inference Protocol's. */
export type ErrorFormat = 'muon' | 'v2';

/**
 * The format for a URL: the Open Inference Protocol's under `/v2` (Triton's and KServe's clients read its `error`
 * field, so a 404 for a route or model they miss says what was missed), ours elsewhere.
 */
export const errorFormatOf = (url: string): ErrorFormat => (/^\/v2(?:[/?#]|$)/.test(url) ? 'v2' : 'muon');

/** `body` in a format: ours as it is, or the Open Inference Protocol's `{"error": "...", "code": "..."}`. */
export const formatError = (body: ErrorBody, format: ErrorFormat): object =>
  format === 'v2' ? { error: body.message, code: body.code } : body;

/**
 * A route family's error handler: the error mapped by {@link toClientError}, logged (server faults at error level
 * with the stack, refusals at info), and answered in the family's body format ({@link formatError}); `by-url` picks
 * it from the request's URL ({@link errorFormatOf}).
 */
export function errorHandler(format: ErrorFormat | 'by-url') {
  return (err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const { body, headers, serverFault } = toClientError(err, req.id);
    if (serverFault) req.log.error({ err }, 'request failed');
    else req.log.info({ code: body.code, reason: body.message }, 'request refused');
    reply.code(body.statusCode).headers(headers);
    return reply.send(formatError(body, format === 'by-url' ? errorFormatOf(req.url) : format));
  };
}
