import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static } from 'typebox';
import { serverInfo } from '../../config.js';
import { Errors } from '../../errors.js';
import type { LoadedModel } from '../../models/repository.js';
import type { App, RouteDeps } from '../app.js';
import { carriesBody, compress, inflatedBody, requestEncoding, responseEncoding } from '../content-encoding.js';
import { errorHandler } from '../error-mapping.js';
import { batchedOnAxis0 } from '../../protocol/triton-config.js';
import { Binary, DOC_ONLY, type DocOnly } from '../openapi.js';
import { abortOnClose, requestTimeoutMs, trackRequests } from '../request-metrics.js';
import {
  checkRequestedOutputs,
  declaredTensorBytes,
  decodeInferRequest,
  encodeInferBody,
  jsonElements,
  jsonHeaderBytes,
  parseInferBody,
  requestedOutputs,
  sentOutputs,
  type InferRequest,
} from '../../protocol/v2-codec.js';
import { datatypeOf } from '../../protocol/v2-tensors.js';
import { inferAnswer, inferBody } from '../../workers/ops.js';
import { checkAdminToken, inferDecoded, loadModel, modelMetadata } from '../v2-service.js';

/**
 * JSON headers from this size on are parsed and decoded on a task worker: the 55 KB JSON of one zero-filled
 * 3 x 48 x 192 float tensor takes 1.9 ms on the event loop, the 546 KB of the same tensor with random values 6.2 ms;
 * a binary body's small header stays here, and so do small JSON tensors, for which the hop costs more.
 */
export const OFF_LOOP_JSON_BYTES = 32 * 1024;

/**
 * Answers with this many JSON numbers or more are written on a task worker (about 300 KB of JSON, a few
 * milliseconds): an output of millions of numbers (a recognizer's scores for a 14,000-pixel line) took seconds of the
 * event loop, and health probes failed meanwhile.
 */
export const OFF_LOOP_JSON_ELEMENTS = 16_384;

/** Bytes a number of a JSON answer takes while it is written: an array element (8), its text and its bytes in the body (about 20 each). */
const JSON_NUMBER_BYTES = 48;

/**
 * What parsing a JSON body holds at most, per byte of JSON: the text, the parsed tree (a number in an array takes
 * 8-16 bytes for its 2 or more characters), the flattened array and the typed array.
 */
const PARSE_BYTES_PER_JSON_BYTE = 12;

/** The path of a model's routes: its name, and the version where the path names one. */
/** Path parameters of the unversioned and versioned v2 routes (a path declares exactly its own). */
export const Named = Type.Object({ name: Type.String({ maxLength: 256 }) });
export const Versioned = Type.Object({
  name: Type.String({ maxLength: 256 }),
  version: Type.String({ maxLength: 64 }),
});
/** A v2 route's path parameters, unversioned or versioned. */
export type Params = Static<typeof Named> & { version?: string };

const TensorMetadata = Type.Object({
  name: Type.String(),
  datatype: Type.String(),
  shape: Type.Array(Type.Integer({ description: '-1 for a dynamic dimension' })),
});
const ModelMetadata = Type.Object({
  name: Type.String(),
  versions: Type.Array(Type.String()),
  platform: Type.String(),
  inputs: Type.Array(TensorMetadata),
  outputs: Type.Array(TensorMetadata),
});

/**
 * Triton's protocol extensions served: binary tensors, classification and compression (here and in the codec),
 * repository load/unload (here), model configuration and statistics (triton.ts).
 */
export const TRITON_EXTENSIONS = [
  'binary_tensor_data',
  'classification',
  'model_repository',
  'model_configuration',
  'statistics',
];

/** The header that says how long the JSON part of a body with binary tensor data is (Triton's extension). */
const HEADER_LENGTH = 'inference-header-content-length';

/** An infer request's JSON (or the JSON header of a binary body), for the OpenAPI document: the codec checks it. */
const InferRequest = Type.Object({
  id: Type.Optional(Type.String()),
  parameters: Type.Optional(
    Type.Object({ binary_data_output: Type.Optional(Type.Boolean({ description: 'every output as binary data' })) }),
  ),
  inputs: Type.Array(
    Type.Object({
      name: Type.String(),
      shape: Type.Array(Type.Integer()),
      datatype: Type.Unsafe<string>({ type: 'string', enum: Object.values(datatypeOf) }),
      data: Type.Optional(
        Type.Array(Type.Unknown(), { description: 'the elements, flat (row-major) or nested; absent for binary data' }),
      ),
      parameters: Type.Optional(
        Type.Object({
          binary_data_size: Type.Optional(Type.Integer({ description: 'bytes of this input in the binary part' })),
        }),
      ),
    }),
  ),
  outputs: Type.Optional(
    Type.Array(
      Type.Object({
        name: Type.String(),
        parameters: Type.Optional(Type.Object({ binary_data: Type.Optional(Type.Boolean()) })),
      }),
    ),
  ),
});

/** The bodies infer reads and the header of the binary form: documented only (the handler decodes the bytes). */
const inferDocs: DocOnly = {
  body: {
    content: {
      'application/json': { schema: InferRequest },
      'application/octet-stream': {
        schema: {
          ...Binary,
          description: `the JSON request (${HEADER_LENGTH} bytes), then the inputs' binary data in the order listed`,
        },
      },
    },
  },
  headers: Type.Object({
    [HEADER_LENGTH]: Type.Optional(
      Type.Integer({ minimum: 0, description: 'bytes of JSON at the start of a body with binary tensor data' }),
    ),
  }),
};

/**
 * The Open Inference Protocol (KServe v2) over REST: server and model metadata, model readiness, and `infer` with
 * JSON tensors or Triton's binary tensor data extension. Raw tensors skip pre- and post-processing but queue on the
 * model's own batcher, next to `/predict` requests. Errors use the protocol's body, `{"error": "..."}`, plus our
 * stable `code`. (`/v2/health/live|ready` are in health.ts.)
 */
export async function v2Routes(app: App, { repository, metrics, config, budget }: RouteDeps): Promise<void> {
  const { workers } = repository;
  // infer bodies are JSON, or a JSON header followed by binary data: read them whole, decode in the handler
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  // a body sent with Content-Encoding gzip or deflate (tritonclient's request_compression_algorithm) is inflated as
  // it arrives, within the body limit and the memory budget
  app.addHook('preParsing', (req, _reply, payload, done) => {
    // (only an infer body has an encoding: a GET, a HEAD or an empty POST passes whatever it says)
    if (req.method !== 'POST' || !carriesBody(req)) return done(null, payload);
    try {
      const encoding = requestEncoding(req);
      done(null, encoding ? inflatedBody(req, payload, encoding, config.maxBodyBytes, budget) : payload);
    } catch (err) {
      done(err as Error);
    }
  });
  app.setErrorHandler(errorHandler('v2')); // the protocol's error body, with our code
  const track = trackRequests(app, metrics, false); // infer requests only, not metadata and readiness reads

  /** The serving model of a name, in the version asked for when the path names one. */
  const model = (p: Params): LoadedModel => repository.readyModel(p.name, p.version);

  app.get(
    '/v2',
    {
      schema: {
        tags: ['v2'],
        summary: 'Server metadata: name, version, extensions, memory budget',
        response: {
          200: Type.Object({
            name: Type.String(),
            version: Type.String(),
            extensions: Type.Array(Type.String()),
            memory_budget: Type.Object({
              limit_bytes: Type.Integer(),
              used_bytes: Type.Integer(),
              source: Type.String({ description: 'MUON_MEMORY_BUDGET_BYTES, cgroup or ram' }),
            }),
          }),
        },
      },
    },
    async () => ({
      ...serverInfo,
      extensions: TRITON_EXTENSIONS,
      memory_budget: { limit_bytes: budget.limit, used_bytes: budget.used, source: budget.source },
    }),
  );

  const metadata = async (req: FastifyRequest<{ Params: Params }>) => modelMetadata(repository, model(req.params));
  const metadataSchema = { tags: ['v2'], response: { 200: ModelMetadata } };
  app.get(
    '/v2/models/:name',
    { schema: { ...metadataSchema, summary: 'Model metadata: inputs, outputs, versions', params: Named } },
    metadata,
  );
  app.get(
    '/v2/models/:name/versions/:version',
    { schema: { ...metadataSchema, summary: 'Model metadata of one version', params: Versioned } },
    metadata,
  );

  // ready: 200 when the model (in that version) serves, else the error that says why (404 unknown, 503 loading)
  const ready = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    model(req.params);
    return reply.code(200).send();
  };
  const readySchema = {
    tags: ['v2'],
    [DOC_ONLY]: { response: { 200: { type: 'null', description: 'ready (no body)' } } } satisfies DocOnly,
  };
  app.get(
    '/v2/models/:name/ready',
    { schema: { ...readySchema, summary: 'Model readiness: 200 when it serves', params: Named } },
    ready,
  );
  app.get(
    '/v2/models/:name/versions/:version/ready',
    { schema: { ...readySchema, summary: 'Readiness of one model version', params: Versioned } },
    ready,
  );

  const infer = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const m = model(req.params);
    track.model(req, m.name, m.version);
    if (!Buffer.isBuffer(req.body) || req.body.length === 0)
      throw new Errors.MISSING_INPUT('the request body is empty');
    const raw = req.headers[HEADER_LENGTH];
    const headerLength = raw === undefined ? undefined : Number(raw);
    // a header length that is not within the body is refused by the parser: charged as the whole body meanwhile
    const jsonBytes = jsonHeaderBytes(req.body.length, headerLength) ?? req.body.length;
    let request: InferRequest;
    if (jsonBytes < OFF_LOOP_JSON_BYTES) {
      const body = parseInferBody(req.body, headerLength);
      // outputs the graph cannot give are refused before any tensor data is walked
      checkRequestedOutputs(requestedOutputs(body), m.session.outputs);
      // the tensors, admitted from their declared shapes before their data is walked (twice: the decoded arrays,
      // and the batch they are stacked into or the runtime's copy)
      req.holdings.add(await budget.acquire(2 * declaredTensorBytes(body), 'the input tensors'));
      request = decodeInferRequest(body);
    } else {
      // a large JSON header is parsed and walked on a task worker: what parsing holds there (the text, the JSON
      // tree, the arrays) is admitted first from the body's size, until the decoded tensors are admitted from their
      // declared shapes; tensors declaring more than the whole budget are refused from their shapes before their
      // data is walked
      const parsing = await budget.acquire(
        Math.min(budget.limit, PARSE_BYTES_PER_JSON_BYTE * jsonBytes),
        'parsing the JSON tensors',
      );
      try {
        const maxTensorBytes = budget.limit / 2;
        // the body moves to the worker rather than being copied (nothing here reads it again)
        const decoded = await workers.run(
          inferBody,
          { body: req.body, headerLength, maxTensorBytes },
          { move: [req.body] },
        );
        checkRequestedOutputs(decoded.outputs, m.session.outputs);
        req.holdings.add(await budget.acquire(2 * decoded.declaredBytes, 'the input tensors'));
        request = decoded.request!; // present: tensors declaring more than the whole budget were refused (413)
      } finally {
        parsing.release();
      }
    }
    // looked up again after the wait for memory (a reload may have swapped the model), and handed to it at once
    const { model: serving, outputs } = await inferDecoded(
      repository,
      {
        ...req.params,
        arrival: track.arrival(req),
        timeoutMs: (m) => requestTimeoutMs(req, m),
        signal: abortOnClose(reply),
        onModel: (m) => track.model(req, m.name, m.version),
      },
      request,
    );
    const answer = {
      model: {
        name: serving.name,
        version: serving.version,
        labels: serving.labels,
        batchedOnAxis0: batchedOnAxis0(serving),
      },
      request: { id: request.id, outputs: request.outputs, binaryOutput: request.binaryOutput },
      outputs,
    };
    // the answer is in memory already: counted (without waiting) until it is sent: the outputs, the body's copy of
    // the binary ones, and about 48 bytes a JSON number while it is written (an array element, its text, its bytes)
    const numbers = jsonElements(answer.request, outputs);
    const tensorBytes = Object.values(outputs).reduce((n, t) => n + t.data.byteLength, 0);
    req.holdings.add(budget.charge(2 * tensorBytes + JSON_NUMBER_BYTES * numbers));
    // large JSON outputs are written on a task worker (their tensors copied there): millions of numbers take seconds
    const { body: encoded, headerLength: answerHeader } =
      numbers < OFF_LOOP_JSON_ELEMENTS
        ? encodeInferBody(answer.model, answer.request, outputs)
        : await workers.run(inferAnswer, { ...answer, outputs: sentOutputs(answer.request, outputs) });
    // (a Uint8Array once it crossed from a worker)
    const body = Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
    // the header length is the uncompressed JSON's (Triton's): a client inflates the body, then splits it
    if (answerHeader !== undefined) reply.header(HEADER_LENGTH, String(answerHeader)).type('application/octet-stream');
    else reply.type('application/json; charset=utf-8');
    const encoding = responseEncoding(req.headers['accept-encoding'], body.length);
    reply.header('vary', 'accept-encoding');
    if (encoding === undefined) return reply.send(body);
    return reply.header('content-encoding', encoding).send(await compress(body, encoding));
  };
  const inferSchema = {
    tags: ['v2'],
    [DOC_ONLY]: inferDocs,
    description:
      'Body: JSON {id?, parameters?, inputs: [{name, shape, datatype, data | parameters.binary_data_size}], outputs?}, ' +
      'or that JSON header (Inference-Header-Content-Length bytes) followed by binary tensor data; gzip or deflate ' +
      'with Content-Encoding. An output with parameters.classification N answers its N best classes (BYTES).',
    response: {
      200: {
        description:
          'JSON {model_name, model_version, id?, outputs: [{name, datatype, shape, data}]}, or a JSON header and binary data; ' +
          'gzip or deflate (Content-Encoding) when Accept-Encoding asks for it',
        content: {
          'application/json': {
            schema: Type.Object({
              model_name: Type.String(),
              model_version: Type.String(),
              id: Type.Optional(Type.String()),
              outputs: Type.Array(
                Type.Object({
                  name: Type.String(),
                  datatype: Type.String(),
                  shape: Type.Array(Type.Integer()),
                  data: Type.Optional(Type.Array(Type.Union([Type.Number(), Type.Boolean(), Type.String()]))),
                  parameters: Type.Optional(Type.Object({ binary_data_size: Type.Integer() })),
                }),
              ),
            }),
          },
          'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
        },
      },
    },
  };
  app.post(
    '/v2/models/:name/infer',
    {
      schema: {
        ...inferSchema,
        summary: 'Run raw tensors through a model (JSON or binary tensor data)',
        params: Named,
      },
    },
    infer,
  );
  app.post(
    '/v2/models/:name/versions/:version/infer',
    { schema: { ...inferSchema, summary: 'Run raw tensors through one model version', params: Versioned } },
    infer,
  );

  // Triton's model repository extension. Changes need `Authorization: Bearer $MUON_ADMIN_TOKEN`; without a token
  // configured they are disabled. Names are checked against the folder pattern, so no path leaves the repository.
  const admin = async (req: FastifyRequest) => checkAdminToken(config, req.headers.authorization);
  const NameOnly = Type.Object({ name: Type.String({ maxLength: 256 }) });
  const Index = Type.Array(
    Type.Object({
      name: Type.String(),
      version: Type.Optional(Type.String()),
      state: Type.String({ description: 'READY, LOADING or UNAVAILABLE' }),
      reason: Type.Optional(Type.String()),
    }),
  );
  const Done = Type.Object({});
  const changeSchema = { tags: ['repository'], params: NameOnly, response: { 200: Done }, security: [{ admin: [] }] };
  app.post(
    '/v2/repository/index',
    {
      schema: {
        tags: ['repository'],
        summary: 'Every model folder and model known, with state, version and reason',
        response: { 200: Index },
      },
    },
    async () => repository.index(),
  );
  const load = { schema: { ...changeSchema, summary: 'Load or reload a model without downtime (admin)' } };
  app.post('/v2/repository/models/:name/load', { ...load, onRequest: admin }, async (req) => {
    await loadModel(repository, req.params.name);
    return {};
  });
  const unload = { schema: { ...changeSchema, summary: 'Unload a model: answer what it holds, then free it (admin)' } };
  app.post('/v2/repository/models/:name/unload', { ...unload, onRequest: admin }, async (req) => {
    await repository.unloadModel(req.params.name);
    return {};
  });
}
