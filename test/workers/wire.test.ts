import { MessageChannel } from 'node:worker_threads';
import t from 'tap';
import { MOVE_BYTES, postToLoop } from '../../src/workers/wire.js';

// What a worker's answer gives up when it is posted to the event loop: small buffers are copied (a moved one would
// cost the loop a mark-compact), large ones move (a copy would double them until both threads collect).

t.test('small buffers are copied, large ones move, views of a larger buffer are copied', async (t) => {
  const { port1, port2 } = new MessageChannel();
  t.teardown(() => port1.close());
  const small = new Float32Array(1024);
  const large = new Uint8Array(MOVE_BYTES);
  const whole = new Uint8Array(2 * MOVE_BYTES);
  const view = whole.subarray(0, MOVE_BYTES);
  large[7] = 42;
  const got = new Promise<{ result: { small: Float32Array; nested: { large: Uint8Array }; view: Uint8Array } }>(
    (resolve) => port2.once('message', resolve),
  );
  postToLoop(port1, { id: 1, ok: true, result: { small, nested: { large }, view } });
  const { result } = await got;
  port2.close();
  t.equal(small.length, 1024, "the small one is the sender's still");
  t.equal(large.length, 0, 'the large one moved (detached at the sender)');
  t.equal(whole.length, 2 * MOVE_BYTES, 'a view of a larger buffer is copied, its buffer kept');
  t.equal(result.small.length, 1024);
  t.equal(result.nested.large.length, MOVE_BYTES);
  t.equal(result.nested.large[7], 42);
  t.equal(result.view.length, MOVE_BYTES);
});
