import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { Errors } from '../errors.js';
import { toClientError } from './error-mapping.js';

/**
 * Fastify's `clientErrorHandler`: a request Node's HTTP parser refuses (two Content-Lengths, a bad chunk size, a
 * header over the size limit, an upload that did not arrive in time) is answered with our error body and its stable
 * code, as every other refusal is, then the connection is closed. (Fastify's default says "Client Error" without a
 * code.) A connection already reset gets nothing.
 */
export function clientErrorHandler(err: Error & { code?: string; reason?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const why = err.reason ?? err.message;
  const refusal =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new Errors.REQUEST_TIMEOUT('headers and body must arrive within MUON_UPLOAD_TIMEOUT_MS')
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? new Errors.HEADERS_TOO_LARGE(why)
        : new Errors.BAD_REQUEST(`the request is not valid HTTP/1.1 (${err.code ?? 'parse error'}: ${why})`);
  // the body every refusal gets (the request has no id yet: none is named)
  const { body: answer } = toClientError(refusal, '');
  const status = answer.statusCode;
  const body = JSON.stringify(answer);
  // not into an answer already under way on the connection (a pipelined request refused while the one before it is
  // sent): that one is cut instead, as Node itself does
  const answering = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (socket.writable && answering?.headersSent !== true)
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`,
    );
  socket.destroy(err);
}
