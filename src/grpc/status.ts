import { Metadata, status } from '@grpc/grpc-js';
import { toClientError } from '../server/error-mapping.js';

// The one place where an error becomes a gRPC status. The error is first mapped exactly as HTTP maps it
// (server/error-mapping.ts: our stable MUON_ERR_* code and its HTTP status); the HTTP status then picks the gRPC code.

/** A gRPC status as grpc-js sends it, plus what the log and the metrics need. */
export interface GrpcStatus {
  readonly code: status;
  readonly details: string;
  readonly metadata: Metadata;
  /** Our stable code (also in the details, and in the `muon-error-code` trailer). */
  readonly muonCode: string;
  /** The HTTP status the same error gets from the REST API (for `muon_requests_total{code}`). */
  readonly httpStatus: number;
  /** A server fault (500): logged with its stack. */
  readonly serverFault: boolean;
}

/** The gRPC code of each HTTP status our errors carry; any other 4xx is INVALID_ARGUMENT, any other 5xx INTERNAL. */
const byHttpStatus: Record<number, status> = {
  400: status.INVALID_ARGUMENT,
  401: status.UNAUTHENTICATED,
  403: status.PERMISSION_DENIED,
  404: status.NOT_FOUND,
  408: status.DEADLINE_EXCEEDED,
  413: status.RESOURCE_EXHAUSTED,
  415: status.INVALID_ARGUMENT,
  422: status.INVALID_ARGUMENT,
  429: status.UNAVAILABLE,
  431: status.RESOURCE_EXHAUSTED,
  499: status.CANCELLED,
  503: status.UNAVAILABLE,
  504: status.DEADLINE_EXCEEDED,
};

/**
 * Maps any error to the status a gRPC client gets: details `MUON_ERR_X: message`, trailers `muon-error-code` and,
 * for a refusal to retry later, `retry-after` (seconds). Unexpected errors become INTERNAL naming `requestId` only.
 */
export function toGrpcStatus(err: unknown, requestId: string): GrpcStatus {
  const { body, headers, serverFault } = toClientError(err, requestId);
  const code =
    byHttpStatus[body.statusCode] ??
    (body.statusCode >= 400 && body.statusCode < 500 ? status.INVALID_ARGUMENT : status.INTERNAL);
  const metadata = new Metadata();
  metadata.set('muon-error-code', body.code);
  for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
  return {
    code,
    details: `${body.code}: ${body.message}`,
    metadata,
    muonCode: body.code,
    httpStatus: body.statusCode,
    serverFault,
  };
}
