/**
 * The handler watchdog (src/server/connection.ts) without HTTP: requests it watches are answered with its timeout
 * once their handler has not answered in time; forgotten ones never are, and it keeps no reference to them.
 */
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { HandlerWatchdog } from '../../src/server/connection.js';

/** A request and its reply, as far as the watchdog reads them. */
function request(name: string) {
  const raw = { headersSent: false, destroyed: false };
  const reply = { sent: false, raw } as unknown as FastifyReply & { sent: boolean };
  return { req: { id: name } as unknown as FastifyRequest, reply };
}

/** Waits (at most 5 s) until `done()` holds. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await sleep(10);
}

t.test('a forgotten request is never timed out; one not answered is, even behind answered ones', async (t) => {
  const timedOut: string[] = [];
  const watchdog = new HandlerWatchdog(40, (req) => timedOut.push(String(req.id)));
  t.teardown(() => watchdog.stop());
  const [a, b, c] = ['a', 'b', 'c'].map(request);
  watchdog.watch(a.req, a.reply);
  watchdog.watch(b.req, b.reply);
  watchdog.watch(c.req, c.reply);
  // answered out of order: c first, then a; b never
  watchdog.forget(c.reply);
  watchdog.forget(a.reply);
  await until(() => timedOut.length > 0);
  await sleep(60); // a few more sweeps: nothing else is timed out
  t.same(timedOut, ['b']);
  // forgetting a request twice, or one the watchdog never saw, is harmless
  watchdog.forget(a.reply);
  watchdog.forget(request('d').reply);
});

t.test('a request already answered by someone else is not answered again', async (t) => {
  const timedOut: string[] = [];
  const watchdog = new HandlerWatchdog(20, (req) => timedOut.push(String(req.id)));
  t.teardown(() => watchdog.stop());
  const sent = request('sent');
  const gone = request('gone');
  watchdog.watch(sent.req, sent.reply);
  watchdog.watch(gone.req, gone.reply);
  sent.reply.sent = true;
  (gone.reply.raw as { destroyed: boolean }).destroyed = true;
  const late = request('late');
  await sleep(60);
  watchdog.watch(late.req, late.reply);
  await until(() => timedOut.length > 0);
  t.same(timedOut, ['late'], 'only the request nobody answered');
});

t.test('the watchdog lets go of the requests it watched once they are answered', async (t) => {
  // a request forgotten while an older one is still watched stays in the watchdog's list until the older one
  // leaves it, but only as an emptied entry: its request and reply can be collected at once
  const watchdog = new HandlerWatchdog(60_000, () => t.fail('nothing times out here'));
  t.teardown(() => watchdog.stop());
  const slow = request('slow');
  watchdog.watch(slow.req, slow.reply);
  let collected = false;
  const registry = new FinalizationRegistry(() => (collected = true));
  (() => {
    const quick = request('quick');
    watchdog.watch(quick.req, quick.reply);
    watchdog.forget(quick.reply);
    registry.register(quick.req, 'quick');
  })();
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 20 && !collected; i++) {
    gc();
    await sleep(10);
  }
  t.ok(collected, 'the answered request was collected while an older one is still watched');
});

t.test('behind a long request, answered ones do not pile up', async (t) => {
  const watchdog = new HandlerWatchdog(60_000, () => t.fail('nothing times out here'));
  t.teardown(() => watchdog.stop());
  const long = request('long');
  watchdog.watch(long.req, long.reply);
  for (let i = 0; i < 100_000; i++) {
    const r = request(`r${i}`);
    watchdog.watch(r.req, r.reply);
    watchdog.forget(r.reply);
  }
  t.ok(watchdog.held <= 2 * 1024 + 2, `held ${watchdog.held} entries after 100,000 answered behind one`);
  watchdog.forget(long.reply);
  t.equal(watchdog.held, 0, 'nothing once the long one is answered');
});
