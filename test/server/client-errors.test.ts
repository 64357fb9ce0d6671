import { connect } from 'node:net';
import t from 'tap';
import { startApp } from '../helpers/app.js';

// Requests Node's HTTP parser refuses, and bodies the server would misread, get our error body and stable code (an
// adversarial review got Fastify's `{"message":"Client Error"}` without one, a bare 431, and a gzipped text/plain body
// read as text). Over a real socket: the parser runs there, not in inject().
const ctx = await startApp();
t.teardown(() => ctx.close());
await ctx.app.listen({ port: 0, host: '127.0.0.1' });
const { port } = ctx.app.server.address() as { port: number };

/** Sends raw bytes, returns the status line and the body of the answer once the server closes or answers. */
function raw(request: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (c) => (text += c.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      const [head, body = ''] = text.split('\r\n\r\n');
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0);
      status ? resolve({ status, body }) : reject(new Error(`no answer: ${JSON.stringify(text)}`));
    });
    socket.end(request);
  });
}

t.test('requests the HTTP parser refuses get a stable code', async (t) => {
  const cases: [string, string, number, string][] = [
    [
      'two content-lengths',
      'POST /predict?model=language-id HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello',
      400,
      'MUON_ERR_BAD_REQUEST',
    ],
    [
      'negative chunk size',
      'POST /predict?model=language-id HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n',
      400,
      'MUON_ERR_BAD_REQUEST',
    ],
    ['obs-fold header', 'GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n', 400, 'MUON_ERR_BAD_REQUEST'],
    [
      '20 KB header',
      `GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(20_000)}\r\n\r\n`,
      431,
      'MUON_ERR_HEADERS_TOO_LARGE',
    ],
  ];
  for (const [what, request, status, code] of cases) {
    const res = await raw(request);
    t.equal(res.status, status, what);
    t.match(JSON.parse(res.body), { statusCode: status, code }, what);
  }
});

t.test('a compressed body outside v2 is refused, not read as it is', async (t) => {
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/predict?model=language-id',
    headers: { 'content-type': 'text/plain', 'content-encoding': 'gzip' },
    payload: Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03]),
  });
  t.equal(res.statusCode, 415);
  t.match(res.json(), { code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE', message: /Content-Encoding gzip/ });
  // an empty body has nothing to inflate: its encoding does not matter (the route answers for the missing input)
  const empty = await ctx.app.inject({
    method: 'POST',
    url: '/predict?model=language-id',
    headers: { 'content-type': 'text/plain', 'content-encoding': 'gzip' },
  });
  t.match(empty.json(), { code: 'MUON_ERR_MISSING_INPUT' });
  for (const none of ['identity', ' Identity ', '']) {
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/predict?model=language-id',
      headers: { 'content-type': 'text/plain', 'content-encoding': none },
      payload: 'bonjour tout le monde',
    });
    t.equal(res.statusCode, 200, `Content-Encoding '${none}' is none`);
  }
  const identity = await ctx.app.inject({
    method: 'POST',
    url: '/predict?model=language-id',
    headers: { 'content-type': 'text/plain', 'content-encoding': 'identity' },
    payload: 'bonjour tout le monde',
  });
  t.equal(identity.statusCode, 200);
  // the server keeps answering
  t.equal((await ctx.app.inject({ method: 'GET', url: '/v2/health/live' })).statusCode, 200);
});
