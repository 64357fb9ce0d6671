import t from 'tap';
import { checkFeeds, graphRejection } from '../../src/models/tensors.js';
import type { TensorInfo } from '../../src/models/session.js';

const f32 = (dims: number[]) => ({
  type: 'float32' as const,
  data: new Float32Array(dims.reduce((a, b) => a * b, 1)),
  dims,
});

t.test('checkFeeds: a dimension the graph names is one size in every input; empty tensors are refused', async (t) => {
  const inputs: TensorInfo[] = [
    { name: 'a', type: 'float32', shape: ['batch', 4] },
    { name: 'b', type: 'float32', shape: [2, 'batch', 'free'] },
  ];
  const outputs: TensorInfo[] = [{ name: 'y', type: 'float32', shape: ['batch', 1] }];
  const solo = () => 'solo';
  t.same(checkFeeds({ a: f32([3, 4]), b: f32([2, 3, 7]) }, inputs, outputs, solo), { key: 'solo', batch: 3 });
  t.throws(() => checkFeeds({ a: f32([3, 4]), b: f32([2, 5, 7]) }, inputs, outputs, solo), {
    code: 'MUON_ERR_INVALID_TENSOR',
    message: /input 'b' axis 1 \('batch'\) is 5, but 3 in input 'a'/,
  });
  t.throws(() => checkFeeds({ a: f32([3, 4]), b: f32([2, 3, 0]) }, inputs, outputs, solo), {
    message: /input 'b' is empty \(axis 2 has size 0\)/,
  });
});

t.test('graphRejection: the innermost failing node, not the machine failing', async (t) => {
  const nested =
    "Non-zero status code returned while running If node. Name:'_if' Status Message: Non-zero status code returned while running LSTM node. Name:'lstm' Status Message: Input initial_h must have shape {1,1,128}. Actual:{1,3,128}";
  t.equal(graphRejection(new Error(nested)), 'LSTM: Input initial_h must have shape {1,1,128}. Actual:{1,3,128}');
  t.equal(
    graphRejection(
      new Error(
        "Non-zero status code returned while running Conv node. Name:'c' Status Message: Failed to allocate memory",
      ),
    ),
    undefined,
  );
  t.equal(graphRejection(new Error('worker exited with code 1')), undefined);
  t.equal(graphRejection('not an error'), undefined);
});
