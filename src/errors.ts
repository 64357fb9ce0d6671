import createError from '@fastify/error';

/**
 * Every error a client of Muon Serve can see. Each has a stable `code`, an HTTP status, and a row in the README's
 * error table (a test checks that). Messages use `%s` placeholders filled at the throw site.
 */
export const Errors = {
  /** A raw tensor request (v2 `infer`) whose inputs do not match the graph: name, datatype, shape or data size. */
  INVALID_TENSOR: createError('MUON_ERR_INVALID_TENSOR', 'Invalid tensor: %s', 400),
  /** The model exists but not in the version asked for. */
  VERSION_NOT_FOUND: createError('MUON_ERR_VERSION_NOT_FOUND', "Model '%s' has no version '%s'", 404),
  /** A repository change (load/unload) without the right `Authorization: Bearer` token. */
  UNAUTHORIZED: createError('MUON_ERR_UNAUTHORIZED', 'Unauthorized: %s', 401),
  /** Repository changes are disabled: `MUON_ADMIN_TOKEN` is not set. */
  ADMIN_DISABLED: createError(
    'MUON_ERR_ADMIN_DISABLED',
    'Model management is disabled (set MUON_ADMIN_TOKEN to enable it)',
    403,
  ),
  /** A model folder that does not load, or a new version that fails its checks; the serving version stays. */
  LOAD_FAILED: createError('MUON_ERR_LOAD_FAILED', "Model '%s' was not loaded: %s", 422),
  /** The route or the request's parameters are malformed. */
  BAD_REQUEST: createError('MUON_ERR_BAD_REQUEST', 'Bad request: %s', 400),
  /** No model with that name is in the repository. */
  MODEL_NOT_FOUND: createError('MUON_ERR_MODEL_NOT_FOUND', "Model '%s' is not in the repository", 404),
  /** No such route. */
  NOT_FOUND: createError('MUON_ERR_NOT_FOUND', 'Route %s %s not found', 404),
  /** The request's content type, or the bytes' real format, is not accepted by this endpoint or model. */
  UNSUPPORTED_MEDIA_TYPE: createError('MUON_ERR_UNSUPPORTED_MEDIA_TYPE', 'Unsupported media type: %s', 415),
  /** Node's HTTP parser refused the request: its headers are over Node's limit (16 KiB by default). */
  HEADERS_TOO_LARGE: createError('MUON_ERR_HEADERS_TOO_LARGE', 'Request headers are too large: %s', 431),
  /** The request's headers or body did not arrive within `MUON_UPLOAD_TIMEOUT_MS`. */
  REQUEST_TIMEOUT: createError('MUON_ERR_REQUEST_TIMEOUT', 'The request did not arrive in time: %s', 408),
  /** The body (or the uploaded file) is over `MUON_MAX_BODY_BYTES`. */
  BODY_TOO_LARGE: createError('MUON_ERR_BODY_TOO_LARGE', 'Request body is larger than %s bytes', 413),
  /** A multipart request without a file part, or an empty body. */
  MISSING_INPUT: createError('MUON_ERR_MISSING_INPUT', 'No input: %s', 400),
  /** A text body that is not valid UTF-8 (or declares another charset). */
  INVALID_TEXT: createError('MUON_ERR_INVALID_TEXT', 'The text cannot be read: %s', 400),
  /** A text input over the model's `input.maxBytes` (UTF-8 bytes). */
  TEXT_TOO_LARGE: createError('MUON_ERR_TEXT_TOO_LARGE', 'Text too large: %s', 413),
  /** The image is in an accepted format but cannot be decoded (truncated, corrupt). */
  INVALID_IMAGE: createError('MUON_ERR_INVALID_IMAGE', 'The image cannot be decoded: %s', 400),
  /** The image decodes but is larger than `MUON_MAX_IMAGE_PIXELS` or has a zero dimension. */
  IMAGE_DIMENSIONS: createError('MUON_ERR_IMAGE_DIMENSIONS', 'Image dimensions not accepted: %s', 422),
  /** A RIFF/WAVE body whose header is truncated or inconsistent, or whose encoding is not supported. */
  INVALID_AUDIO: createError('MUON_ERR_INVALID_AUDIO', 'The audio cannot be decoded: %s', 400),
  /** Audio longer than the model's `input.maxSeconds`. */
  AUDIO_TOO_LONG: createError('MUON_ERR_AUDIO_TOO_LONG', 'Audio too long: %s', 413),
  /** The request would need more memory than the server's whole budget (`MUON_MEMORY_BUDGET_BYTES`); never fits. */
  OVER_MEMORY_BUDGET: createError('MUON_ERR_OVER_MEMORY_BUDGET', 'Request too large for the memory budget: %s', 413),
  /** Requests in progress hold the memory budget; retry after the `Retry-After` header's seconds. */
  MEMORY_BUSY: createError('MUON_ERR_MEMORY_BUSY', 'Server memory busy: %s', 429),
  /** Every slot for large inputs (decoding 32 MiB or more) is taken; retry after the `Retry-After` header's seconds. */
  LARGE_INPUTS_BUSY: createError('MUON_ERR_LARGE_INPUTS_BUSY', 'Large inputs are all being processed: %s', 429),
  /** The model's queue is full; retry after the `Retry-After` header's seconds. */
  QUEUE_FULL: createError('MUON_ERR_QUEUE_FULL', "Model '%s' is overloaded: %s", 429),
  /** The request's deadline passed before it could be computed. */
  DEADLINE_EXCEEDED: createError(
    'MUON_ERR_DEADLINE_EXCEEDED',
    "Request to model '%s' timed out after %s ms in the queue",
    504,
  ),
  /** The model exists but is not loaded yet (or failed to load). */
  MODEL_NOT_READY: createError('MUON_ERR_MODEL_NOT_READY', "Model '%s' is not ready: %s", 503),
  /** The client disconnected before its request was computed; the work was dropped (logged, rarely seen). */
  CLIENT_CLOSED: createError(
    'MUON_ERR_CLIENT_CLOSED',
    'The client closed the connection before the answer was ready',
    499,
  ),
  /** A request its handler did not answer within `MUON_HANDLER_TIMEOUT_MS` after its body arrived (a safety net). */
  HANDLER_TIMEOUT: createError('MUON_ERR_HANDLER_TIMEOUT', 'The request was not answered within %s ms', 503),
  /** The server is draining for shutdown. */
  SHUTTING_DOWN: createError('MUON_ERR_SHUTTING_DOWN', 'The server is shutting down', 503),
  /** The runtime failed while computing the batch this request was in. */
  INFERENCE_FAILED: createError('MUON_ERR_INFERENCE_FAILED', "Inference failed for model '%s'", 500),
  /** Anything unexpected. The details are in the server log under the request id, never in the response. */
  INTERNAL: createError('MUON_ERR_INTERNAL', 'Internal server error (request id %s)', 500),
} as const;

/** Shape of every error response body (Fastify's own error shape). */
export interface ErrorBody {
  statusCode: number;
  code: string;
  error: string;
  message: string;
}

/** All codes a client can receive, for documentation checks. */
export const errorCodes = (): { code: string; statusCode: number }[] =>
  Object.values(Errors).map((E) => {
    const e = new E();
    return { code: e.code, statusCode: e.statusCode ?? 500 };
  });
