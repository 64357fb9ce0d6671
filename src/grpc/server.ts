import { Server, ServerCredentials } from '@grpc/grpc-js';
import { LoopWatchdog } from '../server/loop-watchdog.js';
import { inferenceHandlers, type GrpcDeps } from './handlers.js';
import { serviceDefinition } from './service.js';

/**
 * The gRPC endpoint: Triton's `inference.GRPCInferenceService` (KServe v2) on `config.grpc.port`, bound to the same
 * host as HTTP, with TLS when HTTP has it. It answers from the same repository, batchers and memory budget as the
 * HTTP app; a message over `config.grpc.maxMessageBytes` is refused (RESOURCE_EXHAUSTED) from its length prefix,
 * before it is read.
 */
export class GrpcEndpoint {
  readonly #server: Server;
  readonly #watchdog: LoopWatchdog;
  /** The port it listens on (the one chosen, when the config asked for 0). */
  readonly port: number;

  private constructor(server: Server, watchdog: LoopWatchdog, port: number) {
    this.#server = server;
    this.#watchdog = watchdog;
    this.port = port;
  }

  /** Starts listening; rejects when the address cannot be bound. */
  static async start(deps: Omit<GrpcDeps, 'watchdog'>): Promise<GrpcEndpoint> {
    const { config } = deps;
    if (!config.grpc) throw new Error('gRPC is off (MUON_GRPC_PORT is not set)');
    const server = new Server({
      'grpc.max_receive_message_length': config.grpc.maxMessageBytes,
      // grpc-js's own unexpected-error handling logs nothing of ours; our handlers answer every call themselves
    });
    const watchdog = new LoopWatchdog(config.livenessMaxBlockMs);
    server.addService(serviceDefinition({ rawRequests: true }), inferenceHandlers({ ...deps, watchdog }));
    const credentials = config.tls
      ? ServerCredentials.createSsl(null, [{ cert_chain: config.tls.cert, private_key: config.tls.key }], false)
      : ServerCredentials.createInsecure();
    const host = config.host.includes(':') && !config.host.startsWith('[') ? `[${config.host}]` : config.host;
    try {
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(`${host}:${config.grpc!.port}`, credentials, (err, port) =>
          err ? reject(err) : resolve(port),
        ),
      );
      return new GrpcEndpoint(server, watchdog, port);
    } catch (err) {
      watchdog.stop();
      server.forceShutdown();
      throw err;
    }
  }

  /**
   * Stops accepting calls and lets the ones in progress finish (they wait on their batches), for at most `timeoutMs`;
   * then cancels what is left.
   */
  async close(timeoutMs: number): Promise<void> {
    this.#watchdog.stop();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, timeoutMs);
      timer.unref();
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
