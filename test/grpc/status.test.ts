import { status } from '@grpc/grpc-js';
import t from 'tap';
import { Errors, errorCodes } from '../../src/errors.js';
import { toGrpcStatus } from '../../src/grpc/status.js';

// The one mapping of errors to gRPC statuses: every error a client can see gets the code docs/grpc.md lists, our code
// in the details and the trailer, and nothing of an unexpected error but the request id.
const expected: Record<number, status> = {
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
  500: status.INTERNAL,
  503: status.UNAVAILABLE,
  504: status.DEADLINE_EXCEEDED,
};

t.test('every error code maps to its gRPC status, with our code in the details and the trailer', async (t) => {
  for (const { code, statusCode } of errorCodes()) {
    const E = Object.values(Errors).find((E) => new E().code === code)!;
    const s = toGrpcStatus(new E('a', 'b'), 'req-1');
    t.ok(expected[statusCode] !== undefined, `${code}: ${statusCode} is in the table`);
    t.equal(s.code, expected[statusCode], `${code} -> ${status[s.code]}`);
    t.equal(s.muonCode, code);
    t.equal(s.httpStatus, statusCode);
    t.match(s.details, new RegExp(`^${code}: `));
    t.same(s.metadata.get('muon-error-code'), [code]);
  }
});

t.test('retry-after travels as trailing metadata', async (t) => {
  const s = toGrpcStatus(Object.assign(new Errors.QUEUE_FULL('m', 'busy'), { retryAfterSeconds: 3 }), 'req-2');
  t.equal(s.code, status.UNAVAILABLE);
  t.same(s.metadata.get('retry-after'), ['3']);
});

t.test('an unexpected error is INTERNAL naming only the request id', async (t) => {
  const s = toGrpcStatus(new Error('secret path /etc/x'), 'req-3');
  t.equal(s.code, status.INTERNAL);
  t.equal(s.details, 'MUON_ERR_INTERNAL: Internal server error (request id req-3)');
  t.equal(s.serverFault, true);
  t.equal(toGrpcStatus(new Errors.MODEL_NOT_READY('m', 'loading'), 'x').serverFault, false);
});
