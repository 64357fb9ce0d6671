import { create, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { credentials, makeGenericClientConstructor, Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { GRPCInferenceService } from '../../src/grpc/gen/grpc_service_pb.js';
import { GrpcEndpoint } from '../../src/grpc/server.js';
import { serviceDefinition } from '../../src/grpc/service.js';
import { Metrics } from '../../src/metrics.js';
import { ModelRepository } from '../../src/models/repository.js';
import { buildApp, createMemoryBudget, type App } from '../../src/server/app.js';

/** The real app and the gRPC endpoint on one repository and one memory budget, as main.ts wires them. */
export interface GrpcTestServer {
  app: App;
  repository: ModelRepository;
  metrics: Metrics;
  endpoint: GrpcEndpoint;
  client: Client;
  /** Calls a unary RPC by its proto name; rejects with the grpc-js ServiceError. */
  call<D extends DescMessage>(
    rpc: keyof typeof GRPCInferenceService.method | string,
    request: MessageShape<DescMessage> | Buffer,
    options?: { deadline?: Date | number; metadata?: Record<string, string> },
  ): Promise<MessageShape<D>>;
  close(): Promise<void>;
}

/** A gRPC client of the service, built from the same definition as the server's (Node example in docs/grpc.md). */
export function inferenceClient(address: string, opts: { sendBytes?: boolean } = {}): Client {
  const definition = serviceDefinition({ rawRequests: false });
  // sendBytes: requests are sent as the bytes given (a malformed message, on purpose)
  if (opts.sendBytes)
    for (const m of Object.values(definition)) (m as { requestSerialize: unknown }).requestSerialize = (b: Buffer) => b;
  const Ctor = makeGenericClientConstructor(definition, 'GRPCInferenceService');
  return new Ctor(address, credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
}

/** Promise form of a unary call on a client from {@link inferenceClient}. */
export function unaryCall<T>(
  client: Client,
  rpc: string,
  request: unknown,
  options: { deadline?: Date | number; metadata?: Record<string, string> } = {},
): Promise<T> {
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(options.metadata ?? {})) metadata.set(k, v);
  return new Promise((resolve, reject) =>
    (client as unknown as Record<string, Function>)[rpc](
      request,
      metadata,
      { deadline: options.deadline },
      (err: ServiceError | null, res: T) => (err ? reject(err) : resolve(res)),
    ),
  );
}

/** A message of the service, built from its schema. */
export const msg = <D extends DescMessage>(desc: D, init?: MessageInitShape<D>) => create(desc, init);

/** Starts the app and the gRPC endpoint (127.0.0.1, any free port) on the project's models. */
export async function startGrpc(env: Record<string, string> = {}): Promise<GrpcTestServer> {
  const config = loadConfig({
    MUON_EXECUTION_PROVIDER: 'cpu',
    MUON_DEFAULT_MODEL: 'text-orientation',
    HOST: '127.0.0.1',
    MUON_GRPC_PORT: '0',
    ...env,
  });
  const metrics = new Metrics(false);
  const logger = pino({ level: 'silent' });
  const repository = new ModelRepository(config, metrics, logger);
  const failures = await repository.loadAll();
  if (failures.length > 0) throw new Error(`models failed to load: ${JSON.stringify(failures)}`);
  const budget = createMemoryBudget(config, metrics);
  const app = buildApp({ config, metrics, repository, logger, budget });
  await app.ready();
  const endpoint = await GrpcEndpoint.start({ config, metrics, repository, budget, logger });
  const client = inferenceClient(`127.0.0.1:${endpoint.port}`);
  return {
    app,
    repository,
    metrics,
    endpoint,
    client,
    call: (rpc, request, options) => unaryCall(client, rpc, request, options),
    async close() {
      client.close();
      await endpoint.close(5_000);
      await app.close();
      await repository.close();
    },
  };
}
