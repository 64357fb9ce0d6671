import t from 'tap';
import { hostileCases } from '../helpers/hostile-cases.js';
import { startApp } from '../helpers/app.js';

// Hostile inputs across every input kind and both APIs: each gets its answer (a 4xx with a stable code, or a 200),
// and the server is healthy and still answers correctly afterwards.
const maxBodyBytes = 1 << 20;
const ctx = await startApp({ MUON_MAX_BODY_BYTES: String(maxBodyBytes) });
t.teardown(() => ctx.close());
const { app } = ctx;

const cases = await hostileCases(maxBodyBytes);
t.ok(cases.length >= 30, `${cases.length} cases`);
for (const c of cases) {
  t.test(c.name, async (t) => {
    const res = await app.inject({ method: 'POST', url: c.url, headers: c.headers, payload: c.payload });
    t.equal(res.statusCode, c.status, res.body.slice(0, 300));
    if (c.code) t.equal(res.json().code, c.code);
  });
}

t.test('after all of them: healthy, and right', async (t) => {
  t.equal((await app.inject({ url: '/v2/health/ready' })).statusCode, 200);
  const { readFileSync } = await import('node:fs');
  const line = readFileSync(new URL('../fixtures/text-lines/line-03.png', import.meta.url));
  const res = await app.inject({
    method: 'POST',
    url: '/predict?model=text-orientation',
    headers: { 'content-type': 'image/png' },
    payload: line,
  });
  t.equal(res.json().predictions[0].label, '0');
});
