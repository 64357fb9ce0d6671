import { randomUUID } from 'node:crypto';
import { create, fromJson, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { serverInfo, type Config } from '../config.js';
import { Errors } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { LoadedModel, ModelRepository } from '../models/repository.js';
import { checkRequestedOutputs } from '../protocol/v2-codec.js';
import type { Grant, MemoryBudget } from '../server/memory-budget.js';
import type { LoopWatchdog } from '../server/loop-watchdog.js';
import {
  checkAdminToken,
  inferDecoded,
  loadModel,
  modelConfig,
  modelMetadata,
  modelStatistics,
} from '../server/v2-service.js';
import * as pb from './gen/grpc_service_pb.js';
import { ModelConfigSchema } from './gen/model_config_pb.js';
import { prescanModelInfer, SMALL_MESSAGE_BYTES } from './prescan.js';
import { decodeRequest } from './service.js';
import { toGrpcStatus } from './status.js';
import { declaredTensorBytes, decodeModelInfer, encodeModelInfer, requestedOutputs } from './tensors.js';

/** What the RPCs answer from: the same repository, memory budget and metrics as the HTTP app. */
export interface GrpcDeps {
  readonly config: Config;
  readonly repository: ModelRepository;
  readonly metrics: Metrics;
  readonly budget: MemoryBudget;
  readonly logger: Logger;
  /** Liveness, as `GET /v2/health/live` reports it. */
  readonly watchdog: LoopWatchdog;
}

type RawCall = ServerUnaryCall<Buffer, unknown>;

/** What a handler gets besides its decoded request. */
interface CallContext {
  readonly call: RawCall;
  /** Bytes of the request message, as it came in. */
  readonly messageBytes: number;
  /** Holds a memory grant until the answer has been handed to grpc-js (encoded and queued on the stream). */
  hold(grant: Grant): void;
}

/** RPCs polled often, logged at debug rather than info (as `/v2/health/*` is). */
const QUIET = new Set(['ServerLive', 'ServerReady', 'ModelReady']);

/** A model name or version from a request: the REST API's path limits apply. */
function checkName(name: string, version: string): { name: string; version?: string } {
  if (name === '') throw new Errors.BAD_REQUEST('the model name is empty');
  if (name.length > 256) throw new Errors.BAD_REQUEST('the model name is longer than 256 characters');
  if (version.length > 64) throw new Errors.BAD_REQUEST('the model version is longer than 64 characters');
  return { name, version: version === '' ? undefined : version };
}

/** The gRPC call's deadline as a budget in milliseconds from now (undefined: none); one already passed is refused. */
function deadlineBudgetMs(call: RawCall, model: string): number | undefined {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return undefined;
  const left = at - Date.now();
  if (left <= 0) throw new Errors.DEADLINE_EXCEEDED(model, 0);
  return left;
}

/**
 * The service's handlers by RPC name. Each decodes its request itself (a malformed message is INVALID_ARGUMENT),
 * answers through {@link toGrpcStatus} on error, and logs one line. RPCs not listed answer UNIMPLEMENTED (grpc-js).
 */
export function inferenceHandlers(deps: GrpcDeps): UntypedServiceImplementation {
  const { config, repository, metrics, budget, logger } = deps;

  /** Wraps an async handler of a decoded request into a grpc-js unary handler. */
  const unary =
    <D extends DescMessage>(
      rpc: string,
      desc: D,
      handle: (req: MessageShape<D>, ctx: CallContext) => Promise<unknown>,
      onDone?: (req: MessageShape<D> | undefined, httpStatus: number, started: number) => void,
      before: (ctx: CallContext) => Promise<void> = small,
    ) =>
    (call: RawCall, callback: sendUnaryData<unknown>) => {
      const started = performance.now();
      const grants: Grant[] = [];
      const ctx: CallContext = { call, messageBytes: call.request.length, hold: (g) => grants.push(g) };
      let req: MessageShape<D> | undefined;
      const done = (err: unknown, res?: unknown) => {
        const ms = Math.round((performance.now() - started) * 100) / 100;
        if (err === null) {
          callback(null, res);
          logger[QUIET.has(rpc) ? 'debug' : 'info']({ rpc, code: 'OK', ms }, 'grpc call');
          onDone?.(req, 200, started);
        } else {
          const reqId = randomUUID(); // named by an INTERNAL answer, and logged with the error
          const s = toGrpcStatus(err, reqId);
          callback({ code: s.code, details: s.details, metadata: s.metadata });
          if (s.serverFault) logger.error({ rpc, reqId, err, ms }, 'grpc call failed');
          else logger.info({ rpc, code: s.muonCode, reason: s.details, ms }, 'grpc call refused');
          onDone?.(req, s.httpStatus, started);
        }
        for (const g of grants.splice(0)) g.release();
      };
      // decoding is synchronous and may make far more than the wire bytes: bounded (and admitted) before it
      before(ctx)
        .then(() => {
          try {
            req = decodeRequest(desc, call.request);
          } catch (err) {
            throw new Errors.BAD_REQUEST(`the ${desc.name} message cannot be decoded: ${(err as Error).message}`);
          }
          return handle(req, ctx);
        })
        .then((res) => done(null, res), done)
        .catch((err: unknown) => logger.error({ rpc, err }, 'answering a grpc call failed')); // never unhandled
    };

  /** What every RPC but ModelInfer carries (names, versions, a few parameters) fits in a small message. */
  const small = async ({ messageBytes }: CallContext) => {
    if (messageBytes > SMALL_MESSAGE_BYTES)
      throw new Errors.BAD_REQUEST(
        `this RPC's message is ${messageBytes} bytes; at most ${SMALL_MESSAGE_BYTES} are read`,
      );
  };
  /** Repository changes: the token is checked before the message is decoded, as REST checks it before the body. */
  const admin = async (ctx: CallContext) => {
    checkAdminToken(config, authorization(ctx.call));
    await small(ctx);
  };

  /** The version that served each ModelInfer request, once known (for the statistics). */
  const servedVersion = new WeakMap<object, string>();
  const readyModel = (name: string, version: string): LoadedModel => {
    const n = checkName(name, version);
    return repository.readyModel(n.name, n.version);
  };

  return {
    ServerLive: unary('ServerLive', pb.ServerLiveRequestSchema, async () =>
      create(pb.ServerLiveResponseSchema, { live: deps.watchdog.stalled() === undefined }),
    ),

    ServerReady: unary('ServerReady', pb.ServerReadyRequestSchema, async () =>
      create(pb.ServerReadyResponseSchema, { ready: repository.ready }),
    ),

    // ready: false for a model that is loading, failed or unloaded; NOT_FOUND for a name or version not served
    ModelReady: unary('ModelReady', pb.ModelReadyRequestSchema, async (req) => {
      try {
        readyModel(req.name, req.version);
        return create(pb.ModelReadyResponseSchema, { ready: true });
      } catch (err) {
        if (err instanceof Errors.MODEL_NOT_READY) return create(pb.ModelReadyResponseSchema, { ready: false });
        throw err;
      }
    }),

    ServerMetadata: unary('ServerMetadata', pb.ServerMetadataRequestSchema, async () =>
      create(pb.ServerMetadataResponseSchema, {
        ...serverInfo,
        extensions: ['model_repository', 'model_configuration', 'statistics'],
      }),
    ),

    ModelMetadata: unary('ModelMetadata', pb.ModelMetadataRequestSchema, async (req) => {
      const meta = modelMetadata(repository, readyModel(req.name, req.version));
      const tensors = (list: typeof meta.inputs) => list.map((t) => ({ ...t, shape: t.shape.map((d) => BigInt(d)) }));
      return create(pb.ModelMetadataResponseSchema, {
        ...meta,
        inputs: tensors(meta.inputs),
        outputs: tensors(meta.outputs),
      });
    }),

    ModelInfer: unary(
      'ModelInfer',
      pb.ModelInferRequestSchema,
      async (req, { call, hold }) => {
        const arrival = performance.now();
        const target = checkName(req.modelName, req.modelVersion);
        const asked = deadlineBudgetMs(call, target.name);
        const m = repository.readyModel(target.name, target.version);
        servedVersion.set(req, m.version); // counted in its statistics from here, as REST infer requests are
        // outputs the graph cannot give are refused before any tensor data is walked
        checkRequestedOutputs(requestedOutputs(req), m.session.outputs);
        // the tensors, admitted from their declared shapes before their data is walked (the decoded arrays, and
        // the batch they are stacked into or the runtime's copy)
        hold(await budget.acquire(2 * declaredTensorBytes(req), 'the input tensors'));
        const request = decodeModelInfer(req);
        const gone = new AbortController();
        if (call.cancelled) gone.abort();
        else call.once('cancelled', () => gone.abort());
        const { model, outputs } = await inferDecoded(
          repository,
          {
            ...target,
            arrival,
            timeoutMs: (s) => (asked === undefined ? s.timeoutMs : Math.min(asked, s.maxTimeoutMs)),
            signal: gone.signal,
            onModel: (served) => servedVersion.set(req, served.version), // a reload may have swapped it
          },
          request,
        );
        const { response, bytes } = encodeModelInfer(model, request, outputs);
        // in memory already: counted until grpc-js has it (not until it is sent: grpc-js does not say when a unary
        // answer leaves, so an answer its client does not read sits in HTTP/2's buffers uncounted)
        hold(budget.charge(bytes));
        return response;
      },
      // counted in muon_requests_total like REST infer requests (with the HTTP status of the outcome), once the
      // model is known to exist
      (req, httpStatus, started) => {
        const name = req?.modelName;
        if (name === undefined || repository.status(name) === undefined) return;
        const seconds = (performance.now() - started) / 1000;
        metrics.requests.inc({ model: name, code: String(httpStatus) });
        metrics.requestDuration.observe({ model: name }, seconds);
        // Triton's statistics, per version, with the same values (as REST infer requests: routes/request-metrics.ts)
        const version = req && servedVersion.get(req);
        if (version !== undefined) metrics.statistics.answered(name, version, httpStatus, seconds);
      },
      // the message is in memory already (grpc-js read it whole, up to MUON_GRPC_MAX_MESSAGE_BYTES): its wire form is
      // bounded (prescan.ts), then it is admitted, or refused when the budget has no room, before it is decoded
      async ({ call, messageBytes, hold }) => {
        prescanModelInfer(call.request);
        hold(await budget.acquire(messageBytes, 'the request message'));
      },
    ),

    ModelConfig: unary('ModelConfig', pb.ModelConfigRequestSchema, async (req) => {
      const n = checkName(req.name, req.version);
      const json = modelConfig(repository, n.name, n.version);
      return create(pb.ModelConfigResponseSchema, {
        config: fromJson(ModelConfigSchema, json as never, { ignoreUnknownFields: true }),
      });
    }),

    ModelStatistics: unary('ModelStatistics', pb.ModelStatisticsRequestSchema, async (req) => {
      const n = req.name === '' ? undefined : checkName(req.name, req.version);
      const json = modelStatistics(repository, metrics, n?.name, n?.version);
      return fromJson(pb.ModelStatisticsResponseSchema, json as never, { ignoreUnknownFields: true });
    }),

    RepositoryIndex: unary('RepositoryIndex', pb.RepositoryIndexRequestSchema, async (req) => {
      const index = await repository.index();
      const models = index
        .filter((e) => !req.ready || e.state === 'READY')
        .map((e) => ({ name: e.name, version: e.version ?? '', state: e.state, reason: e.reason ?? '' }));
      return create(pb.RepositoryIndexResponseSchema, { models });
    }),

    // changes need the `authorization: Bearer $MUON_ADMIN_TOKEN` metadata, as the REST API needs the header
    RepositoryModelLoad: unary(
      'RepositoryModelLoad',
      pb.RepositoryModelLoadRequestSchema,
      async (req) => {
        const { name } = checkName(req.modelName, '');
        if (Object.keys(req.parameters).length > 0)
          throw new Errors.BAD_REQUEST(
            `load parameters are not supported (${Object.keys(req.parameters).join(', ')}): a model loads from its folder`,
          );
        await loadModel(repository, name);
        return create(pb.RepositoryModelLoadResponseSchema);
      },
      undefined,
      admin,
    ),

    RepositoryModelUnload: unary(
      'RepositoryModelUnload',
      pb.RepositoryModelUnloadRequestSchema,
      async (req) => {
        await repository.unloadModel(checkName(req.modelName, '').name);
        return create(pb.RepositoryModelUnloadResponseSchema);
      },
      undefined,
      admin,
    ),
  };
}

/** The call's `authorization` metadata (the first, as a string). */
function authorization(call: RawCall): string | undefined {
  const v = call.metadata.get('authorization')[0];
  return typeof v === 'string' ? v : undefined;
}
