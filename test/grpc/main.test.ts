import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { status, type ServiceError } from '@grpc/grpc-js';
import t from 'tap';
import * as pb from '../../src/grpc/gen/grpc_service_pb.js';
import { inferenceClient, msg, unaryCall } from '../helpers/grpc.js';

// The real entry point with MUON_GRPC_PORT: gRPC listens beside HTTP from the start, and on SIGTERM drains with it:
// not ready at once, calls still served through the grace period, every admitted call answered, then new calls
// refused, exit 0.
const root = path.resolve(import.meta.dirname, '../..');
const repo = mkdtempSync(path.join(tmpdir(), 'muon-grpc-main-'));
t.teardown(() => rmSync(repo, { recursive: true, force: true }));
cpSync(path.join(root, 'models/text-orientation'), path.join(repo, 'text-orientation'), { recursive: true });

t.test('main.ts starts gRPC beside HTTP and drains it on SIGTERM', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      MUON_GRPC_PORT: '0',
      MUON_MODEL_REPOSITORY: repo,
      MUON_EXECUTION_PROVIDER: 'cpu',
      MUON_LOG_LEVEL: 'info',
      MUON_SHUTDOWN_GRACE_MS: '1500',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const logs: Record<string, unknown>[] = [];
  let grpcPort = 0;
  let onReady: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const entry = JSON.parse(line);
    logs.push(entry);
    if (entry.msg === 'gRPC listening') grpcPort = entry.port;
    if (entry.msg === 'ready') onReady();
  });
  await ready;
  t.ok(grpcPort > 0, `gRPC on ${grpcPort}`);
  const client = inferenceClient(`127.0.0.1:${grpcPort}`);
  t.teardown(() => client.close());
  const isReady = async () =>
    ((await unaryCall(client, 'ServerReady', msg(pb.ServerReadyRequestSchema))) as pb.ServerReadyResponse).ready;
  t.equal(await isReady(), true);
  const request = msg(pb.ModelInferRequestSchema, {
    modelName: 'text-orientation',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1n, 3n, 48n, 192n] }],
    rawInputContents: [new Uint8Array(4 * 3 * 48 * 192)],
  });
  const infer = () =>
    unaryCall<pb.ModelInferResponse>(client, 'ModelInfer', request).then(
      (r) => r.rawOutputContents[0].length,
      (e: ServiceError) => e.code,
    );
  t.equal(await infer(), 8);

  const inFlight = Array.from({ length: 16 }, infer);
  child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await isReady(), false, 'not ready at once');
  t.equal(await infer(), 8, 'a call in the grace period is still served');
  t.same(
    (await Promise.all(inFlight)).filter((n) => n !== 8),
    [],
    'every call admitted before the signal is answered',
  );
  await new Promise((r) => setTimeout(r, 1500)); // past the grace period
  t.equal(await infer(), status.UNAVAILABLE, 'then new calls are refused');
  t.equal(await exited, 0, 'exit code 0');
  t.ok(
    logs.some((l) => l.msg === 'stopped'),
    'drain completed',
  );
});
