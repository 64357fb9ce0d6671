import t from 'tap';
import { JSON_BODY_BYTES, JSON_BODY_DEPTH } from '../../src/server/json-body.js';
import { startApp } from '../helpers/app.js';

// JSON bodies outside v2 infer (src/server/json-body.ts): bounded in size and depth before they are parsed, strict
// UTF-8, and /predict's {"text"} read without type coercion. The requests are those of an adversarial review: 8 MiB
// of nested brackets held the event loop for a second each (liveness failed under 32 clients), `{"text": true}` was
// answered as the text "true".
const ctx = await startApp();
t.teardown(() => ctx.close());
const { app } = ctx;

const post = (url: string, payload: string | Buffer, type = 'application/json') =>
  app.inject({ method: 'POST', url, headers: { 'content-type': type }, payload });
const brackets = (bytes: number) => '['.repeat(bytes / 2) + ']'.repeat(bytes / 2);

t.test('8 MiB of nested brackets is refused before it is parsed, on every route', async (t) => {
  const body = brackets(8 * 1024 * 1024 - 100);
  for (const url of ['/predict?model=language-id', '/v1/models/language-id/predict', '/predict']) {
    const res = await post(url, body);
    t.equal(res.statusCode, 413, url);
    t.match(res.json(), { code: 'MUON_ERR_BODY_TOO_LARGE' });
  }
  // a route that does not exist: 404, its body never read as JSON
  const missing = await post('/nope', body);
  t.equal(missing.statusCode, 404);
  t.match(missing.json(), { code: 'MUON_ERR_NOT_FOUND' });
  // under the size limit, too deep
  const deep = await post('/predict?model=language-id', brackets(JSON_BODY_BYTES));
  t.equal(deep.statusCode, 400);
  t.match(deep.json(), { code: 'MUON_ERR_BAD_REQUEST', message: /nested deeper than 16 levels/ });
  const nested = `{"text": "bonjour", "x": ${brackets(2 * JSON_BODY_DEPTH)}}`;
  t.equal((await post('/predict?model=language-id', nested)).statusCode, 400);
  // the server still answers
  const ok = await post('/predict?model=language-id', '{"text": "bonjour tout le monde"}');
  t.equal(ok.statusCode, 200);
  t.equal(ok.json().predictions[0].label, 'fra');
});

t.test('{"text"} must be an object with one string: no coercion', async (t) => {
  for (const body of [
    '{"text":true}',
    '{"text":["x"]}',
    '{"text":12.5}',
    '{"text":null}',
    'null',
    '"text"',
    '[]',
    '{}',
  ]) {
    const res = await post('/predict?model=language-id', body);
    t.equal(res.statusCode, 400, body);
    t.match(res.json(), { code: 'MUON_ERR_BAD_REQUEST', message: /\{"text": "\.\.\."\}/ }, body);
  }
  const extra = await post('/predict?model=language-id', '{"text":"hola","lang":"es"}');
  t.equal(extra.statusCode, 400, 'an unknown key is refused, not ignored');
  for (const poisoned of [
    '{"text":"hola","__proto__":{"x":1}}',
    '{"text":"hola","constructor":{"prototype":{"x":1}}}',
  ]) {
    const res = await post('/predict?model=language-id', poisoned);
    t.equal(res.statusCode, 400, poisoned);
    t.match(res.json(), { code: 'MUON_ERR_BAD_REQUEST' });
  }
});

t.test('a JSON body is UTF-8, as a text/plain one is', async (t) => {
  const invalid = Buffer.concat([Buffer.from('{"text":"caf'), Buffer.from([0xe9]), Buffer.from('"}')]);
  const res = await post('/predict?model=language-id', invalid);
  t.equal(res.statusCode, 400);
  t.match(res.json(), { code: 'MUON_ERR_INVALID_TEXT' });
  const plain = await post('/predict?model=language-id', Buffer.from([0x63, 0x61, 0x66, 0xe9]), 'text/plain');
  t.match(plain.json(), { code: 'MUON_ERR_INVALID_TEXT' }, 'the same code as text/plain');
  const latin1 = await post('/predict?model=language-id', '{"text":"hola"}', 'application/json; charset=latin1');
  t.equal(latin1.statusCode, 415);
  t.match(latin1.json(), { code: 'MUON_ERR_UNSUPPORTED_MEDIA_TYPE' });
  const utf8 = await post('/predict?model=language-id', '{"text":"hola que tal"}', 'application/json; charset=UTF-8');
  t.equal(utf8.statusCode, 200);
});
