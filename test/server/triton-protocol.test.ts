import t from 'tap';
import { InferenceStatistics } from '../../src/inference-stats.js';
import { bytesTensor, classify } from '../../src/protocol/triton-classification.js';
import { modelConfigJson, type ConfigSource } from '../../src/protocol/triton-config.js';
import { modelStatisticsJson } from '../../src/protocol/triton-stats.js';
import { responseEncoding } from '../../src/server/content-encoding.js';
import { floatToHalf } from '../../src/onnx/float16.js';

// The protocol-neutral parts of Triton's extensions, without a server: the configuration of a model on the GPU,
// the classification strings, the statistics' JSON and the Accept-Encoding choice.

const source = (over: Partial<Record<string, unknown>> = {}): ConfigSource =>
  ({
    name: 'm',
    task: 'image-classification',
    timeoutMs: 2500,
    manifest: { runtime: { thread: 'worker' } },
    session: {
      provider: 'cuda',
      inputs: [{ name: 'in', type: 'float16', shape: ['batch', 3, 'h', 'w'] }],
      outputs: [{ name: 'out', type: 'int64', shape: ['batch', 10] }],
    },
    batcher: {
      options: {
        maxBatchSize: 16,
        preferredBatchSizes: [4, 8],
        maxQueueDelayMs: 2.5,
        maxQueueSize: 64,
        maxInFlightBatches: 3,
      },
    },
    ...over,
  }) as unknown as ConfigSource;

t.test('configuration of a batched model on the GPU, in numbered versions', async (t) => {
  t.same(modelConfigJson(source(), ['1', '3']), {
    name: 'm',
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime',
    version_policy: { specific: { versions: [1, 3] } },
    max_batch_size: 16,
    input: [{ name: 'in', data_type: 'TYPE_FP16', dims: [3, -1, -1] }],
    output: [{ name: 'out', data_type: 'TYPE_INT64', dims: [10] }],
    dynamic_batching: {
      preferred_batch_size: [4, 8],
      max_queue_delay_microseconds: 2500,
      default_queue_policy: {
        timeout_action: 'REJECT',
        default_timeout_microseconds: 2_500_000,
        allow_timeout_override: true,
        max_queue_size: 64,
      },
    },
    instance_group: [{ name: 'm', kind: 'KIND_GPU', count: 3, gpus: [0] }],
    parameters: { task: { string_value: 'image-classification' } },
  });
  // a graph with a fixed axis 0: max_batch_size 0, whole dims; a type Triton has no name for: TYPE_INVALID
  const fixed = modelConfigJson(
    source({
      session: {
        provider: 'cpu',
        inputs: [{ name: 'in', type: 'float32', shape: [1, 3] }],
        outputs: [{ name: 'out', type: 'weird', shape: [1] }],
      },
    }),
    ['2.0'],
  );
  t.match(fixed, {
    max_batch_size: 0,
    version_policy: { latest: { num_versions: 1 } },
    input: [{ dims: [1, 3] }],
    output: [{ data_type: 'TYPE_INVALID', dims: [1] }],
  });
});

t.test('classification strings: Triton format, ties to the lower index, labels only when one per class', async (t) => {
  const f32 = { type: 'float32' as const, data: Float32Array.from([0.25, 0.5, 0.25, 1, 0, 2]), dims: [2, 3] };
  t.same(classify('o', f32, 2, ['a', 'b', 'c'], true), {
    dims: [2, 2],
    data: ['0.500000:1:b', '0.250000:0:a', '2.000000:2:c', '1.000000:0:a'],
  });
  t.same(classify('o', f32, 1, ['only two', 'labels'], true).data, ['0.500000:1', '2.000000:2']);
  // integers as C's std::to_string(int) writes them; a model not batched on axis 0: the whole output is one row
  const int = { type: 'int64' as const, data: BigInt64Array.from([3n, -7n, 9n]), dims: [3] };
  t.same(classify('o', int, 3, [], false), { dims: [3], data: ['9:2', '3:0', '-7:1'] });
  t.same(classify('o', f32, 2, [], false), { dims: [2], data: ['2.000000:5', '1.000000:3'] });
  const half = {
    type: 'float16' as const,
    data: Uint16Array.from([floatToHalf(-1.5), floatToHalf(0.5)]),
    dims: [1, 2],
  };
  t.same(classify('o', half, 1, [], true).data, ['0.500000:1']);
  // more classes asked for than there are: all of them, as Triton
  t.same(classify('o', f32, 4, [], true), {
    dims: [2, 3],
    data: ['0.500000:1', '0.250000:0', '0.250000:2', '2.000000:2', '1.000000:0', '0.000000:1'],
  });
  const bool = { type: 'bool' as const, data: Uint8Array.from([1]), dims: [1] };
  t.throws(() => classify('o', bool, 1, [], true), { code: 'MUON_ERR_BAD_REQUEST' });
  const bytes = bytesTensor(['ab', '', 'é']);
  t.same([...bytes], [2, 0, 0, 0, 97, 98, 0, 0, 0, 0, 2, 0, 0, 0, 0xc3, 0xa9]);
});

t.test('statistics JSON: batch sizes in order, compute_input and compute_output at 0 ns', async (t) => {
  const s = new InferenceStatistics();
  s.batchStarted('m', '1', 4, [1, 2, 3, 4]);
  s.batchFinished('m', '1', 4, 10);
  s.batchStarted('m', '1', 1, [0.5]);
  s.batchFinished('m', '1', 1, 2);
  s.answered('m', '1', 200, 0.02);
  s.answered('m', '1', 429, 0.001);
  const [m] = modelStatisticsJson([{ name: 'm', version: '1', stats: s.of('m', '1') }]).model_stats;
  t.match(m, {
    name: 'm',
    version: '1',
    inference_count: 5,
    execution_count: 2,
    inference_stats: {
      success: { count: 1, ns: 20_000_000 },
      fail: { count: 1, ns: 1_000_000 },
      queue: { count: 5, ns: 10_500_000 },
      compute_input: { count: 5, ns: 0 },
      compute_infer: { count: 5, ns: 42_000_000 },
      compute_output: { count: 5, ns: 0 },
    },
    batch_stats: [
      { batch_size: 1, compute_infer: { count: 1, ns: 2_000_000 }, compute_input: { count: 1, ns: 0 } },
      { batch_size: 4, compute_infer: { count: 1, ns: 10_000_000 }, compute_output: { count: 1, ns: 0 } },
    ],
  });
  t.ok(m.last_inference > 0);
  t.equal(modelStatisticsJson([{ name: 'n', version: '', stats: s.of('n', '') }]).model_stats[0].last_inference, 0);
});

t.test('Accept-Encoding: gzip first, then deflate, q=0 refuses, * takes any', async (t) => {
  t.equal(responseEncoding(undefined), undefined);
  t.equal(responseEncoding('deflate, gzip'), 'gzip');
  t.equal(responseEncoding('gzip;q=0, deflate'), 'deflate');
  t.equal(responseEncoding('GZIP'), 'gzip');
  t.equal(responseEncoding('br, identity'), undefined);
  t.equal(responseEncoding('*'), 'gzip');
  t.equal(responseEncoding('*;q=0'), undefined);
  t.equal(responseEncoding('gzip;q=abc'), undefined);
});
