import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { ImageTensor } from '../../src/preprocess/image.js';
import { metricValue, startApp } from '../helpers/app.js';

// Triton's model configuration and statistics extensions, its error body under /v2, and the extensions /v2 lists,
// against the real models.
const ctx = await startApp();
t.teardown(() => ctx.close());
const { app, repository, metrics } = ctx;
const line = readFileSync(path.resolve(import.meta.dirname, '../fixtures/text-lines/line-03.png'));
const prepared = (await repository.readyModel('text-orientation').pipeline.prepare({ kind: 'image', bytes: line }))
  .row as ImageTensor;
const x = { name: 'x', shape: [1, ...prepared.dims], datatype: 'FP32', data: [...prepared.data] };
const infer = (payload: object) => app.inject({ method: 'POST', url: '/v2/models/text-orientation/infer', payload });

t.test('/v2 lists the extensions served', async (t) => {
  const { extensions } = (await app.inject({ url: '/v2' })).json();
  t.same(extensions, ['binary_tensor_data', 'classification', 'model_repository', 'model_configuration', 'statistics']);
});

t.test('model configuration: what serves, as Triton ModelConfig JSON', async (t) => {
  const res = await app.inject({ url: '/v2/models/text-orientation/config' });
  t.equal(res.statusCode, 200);
  const m = repository.readyModel('text-orientation');
  const o = m.batcher.options;
  t.same(res.json(), {
    name: 'text-orientation',
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime',
    version_policy: { latest: { num_versions: 1 } },
    max_batch_size: o.maxBatchSize,
    input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [3, -1, -1] }],
    output: [{ name: 'softmax_0.tmp_0', data_type: 'TYPE_FP32', dims: [2] }],
    dynamic_batching: {
      preferred_batch_size: [...o.preferredBatchSizes],
      max_queue_delay_microseconds: o.maxQueueDelayMs * 1000,
      default_queue_policy: {
        timeout_action: 'REJECT',
        default_timeout_microseconds: m.timeoutMs * 1000,
        allow_timeout_override: true,
        max_queue_size: 256,
      },
    },
    instance_group: [{ name: 'text-orientation', kind: 'KIND_CPU', count: o.maxInFlightBatches }],
    parameters: { task: { string_value: 'image-classification' } },
  });
  t.same((await app.inject({ url: '/v2/models/text-orientation/versions/2.0/config' })).json(), res.json());
  // a graph without a free batch axis (the VAD batches its state on axis 1): max_batch_size 0, dims whole
  const vad = (await app.inject({ url: '/v2/models/voice-activity/config' })).json();
  t.equal(vad.max_batch_size, 0);
  t.same(vad.input[2], { name: 'sr', data_type: 'TYPE_INT64', dims: [] });
  t.same(vad.input[1], { name: 'state', data_type: 'TYPE_FP32', dims: [2, -1, 128] });
  // a numbered version folder is an integer version: the versions served
  t.same(vad.version_policy, { specific: { versions: [6] } });
  t.equal(vad.instance_group[0].count, 1, 'its file graph runs on the event loop: one session');
});

t.test('configuration and statistics of a model that is not there: the protocol error body', async (t) => {
  for (const url of [
    '/v2/models/nope/config',
    '/v2/models/nope/stats',
    '/v2/models/nope/versions/1/config',
    '/v2/models/nope/versions/1/stats',
  ]) {
    const res = await app.inject({ url });
    t.equal(res.statusCode, 404, url);
    t.same(res.json(), { error: "Model 'nope' is not in the repository", code: 'MUON_ERR_MODEL_NOT_FOUND' }, url);
  }
  const version = await app.inject({ url: '/v2/models/text-orientation/versions/9/stats' });
  t.equal(version.statusCode, 404);
  t.same(version.json(), { error: "Model 'text-orientation' has no version '9'", code: 'MUON_ERR_VERSION_NOT_FOUND' });
  const tooLong = await app.inject({ url: `/v2/models/${'a'.repeat(300)}/config` });
  t.equal(tooLong.statusCode, 400);
  t.match(tooLong.json(), { error: String, code: 'MUON_ERR_BAD_REQUEST' });
});

t.test('a route missed under /v2 answers the protocol error body, which tritonclient reads', async (t) => {
  const res = await app.inject({ url: '/v2/models/text-orientation/nonsense' });
  t.equal(res.statusCode, 404);
  t.same(res.json(), {
    error: 'Route GET /v2/models/text-orientation/nonsense not found',
    code: 'MUON_ERR_NOT_FOUND',
  });
  const wrongMethod = await app.inject({ method: 'DELETE', url: '/v2/models/stats' });
  t.same(wrongMethod.json(), { error: 'Route DELETE /v2/models/stats not found', code: 'MUON_ERR_NOT_FOUND' });
  // elsewhere our own body stays
  t.match((await app.inject({ url: '/v1/nonsense' })).json(), {
    statusCode: 404,
    code: 'MUON_ERR_NOT_FOUND',
    error: 'Not Found',
    message: 'Route GET /v1/nonsense not found',
  });
});

t.test('statistics count what /metrics counts', async (t) => {
  const before = (await app.inject({ url: '/v2/models/text-orientation/stats' })).json().model_stats[0];
  t.match(before, { name: 'text-orientation', version: '2.0' });
  const started = Date.now();
  const answers = await Promise.all(Array.from({ length: 6 }, () => infer({ inputs: [x] })));
  t.ok(answers.every((a) => a.statusCode === 200));
  t.equal((await infer({ inputs: [{ ...x, shape: [1, 3, 48] }] })).statusCode, 400, 'one refused');
  const res = await app.inject({ url: '/v2/models/text-orientation/stats' });
  t.equal(res.statusCode, 200);
  const s = res.json().model_stats;
  t.equal(s.length, 1);
  const now = s[0];
  const m = { model: 'text-orientation' };
  // since start (the startup warm-up runs outside the batcher: in neither): compare the totals
  t.equal(now.execution_count, await metricValue(metrics, 'muon_batch_size_count', m));
  t.equal(now.inference_count, await metricValue(metrics, 'muon_batch_size_sum', m));
  t.equal(now.inference_count - before.inference_count, 6, 'each request is one row');
  t.ok(now.execution_count - before.execution_count >= 1 && now.execution_count - before.execution_count <= 6);
  t.equal(now.inference_stats.queue.count, await metricValue(metrics, 'muon_queue_wait_seconds_count', m));
  const queueSeconds = await metricValue(metrics, 'muon_queue_wait_seconds_sum', m);
  t.ok(Math.abs(now.inference_stats.queue.ns / 1e9 - queueSeconds) < 1e-6, 'queue time agrees');
  const inferSeconds = await metricValue(metrics, 'muon_inference_duration_seconds_sum', m);
  const batchNs = now.batch_stats.reduce(
    (n: number, b: { compute_infer: { ns: number } }) => n + b.compute_infer.ns,
    0,
  );
  t.ok(Math.abs(batchNs / 1e9 - inferSeconds) < 1e-6, 'batch compute time agrees');
  const batches = now.batch_stats.reduce(
    (n: number, b: { compute_infer: { count: number } }) => n + b.compute_infer.count,
    0,
  );
  t.equal(batches, now.execution_count);
  t.equal(now.inference_stats.compute_infer.count, now.inference_count);
  t.equal(now.inference_stats.compute_input.count, now.inference_count);
  const ok = await metricValue(metrics, 'muon_requests_total', { ...m, code: '200' });
  const refused = await metricValue(metrics, 'muon_requests_total', { ...m, code: '400' });
  t.equal(now.inference_stats.success.count, ok);
  t.equal(now.inference_stats.fail.count, refused);
  t.equal(now.inference_stats.success.count - before.inference_stats.success.count, 6);
  t.equal(now.inference_stats.fail.count - before.inference_stats.fail.count, 1);
  t.ok(now.inference_stats.success.ns > before.inference_stats.success.ns);
  t.ok(now.last_inference >= started && now.last_inference <= Date.now());
  // a /predict request counts for the model too (same batcher, same metrics)
  const predict = await app.inject({
    method: 'POST',
    url: '/predict?model=text-orientation',
    headers: { 'content-type': 'image/png' },
    payload: line,
  });
  t.equal(predict.statusCode, 200);
  const after = (await app.inject({ url: '/v2/models/text-orientation/versions/2.0/stats' })).json().model_stats[0];
  t.equal(after.inference_stats.success.count, now.inference_stats.success.count + 1);
  t.equal(after.inference_count, now.inference_count + 1);
  // every served model, each version once
  const all = (await app.inject({ url: '/v2/models/stats' })).json().model_stats;
  const served = repository.list().flatMap((st) => (st.state === 'READY' ? [...st.versions.keys()] : []));
  t.equal(all.length, served.length);
  t.ok(all.some((e: { name: string }) => e.name === 'voice-activity'));
});
