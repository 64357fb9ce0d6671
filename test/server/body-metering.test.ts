import t from 'tap';
import { startApp } from '../helpers/app.js';

// What the memory budget charges for a body, at the edges: a GET or HEAD body is never read, so never charged; a
// body declared over the body limit is refused with 413 before it is charged (not 429 for want of memory).
const MiB = 2 ** 20;
const ctx = await startApp({
  MUON_MEMORY_BUDGET_BYTES: String(16 * MiB),
  MUON_MAX_BODY_BYTES: String(32 * MiB),
  MUON_MEMORY_WAIT_MS: '10',
});
t.teardown(() => ctx.close());
const { app } = ctx;
const postText = (bytes: number) =>
  app.inject({
    method: 'POST',
    url: '/predict?model=language-id',
    headers: { 'content-type': 'text/plain' },
    payload: 'a'.repeat(bytes),
  });

t.test('a GET with a body larger than the whole budget is answered', async (t) => {
  const r = await app.inject({ method: 'GET', url: '/v2/health/live', payload: 'x'.repeat(17 * MiB) });
  t.equal(r.statusCode, 200, r.body);
});

t.test('a body over the body limit is 413, whatever the budget', async (t) => {
  const r = await postText(33 * MiB);
  t.equal(r.statusCode, 413, r.body);
});

t.test('a POST body larger than the whole budget is 413 over the budget', async (t) => {
  const r = await postText(17 * MiB);
  t.equal(r.statusCode, 413, r.body);
  t.match(r.json(), { code: 'MUON_ERR_OVER_MEMORY_BUDGET' });
});
