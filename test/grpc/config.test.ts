import t from 'tap';
import { loadConfig } from '../../src/config.js';

// MUON_GRPC_PORT turns gRPC on (off by default); MUON_GRPC_MAX_MESSAGE_BYTES bounds a message, by default as the
// HTTP body limit.
t.test('gRPC is off unless MUON_GRPC_PORT is set', async (t) => {
  t.equal(loadConfig({}).grpc, undefined);
  t.equal(loadConfig({ MUON_GRPC_PORT: '' }).grpc, undefined);
  t.same(loadConfig({ MUON_GRPC_PORT: '8001' }).grpc, { port: 8001, maxMessageBytes: 8 * 1024 * 1024 });
  t.same(loadConfig({ MUON_GRPC_PORT: '0' }).grpc, { port: 0, maxMessageBytes: 8 * 1024 * 1024 });
});

t.test('the largest message follows MUON_MAX_BODY_BYTES unless set', async (t) => {
  t.equal(loadConfig({ MUON_GRPC_PORT: '8001', MUON_MAX_BODY_BYTES: '1000' }).grpc?.maxMessageBytes, 1000);
  t.equal(loadConfig({ MUON_GRPC_PORT: '8001', MUON_GRPC_MAX_MESSAGE_BYTES: '4096' }).grpc?.maxMessageBytes, 4096);
});

t.test('bad values are refused, naming the variable', async (t) => {
  t.throws(() => loadConfig({ MUON_GRPC_PORT: '70000' }), { message: /MUON_GRPC_PORT/ });
  t.throws(() => loadConfig({ MUON_GRPC_PORT: 'grpc' }), { message: /MUON_GRPC_PORT/ });
  t.throws(() => loadConfig({ MUON_GRPC_PORT: '8080' }), { message: /MUON_GRPC_PORT must differ from PORT/ });
  t.throws(() => loadConfig({ MUON_GRPC_PORT: '8001', MUON_GRPC_MAX_MESSAGE_BYTES: '0' }), {
    message: /MUON_GRPC_MAX_MESSAGE_BYTES/,
  });
  t.throws(() => loadConfig({ MUON_GRPC_PORT: '8001', MUON_GRPC_MAX_MESSAGE_BYTES: String(2 ** 31) }), {
    message: /MUON_GRPC_MAX_MESSAGE_BYTES/,
  });
});
