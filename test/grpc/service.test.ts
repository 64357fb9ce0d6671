import { readFileSync } from 'node:fs';
import { connect } from 'node:http2';
import path from 'node:path';
import { toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { credentials, makeGenericClientConstructor, status, type ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config.js';
import * as pb from '../../src/grpc/gen/grpc_service_pb.js';
import { GrpcEndpoint } from '../../src/grpc/server.js';
import { serviceDefinition } from '../../src/grpc/service.js';
import { createMemoryBudget } from '../../src/server/app.js';
import type { ModelConfigResponse } from '../../src/grpc/gen/grpc_service_pb.js';
import type { ImageTensor } from '../../src/preprocess/image.js';
import { metricValue } from '../helpers/app.js';
import { inferenceClient, msg, startGrpc, unaryCall } from '../helpers/grpc.js';

// The gRPC endpoint (Triton's GRPCInferenceService) against the real models, through a grpc-js client built from the
// same service definition: every RPC, ModelInfer with raw and with typed contents (answers equal to REST v2's), the
// errors and their codes, and the server still serving after each.
const TOKEN = 'grpc-test-admin-token-0123456789';
const ctx = await startGrpc({ MUON_ADMIN_TOKEN: TOKEN, MUON_GRPC_MAX_MESSAGE_BYTES: String(1024 * 1024) });
t.teardown(() => ctx.close());
const { app, repository, call } = ctx;

const line = readFileSync(path.resolve(import.meta.dirname, '../fixtures/text-lines/line-03.png'));
/** The text-orientation tensor of a real text line, as /predict preprocesses it. */
const prepared = (await repository.readyModel('text-orientation').pipeline.prepare({ kind: 'image', bytes: line }))
  .row as ImageTensor;
const shape = [1, ...prepared.dims];
const values = [...prepared.data];
const rawX = new Uint8Array(Float32Array.from(values).buffer);

type Infer = pb.ModelInferResponse;
type InferInit = MessageInitShape<typeof pb.ModelInferRequestSchema>;
const inferRaw = (over: Omit<InferInit, '$typeName'> = {}) =>
  call<typeof pb.ModelInferResponseSchema>(
    'ModelInfer',
    msg(pb.ModelInferRequestSchema, {
      modelName: 'text-orientation',
      inputs: [{ name: 'x', datatype: 'FP32', shape: shape.map(BigInt) }],
      rawInputContents: [rawX],
      ...over,
    }),
  ) as Promise<Infer>;
const floats = (bytes: Uint8Array) => [...new Float32Array(new Uint8Array(bytes).buffer)];

/** The REST v2 answer for the same tensor, to compare with. */
const http = (
  await app.inject({
    method: 'POST',
    url: '/v2/models/text-orientation/infer',
    payload: { inputs: [{ name: 'x', shape, datatype: 'FP32', data: values }] },
  })
).json();

/** Expects a call to fail with a gRPC code and our error code (in the details and the `muon-error-code` trailer). */
async function refused(t: Test, p: Promise<unknown>, code: status, muon: string, details?: RegExp) {
  const err = (await p.then(
    () => t.fail('expected an error'),
    (e: unknown) => e,
  )) as ServiceError;
  t.equal(err.code, code, `${status[code]}: ${err.details}`);
  t.equal(err.metadata?.get('muon-error-code')[0], muon);
  t.match(err.details, new RegExp(`^${muon}: `));
  if (details) t.match(err.details, details);
  return err;
}

/** The server still answers a good ModelInfer (after each refusal). */
async function stillServing(t: Test) {
  const res = await inferRaw();
  t.same(floats(res.rawOutputContents[0]), http.outputs[0].data, 'still serving');
}

t.test('health, server and model metadata', async (t) => {
  t.equal(((await call('ServerLive', msg(pb.ServerLiveRequestSchema))) as pb.ServerLiveResponse).live, true);
  t.equal(((await call('ServerReady', msg(pb.ServerReadyRequestSchema))) as pb.ServerReadyResponse).ready, true);
  const server = (await call('ServerMetadata', msg(pb.ServerMetadataRequestSchema))) as pb.ServerMetadataResponse;
  t.equal(server.name, 'muon-serve');
  t.match(server.version, /^\d+\.\d+\.\d+/);
  const ready = (name: string, version = '') =>
    call('ModelReady', msg(pb.ModelReadyRequestSchema, { name, version })) as Promise<pb.ModelReadyResponse>;
  t.equal((await ready('text-orientation')).ready, true);
  t.equal((await ready('voice-activity', '6')).ready, true);
  await refused(t, ready('nope'), status.NOT_FOUND, 'MUON_ERR_MODEL_NOT_FOUND');
  await refused(t, ready('voice-activity', '5'), status.NOT_FOUND, 'MUON_ERR_VERSION_NOT_FOUND');
  await refused(t, ready(''), status.INVALID_ARGUMENT, 'MUON_ERR_BAD_REQUEST', /model name is empty/);

  // the same metadata as GET /v2/models/{name}, shapes as int64
  const meta = (await call(
    'ModelMetadata',
    msg(pb.ModelMetadataRequestSchema, { name: 'voice-activity' }),
  )) as pb.ModelMetadataResponse;
  const rest = (await app.inject({ url: '/v2/models/voice-activity' })).json();
  const tensors = (list: pb.ModelMetadataResponse_TensorMetadata[]) =>
    list.map((x) => ({ name: x.name, datatype: x.datatype, shape: x.shape.map(Number) }));
  t.same(
    {
      name: meta.name,
      versions: meta.versions,
      platform: meta.platform,
      inputs: tensors(meta.inputs),
      outputs: tensors(meta.outputs),
    },
    rest,
  );
  await refused(
    t,
    call('ModelMetadata', msg(pb.ModelMetadataRequestSchema, { name: 'nope' })),
    status.NOT_FOUND,
    'MUON_ERR_MODEL_NOT_FOUND',
  );
});

t.test('ModelInfer with raw contents answers what REST v2 answers', async (t) => {
  const before = await metricValue(ctx.metrics, 'muon_requests_total', { model: 'text-orientation', code: '200' });
  const res = await inferRaw({ id: 'req-7' });
  t.equal(res.modelName, 'text-orientation');
  t.equal(res.modelVersion, http.model_version);
  t.equal(res.id, 'req-7');
  t.same(
    res.outputs.map((o) => [o.name, o.datatype, o.shape.map(Number), o.contents]),
    [['softmax_0.tmp_0', 'FP32', [1, 2], undefined]],
  );
  t.equal(res.rawOutputContents.length, 1);
  t.same(floats(res.rawOutputContents[0]), http.outputs[0].data, 'the same scores as REST v2');
  t.equal(
    await metricValue(ctx.metrics, 'muon_requests_total', { model: 'text-orientation', code: '200' }),
    before + 1,
    'counted with the REST requests',
  );
  // asked for by name, and typed contents asked for with binary_data_output=false
  const typed = await inferRaw({
    outputs: [{ name: 'softmax_0.tmp_0' }],
    parameters: { binary_data_output: { parameterChoice: { case: 'boolParam', value: false } } },
  });
  t.equal(typed.rawOutputContents.length, 0);
  t.same(typed.outputs[0].contents?.fp32Contents, http.outputs[0].data);
});

t.test('ModelInfer with typed contents answers with typed contents', async (t) => {
  const res = (await call(
    'ModelInfer',
    msg(pb.ModelInferRequestSchema, {
      modelName: 'text-orientation',
      inputs: [{ name: 'x', datatype: 'FP32', shape: shape.map(BigInt), contents: { fp32Contents: values } }],
    }),
  )) as Infer;
  t.equal(res.rawOutputContents.length, 0);
  t.same(res.outputs[0].contents?.fp32Contents, http.outputs[0].data, 'the same scores as REST v2');

  // INT64 through int64_contents (the VAD's sample rate, a scalar), against REST v2's JSON answer
  const vadJson = {
    inputs: [
      {
        name: 'input',
        shape: [1, 576],
        datatype: 'FP32',
        data: Array.from({ length: 576 }, (_, i) => Math.sin(i / 9)),
      },
      { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: new Array(256).fill(0) },
      { name: 'sr', shape: [], datatype: 'INT64', data: [16000] },
    ],
    outputs: [{ name: 'output' }],
  };
  const rest = (await app.inject({ method: 'POST', url: '/v2/models/voice-activity/infer', payload: vadJson })).json();
  const vad = (await call(
    'ModelInfer',
    msg(pb.ModelInferRequestSchema, {
      modelName: 'voice-activity',
      modelVersion: '6',
      inputs: [
        { name: 'input', datatype: 'FP32', shape: [1n, 576n], contents: { fp32Contents: vadJson.inputs[0].data } },
        { name: 'state', datatype: 'FP32', shape: [2n, 1n, 128n], contents: { fp32Contents: vadJson.inputs[1].data } },
        { name: 'sr', datatype: 'INT64', shape: [], contents: { int64Contents: [16000n] } },
      ],
      outputs: [{ name: 'output' }],
    }),
  )) as Infer;
  t.same(vad.outputs[0].contents?.fp32Contents, rest.outputs[0].data);
  t.same(vad.outputs[0].shape.map(Number), [1, 1]);
});

t.test('bad tensors are INVALID_ARGUMENT with MUON_ERR_INVALID_TENSOR, and the server keeps serving', async (t) => {
  const x = { name: 'x', datatype: 'FP32', shape: shape.map(BigInt) };
  const cases: [Parameters<typeof inferRaw>[0], RegExp][] = [
    [{ inputs: [{ ...x, shape: [3n, 48n, 192n] }], rawInputContents: [rawX] }, /input 'x' has shape \[-1, 3, -1, -1\]/],
    [{ inputs: [{ ...x, datatype: 'FP64' }] }, /datatype FP64 is not supported/],
    [{ inputs: [{ ...x, datatype: 'INT32' }] }, /input 'x' is float32, got int32/],
    [{ rawInputContents: [rawX.subarray(4)] }, /raw_input_contents\[0\] has 110588 bytes, not 27648 x 4/],
    [{ rawInputContents: [rawX, rawX] }, /raw_input_contents has 2 entries for 1 inputs/],
    [{ inputs: [{ ...x, contents: { fp32Contents: [1] } }] }, /both contents and raw_input_contents/],
    [
      { inputs: [{ ...x, contents: { intContents: [1] } }], rawInputContents: [] },
      /goes in contents.fp32_contents, not int_contents/,
    ],
    [
      { inputs: [{ ...x, contents: { fp32Contents: values.slice(1) } }], rawInputContents: [] },
      /has 27647 values, its shape holds 27648/,
    ],
    [
      { rawInputContents: [new Uint8Array(Float32Array.from(values, (v, i) => (i === 5 ? NaN : v)).buffer)] },
      /value 5 is not finite/,
    ],
    [{ inputs: [x, x], rawInputContents: [rawX, rawX] }, /input 'x' is given twice/],
    [{ inputs: [{ ...x, shape: [1n, -3n, 48n, 192n] }] }, /needs a "shape" of non-negative integers/],
    // a shape the data cannot fill, however large: the tensor is wrong, not the server short of memory
    [{ inputs: [{ ...x, shape: [1n, 3n, 48n, 2n ** 40n] }] }, /has 110592 bytes, not 158329674399744 x 4/],
    [{ outputs: [{ name: 'nope' }] }, /unknown output 'nope'/],
  ];
  for (const [over, details] of cases) {
    await refused(t, inferRaw(over), status.INVALID_ARGUMENT, 'MUON_ERR_INVALID_TENSOR', details);
  }
  await refused(t, inferRaw({ inputs: [], rawInputContents: [] }), status.INVALID_ARGUMENT, 'MUON_ERR_BAD_REQUEST');
  await refused(t, inferRaw({ modelName: '' }), status.INVALID_ARGUMENT, 'MUON_ERR_BAD_REQUEST');
  await stillServing(t);
});

t.test('a message that would decode into far more than its size is refused before it is decoded', async (t) => {
  const x = { name: 'x', datatype: 'FP32', shape: shape.map(BigInt) };
  // 300 empty inputs (2 bytes each on the wire), outputs, raw contents, parameters
  const many = <T>(n: number, f: (i: number) => T) => Array.from({ length: n }, (_, i) => f(i));
  await refused(
    t,
    inferRaw({ inputs: many(300, () => ({})) }),
    status.INVALID_ARGUMENT,
    'MUON_ERR_BAD_REQUEST',
    /at most 256 inputs/,
  );
  await refused(
    t,
    inferRaw({ outputs: many(300, (i) => ({ name: `o${i}` })) }),
    status.INVALID_ARGUMENT,
    'MUON_ERR_BAD_REQUEST',
    /at most 256 outputs/,
  );
  await refused(
    t,
    inferRaw({ rawInputContents: many(300, () => new Uint8Array(0)) }),
    status.INVALID_ARGUMENT,
    'MUON_ERR_BAD_REQUEST',
    /raw_input_contents/,
  );
  const params = Object.fromEntries(
    many(100, (i) => [`p${i}`, { parameterChoice: { case: 'boolParam' as const, value: true } }]),
  );
  await refused(
    t,
    inferRaw({ parameters: params }),
    status.INVALID_ARGUMENT,
    'MUON_ERR_BAD_REQUEST',
    /at most 64 parameters/,
  );
  await refused(
    t,
    inferRaw({ inputs: [{ ...x, shape: many(100, () => 1n) }] }),
    status.INVALID_ARGUMENT,
    'MUON_ERR_BAD_REQUEST',
    /dimensions/,
  );
  // 300,000 packed int64 zeros: 300 KB on the wire, a BigInt each once decoded
  await refused(
    t,
    inferRaw({
      inputs: [
        { name: 'x', datatype: 'INT64', shape: [300_000n], contents: { int64Contents: many(300_000, () => 0n) } },
      ],
      rawInputContents: [],
    }),
    status.INVALID_ARGUMENT,
    'MUON_ERR_INVALID_TENSOR',
    /send large tensors as raw_input_contents/,
  );
  // the same 300 empty inputs, unpacked wire form sent as bytes: the scan reads the wire, not a decoded message
  const c = inferenceClient(`127.0.0.1:${ctx.endpoint.port}`, { sendBytes: true });
  const wire = Buffer.from(
    toBinary(
      pb.ModelInferRequestSchema,
      msg(pb.ModelInferRequestSchema, { modelName: 'text-orientation', inputs: many(300, () => ({})) }),
    ),
  );
  await refused(
    t,
    unaryCall(c, 'ModelInfer', wire),
    status.INVALID_ARGUMENT,
    'MUON_ERR_BAD_REQUEST',
    /at most 256 inputs/,
  );
  // the same entries tagged as varints (`28 00`): protobuf-es decodes an empty input from each whatever the wire
  // type, 400,000 of them from this 800 KB message; the scan refuses the tag
  const name = Buffer.from('text-orientation');
  const smuggled = Buffer.concat([
    Buffer.from([0x0a, name.length]),
    name,
    Buffer.alloc(800_000, Buffer.from([0x28, 0])),
  ]);
  await refused(
    t,
    unaryCall(c, 'ModelInfer', smuggled),
    status.INVALID_ARGUMENT,
    'MUON_ERR_BAD_REQUEST',
    /inputs sent as wire type 0/,
  );
  // other RPCs carry small messages: a 100 KB RepositoryIndex request is refused undecoded; a repository change
  // without the token is refused before its message is decoded
  const padded = Buffer.concat([Buffer.from([0x0a, 0xa0, 0x8d, 0x06]), Buffer.alloc(100_000, 0x61)]); // field 1, 100,000 bytes
  await refused(
    t,
    unaryCall(c, 'RepositoryIndex', padded),
    status.INVALID_ARGUMENT,
    'MUON_ERR_BAD_REQUEST',
    /at most 65536/,
  );
  const err = (await unaryCall(c, 'RepositoryModelLoad', Buffer.from([0x0a, 0xff, 0xff, 0xff])).catch(
    (e: unknown) => e,
  )) as ServiceError;
  t.equal(
    err.metadata?.get('muon-error-code')[0],
    'MUON_ERR_UNAUTHORIZED',
    'the token first: the malformed message was not read',
  );
  c.close();
  await stillServing(t);
});

t.test('output parameters gRPC does not serve (classification) are refused, not ignored', async (t) => {
  await refused(
    t,
    inferRaw({
      outputs: [
        {
          name: 'softmax_0.tmp_0',
          parameters: { classification: { parameterChoice: { case: 'int64Param', value: 2n } } },
        },
      ],
    }),
    status.INVALID_ARGUMENT,
    'MUON_ERR_BAD_REQUEST',
    /classification/,
  );
});

t.test('a refused ModelInfer counts as a failure in the statistics, as in /metrics', async (t) => {
  const fails = async () =>
    Number(
      (
        (await call(
          'ModelStatistics',
          msg(pb.ModelStatisticsRequestSchema, { name: 'text-orientation' }),
        )) as pb.ModelStatisticsResponse
      ).modelStats[0].inferenceStats!.fail!.count,
    );
  const before = await fails();
  await inferRaw({ rawInputContents: [rawX.subarray(4)] }).catch(() => undefined);
  t.equal(await fails(), before + 1);
});

t.test('unknown models and versions are NOT_FOUND', async (t) => {
  await refused(t, inferRaw({ modelName: 'nope' }), status.NOT_FOUND, 'MUON_ERR_MODEL_NOT_FOUND', /'nope'/);
  await refused(t, inferRaw({ modelVersion: '99' }), status.NOT_FOUND, 'MUON_ERR_VERSION_NOT_FOUND');
  await stillServing(t);
});

t.test('a message over MUON_GRPC_MAX_MESSAGE_BYTES is RESOURCE_EXHAUSTED, refused before it is read', async (t) => {
  const big = new Uint8Array(2 * 1024 * 1024);
  const err = (await inferRaw({ rawInputContents: [big] }).catch((e: unknown) => e)) as ServiceError;
  t.equal(err.code, status.RESOURCE_EXHAUSTED, err.details);
  t.match(err.details, /larger than max/);
  await stillServing(t);
});

t.test('deadlines: one already passed is DEADLINE_EXCEEDED', async (t) => {
  const request = msg(pb.ModelInferRequestSchema, {
    modelName: 'text-orientation',
    inputs: [{ name: 'x', datatype: 'FP32', shape: shape.map(BigInt) }],
    rawInputContents: [rawX],
  });
  const err = (await unaryCall(ctx.client, 'ModelInfer', request, { deadline: Date.now() - 1000 }).catch(
    (e: unknown) => e,
  )) as ServiceError;
  t.equal(err.code, status.DEADLINE_EXCEEDED);
  // the same through the wire: a call whose grpc-timeout has run out when it arrives (no client-side shortcut)
  const session = connect(`http://127.0.0.1:${ctx.endpoint.port}`);
  const body = Buffer.from(toBinary(pb.ModelInferRequestSchema, request));
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  const trailers = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const stream = session.request({
      ':method': 'POST',
      ':path': '/inference.GRPCInferenceService/ModelInfer',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '1n',
    });
    let headers: Record<string, unknown> = {};
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (tr) => resolve({ ...headers, ...tr }));
    stream.on('error', reject);
    stream.on('close', () => resolve(headers));
    stream.resume();
    stream.end(frame);
  });
  session.close();
  t.equal(String(trailers['grpc-status']), String(status.DEADLINE_EXCEEDED));
  // a generous deadline is fine
  const ok = await unaryCall<Infer>(ctx.client, 'ModelInfer', request, { deadline: Date.now() + 60_000 });
  t.same(floats(ok.rawOutputContents[0]), http.outputs[0].data);
});

t.test('a cancelled call is CANCELLED for its client, and the server keeps serving', async (t) => {
  const c = inferenceClient(`127.0.0.1:${ctx.endpoint.port}`);
  const err = await new Promise<ServiceError>((resolve) => {
    const request = msg(pb.ModelInferRequestSchema, {
      modelName: 'text-orientation',
      inputs: [{ name: 'x', datatype: 'FP32', shape: shape.map(BigInt) }],
      rawInputContents: [rawX],
    });
    const pending = (c as unknown as Record<string, Function>).ModelInfer(request, (e: ServiceError) => resolve(e));
    pending.cancel();
  });
  c.close();
  t.equal(err.code, status.CANCELLED);
  await stillServing(t);
});

t.test('a malformed message is INVALID_ARGUMENT', async (t) => {
  const c = inferenceClient(`127.0.0.1:${ctx.endpoint.port}`, { sendBytes: true });
  await refused(
    t,
    unaryCall(c, 'ModelInfer', Buffer.from([0x0a, 0xff, 0xff, 0xff])),
    status.INVALID_ARGUMENT,
    'MUON_ERR_BAD_REQUEST',
    /ModelInferRequest message cannot be decoded/,
  );
  c.close();
  await stillServing(t);
});

t.test('RPCs the server does not implement are UNIMPLEMENTED', async (t) => {
  for (const rpc of ['SystemSharedMemoryStatus', 'CudaSharedMemoryRegister', 'TraceSetting', 'LogSettings']) {
    const input = pb.GRPCInferenceService.methods.find((m) => m.name === rpc)!.input;
    const err = (await call(rpc, msg(input)).catch((e: unknown) => e)) as ServiceError;
    t.equal(err.code, status.UNIMPLEMENTED, rpc);
  }
});

t.test('ModelConfig and ModelStatistics', async (t) => {
  const res = (await call(
    'ModelConfig',
    msg(pb.ModelConfigRequestSchema, { name: 'text-orientation' }),
  )) as ModelConfigResponse;
  t.equal(res.config?.name, 'text-orientation');
  t.equal(res.config?.platform, 'onnxruntime_onnx');
  t.same(
    res.config?.input.map((i) => i.name),
    ['x'],
  );
  t.same(
    res.config?.output.map((o) => o.name),
    ['softmax_0.tmp_0'],
  );
  await refused(
    t,
    call('ModelConfig', msg(pb.ModelConfigRequestSchema, { name: 'nope' })),
    status.NOT_FOUND,
    'MUON_ERR_MODEL_NOT_FOUND',
  );
  const stats = (await call(
    'ModelStatistics',
    msg(pb.ModelStatisticsRequestSchema, { name: 'text-orientation' }),
  )) as pb.ModelStatisticsResponse;
  t.same(
    stats.modelStats.map((s) => [s.name, s.version]),
    [['text-orientation', http.model_version]],
  );
  const all = (await call('ModelStatistics', msg(pb.ModelStatisticsRequestSchema))) as pb.ModelStatisticsResponse;
  t.ok(all.modelStats.some((s) => s.name === 'voice-activity'));
});

t.test('repository index, load and unload (with the admin token in the metadata)', async (t) => {
  const index = (await call('RepositoryIndex', msg(pb.RepositoryIndexRequestSchema))) as pb.RepositoryIndexResponse;
  t.ok(index.models.some((m) => m.name === 'language-id' && m.state === 'READY' && m.version === '1.0.10'));
  const unload = (token?: string) =>
    call('RepositoryModelUnload', msg(pb.RepositoryModelUnloadRequestSchema, { modelName: 'language-id' }), {
      metadata: token === undefined ? {} : { authorization: `Bearer ${token}` },
    });
  const load = (modelName: string, over = {}) =>
    call('RepositoryModelLoad', msg(pb.RepositoryModelLoadRequestSchema, { modelName, ...over }), {
      metadata: { authorization: `Bearer ${TOKEN}` },
    });
  await refused(t, unload(), status.UNAUTHENTICATED, 'MUON_ERR_UNAUTHORIZED');
  await refused(t, unload('wrong-token-wrong-token'), status.UNAUTHENTICATED, 'MUON_ERR_UNAUTHORIZED');
  await unload(TOKEN);
  const ready = (await call(
    'ModelReady',
    msg(pb.ModelReadyRequestSchema, { name: 'language-id' }),
  )) as pb.ModelReadyResponse;
  t.equal(ready.ready, false, 'unloaded: not ready');
  await refused(
    t,
    inferRaw({ modelName: 'language-id' }),
    status.UNAVAILABLE,
    'MUON_ERR_MODEL_NOT_READY',
    /is not ready: it is unloaded/,
  );
  const onlyReady = (await call(
    'RepositoryIndex',
    msg(pb.RepositoryIndexRequestSchema, { ready: true }),
  )) as pb.RepositoryIndexResponse;
  t.notOk(onlyReady.models.some((m) => m.name === 'language-id'));
  await refused(
    t,
    load('language-id', { parameters: { config: { parameterChoice: { case: 'stringParam', value: '{}' } } } }),
    status.INVALID_ARGUMENT,
    'MUON_ERR_BAD_REQUEST',
    /load parameters are not supported \(config\)/,
  );
  await refused(t, load('no-such-model'), status.NOT_FOUND, 'MUON_ERR_MODEL_NOT_FOUND');
  await load('language-id');
  const again = (await call(
    'ModelReady',
    msg(pb.ModelReadyRequestSchema, { name: 'language-id' }),
  )) as pb.ModelReadyResponse;
  t.equal(again.ready, true, 'loaded again');
});

t.test('TLS when HTTP has it (the same certificate), on the same repository', async (t) => {
  const tls = path.resolve(import.meta.dirname, '../fixtures/tls');
  const config = loadConfig({
    HOST: '127.0.0.1',
    MUON_GRPC_PORT: '0',
    MUON_TLS_CERT_FILE: path.join(tls, 'cert.pem'),
    MUON_TLS_KEY_FILE: path.join(tls, 'key.pem'),
  });
  const endpoint = await GrpcEndpoint.start({
    config,
    metrics: ctx.metrics,
    repository,
    budget: createMemoryBudget(config, ctx.metrics),
    logger: pino({ level: 'silent' }),
  });
  t.teardown(() => endpoint.close(1000));
  const Ctor = makeGenericClientConstructor(serviceDefinition({ rawRequests: false }), 'GRPCInferenceService');
  const secure = new Ctor(
    `127.0.0.1:${endpoint.port}`,
    credentials.createSsl(readFileSync(path.join(tls, 'cert.pem'))),
  );
  t.teardown(() => secure.close());
  const res = await unaryCall<Infer>(
    secure,
    'ModelInfer',
    msg(pb.ModelInferRequestSchema, {
      modelName: 'text-orientation',
      inputs: [{ name: 'x', datatype: 'FP32', shape: shape.map(BigInt) }],
      rawInputContents: [rawX],
    }),
  );
  t.same(floats(res.rawOutputContents[0]), http.outputs[0].data, 'served over TLS, certificate verified');
  const plain = inferenceClient(`127.0.0.1:${endpoint.port}`);
  const err = (await unaryCall(plain, 'ServerLive', msg(pb.ServerLiveRequestSchema), {
    deadline: Date.now() + 5000,
  }).catch((e: unknown) => e)) as ServiceError;
  plain.close();
  t.equal(err.code, status.UNAVAILABLE, 'a plaintext client is not served');
});
