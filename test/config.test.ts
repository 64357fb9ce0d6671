import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ConfigError, defaults, loadConfig } from '../src/config.js';

t.test('defaults', async (t) => {
  const c = loadConfig({});
  t.match(c, {
    host: '0.0.0.0',
    port: 8080,
    defaultModel: 'ocr',
    executionProvider: 'auto',
    batching: true,
    intraOpThreads: undefined,
  });
  t.equal(c.modelRepository, defaults.MUON_MODEL_REPOSITORY);
  t.ok(Object.isFrozen(c));
});

t.test('values are parsed and checked, errors name the variable', async (t) => {
  const c = loadConfig({
    PORT: '0',
    MUON_BATCHING: 'off',
    MUON_INTRA_OP_THREADS: '3',
    MUON_MODEL_REPOSITORY: 'x/y',
    MUON_EXECUTION_PROVIDER: 'cpu',
  });
  t.match(c, { port: 0, batching: false, intraOpThreads: 3, executionProvider: 'cpu' });
  t.equal(c.modelRepository, path.resolve('x/y'));
  t.throws(() => loadConfig({ PORT: '70000' }), new ConfigError("PORT must be an integer in [0, 65535], got '70000'"));
  t.throws(() => loadConfig({ MUON_BATCHING: 'maybe' }), { message: /MUON_BATCHING/ });
  t.throws(() => loadConfig({ MUON_EXECUTION_PROVIDER: 'tpu' }), {
    message: /MUON_EXECUTION_PROVIDER must be one of auto, cuda, cpu/,
  });
  t.throws(() => loadConfig({ MUON_MAX_BODY_BYTES: '1.5' }), { message: /MUON_MAX_BODY_BYTES/ });
});

t.test('capture is off unless a folder is given; its rate is a fraction', async (t) => {
  t.equal(loadConfig({}).capture, undefined);
  t.match(loadConfig({ MUON_CAPTURE_DIR: '/tmp/c', MUON_CAPTURE_RATE: '0.5' }).capture, { dir: '/tmp/c', rate: 0.5 });
  t.throws(() => loadConfig({ MUON_CAPTURE_DIR: '/tmp/c', MUON_CAPTURE_RATE: '2' }), { message: /MUON_CAPTURE_RATE/ });
});

t.test('the README configuration table lists exactly the variables config.ts reads', async (t) => {
  const root = path.resolve(import.meta.dirname, '..');
  const source = readFileSync(path.join(root, 'src/config.ts'), 'utf8');
  const read = [...new Set([...source.matchAll(/\b(MUON_[A-Z0-9_]+|PORT|HOST)\b/g)].map((m) => m[1]))].sort();
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  // a row's first cell names one variable or several (`MUON_TLS_CERT_FILE`, `MUON_TLS_KEY_FILE`)
  const documented = [...readme.matchAll(/^\| (`(?:MUON_|PORT|HOST)[^|]*) \|/gm)]
    .flatMap((row) => [...row[1].matchAll(/`([A-Z0-9_]+)`/g)].map((m) => m[1]))
    .filter((name) => !name.startsWith('MUON_ERR_')) // the error-code table
    .sort();
  t.ok(read.length > 20, `${read.length} variables found in src/config.ts`);
  t.same(documented, read);
});
