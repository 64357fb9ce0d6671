import t from 'tap';
import { clientKey, ErrorPacer, isClientError } from '../../src/server/error-pacing.js';
import { startApp } from '../helpers/app.js';

// Client errors are paced per client address (MUON_CLIENT_ERROR_RATE): a burst goes at once, further refusals are
// held back; successes never are, and a held refusal holds nothing of the memory budget.

t.test('the pacer: a burst at once, then one refusal per 1 / rate, never more than the longest delay', async (t) => {
  const p = new ErrorPacer({ rate: 10, burst: 3, maxDelayMs: 500, maxWaiting: 100 });
  t.same([p.delayFor('a', 0), p.delayFor('a', 0), p.delayFor('a', 0)], ['within-rate', 'within-rate', 'within-rate']);
  const held = [1, 2, 3, 4, 5, 6, 7].map(() => p.delayFor('a', 0));
  t.same(
    held.map((d) => Math.round(d as number)),
    [100, 200, 300, 400, 500, 500, 500],
  );
  t.equal(p.delayFor('b', 0), 'within-rate', 'another client has its own allowance');
  // what a client owes refills at the rate: 500 ms after, the debt of 5 refusals is paid
  for (let i = 0; i < held.length; i++) p.sent('a');
  t.equal(p.delayFor('a', 600), 'within-rate');
  t.equal(p.delayFor('a', 10_000), 'within-rate');
});

t.test('the pacer: a client with many refusals held gets the next at once', async (t) => {
  const p = new ErrorPacer({ rate: 1, burst: 1, maxWaiting: 2 });
  t.equal(p.delayFor('a', 0), 'within-rate');
  t.type(p.delayFor('a', 0), 'number');
  t.type(p.delayFor('a', 0), 'number');
  t.equal(p.delayFor('a', 0), 'too-many-waiting');
  p.sent('a');
  t.type(p.delayFor('a', 0), 'number');
});

t.test('a 429 is charged only when its client came back before the Retry-After it was given', async (t) => {
  const p = new ErrorPacer({ rate: 1 });
  // a burst of first attempts, all arrived before the first 429 was sent: none ignored a Retry-After
  t.same(
    [0, 1, 2].map((arrived) => p.ignoredRetryAfter('a', arrived, 1000, 5)),
    [false, false, false],
  );
  t.equal(p.ignoredRetryAfter('a', 6, 1000, 7), true, 'a retry 1 ms after a 429 that asked for 1 s');
  t.equal(p.ignoredRetryAfter('a', 900, 1000, 901), true, 'still within the wait the last 429 extended');
  t.equal(p.ignoredRetryAfter('b', 902, 1000, 903), false, 'another client is its own');
  // once the wait is over, a client that waited starts afresh
  t.equal(p.ignoredRetryAfter('a', 3000, 1000, 3001), false, 'came back after the wait');
  t.equal(p.ignoredRetryAfter('a', 3002, 1000, 3003), true);
  t.same(p.size, { clients: 2, held: 0 }, 'both remembered, nothing held');
  // no allowance used: that is for delayFor (a burst of 2 at a rate of 1)
  t.equal(p.delayFor('a', 3004), 'within-rate');
  t.equal(p.delayFor('a', 3004), 'within-rate');
  t.equal(p.delayFor('a', 3004), 1000);
});

t.test('the pacer remembers a bounded number of clients, and holds a bounded number of refusals', async (t) => {
  const p = new ErrorPacer({ rate: 1, burst: 1, maxHeld: 100 });
  // each client is refused twice: the second refusal is held, until 100 are held in all
  const answers = new Map<string, number>();
  for (let i = 0; i < 25_000; i++)
    for (const d of [p.delayFor(`client-${i}`, 0), p.delayFor(`client-${i}`, 0)]) {
      const k = typeof d === 'number' ? 'held' : d;
      answers.set(k, (answers.get(k) ?? 0) + 1);
    }
  t.ok(p.size.clients <= 10_000, `${p.size.clients} clients remembered`);
  t.equal(p.size.held, 100);
  t.same(Object.fromEntries(answers), { 'within-rate': 25_000, held: 100, 'too-many-waiting': 24_900 });
  // a client refused again is the most recent: forgetting takes the least recent first
  p.delayFor('client-24000', 0);
  for (let i = 0; i < 1000; i++) p.delayFor(`late-${i}`, 0);
  t.equal(p.delayFor('client-24000', 0), 'too-many-waiting', 'still remembered: its allowance is spent');
  t.equal(p.delayFor('client-15000', 0), 'within-rate', 'forgotten: a fresh allowance');
  for (let i = 0; i < 100; i++) p.sent(`client-${i}`);
  t.equal(p.size.held, 0);
  t.throws(() => new ErrorPacer({ rate: 0 }), RangeError);
});

t.test('clients are peer addresses, IPv6 ones by their /64', async (t) => {
  t.equal(clientKey('203.0.113.7'), '203.0.113.7');
  t.equal(clientKey('::ffff:203.0.113.7'), '203.0.113.7', 'IPv4-mapped');
  t.equal(clientKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  t.equal(clientKey('2001:DB8:1:2:ffff:ffff:ffff:fffe'), '2001:db8:1:2::/64', 'the same /64');
  t.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64');
  t.equal(clientKey('::1'), '0:0:0:0::/64');
  t.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  t.equal(clientKey(undefined), 'unknown');
});

t.test('which answers count as client errors', async (t) => {
  t.same([200, 204, 400, 401, 404, 413, 415, 422, 429, 500, 503].map(isClientError), [
    false,
    false,
    true,
    true,
    true,
    true,
    true,
    true,
    false,
    false,
    false,
  ]);
});

t.test('over HTTP: refusals beyond the burst are held back, successes are not, held ones hold no memory', async (t) => {
  const ctx = await startApp({ MUON_CLIENT_ERROR_RATE: '2' }); // a burst of 4, then one refusal per 500 ms
  t.teardown(() => ctx.close());
  const { app, metrics } = ctx;
  const paced = async () => (await metrics.pacedRefusals.get()).values[0]?.value ?? 0;
  const used = async () =>
    (await metrics.memoryBudget.get()).values.find((v) => v.labels.kind === 'used')?.value ?? NaN;
  const bad = () =>
    app.inject({
      method: 'POST',
      url: '/v2/models/text-recognition/infer',
      headers: { 'content-type': 'application/json' },
      payload: `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[0]}],"pad":"${' '.repeat(2 ** 20)}"}`,
    });
  for (let i = 0; i < 4; i++) t.equal((await bad()).statusCode, 400);
  t.equal(await paced(), 0, 'the burst is answered at once');

  const fifth = bad();
  while ((await paced()) === 0) await new Promise((r) => setImmediate(r));
  t.equal(await used(), 0, 'a held refusal has given back its body and tensors');
  const ok = await app.inject({
    method: 'POST',
    url: '/predict?model=language-id',
    headers: { 'content-type': 'text/plain' },
    payload: 'Bonjour tout le monde',
  });
  t.equal(ok.statusCode, 200, 'a success of the same client is answered while its refusal is held');
  const res = await fifth;
  t.equal(res.statusCode, 400);
  t.equal(res.json().code, 'MUON_ERR_INVALID_TENSOR', 'the held refusal is the same answer');
  t.equal(await paced(), 1);
  t.ok((await metrics.pacedSeconds.get()).values[0].value > 0);
});

t.test('MUON_CLIENT_ERROR_RATE=0 turns pacing off', async (t) => {
  const ctx = await startApp({ MUON_CLIENT_ERROR_RATE: '0' });
  t.teardown(() => ctx.close());
  for (let i = 0; i < 60; i++) {
    const r = await ctx.app.inject({ method: 'GET', url: '/v2/models/no-such-model' });
    t.equal(r.statusCode, 404);
  }
  t.equal((await ctx.metrics.pacedRefusals.get()).values[0]?.value ?? 0, 0);
});
