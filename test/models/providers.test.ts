import t from 'tap';
import { providerLine } from '../../src/models/providers.js';

// The startup line about execution providers, for the cases a CPU-only test machine cannot produce for real: CUDA
// installed but failing, and models on different providers.

const missing = 'CUDA provider not installed (/x/libonnxruntime_providers_cuda.so is missing)';
const failed = 'CUDA provider failed to load: libcudnn.so.9: cannot open shared object file';

t.test('auto without CUDA installed: info, one shared reason', async (t) => {
  const line = providerLine(
    [
      { name: 'a', provider: 'cpu', fallbackReason: missing },
      { name: 'b', provider: 'cpu', fallbackReason: missing },
    ],
    'auto',
  );
  t.same(line, {
    level: 'info',
    msg: 'execution providers',
    fields: { requested: 'auto', providers: { a: 'cpu', b: 'cpu' }, cpuReason: missing },
  });
});

t.test('CUDA installed but failing to load: a warning with the reason', async (t) => {
  const line = providerLine([{ name: 'a', provider: 'cpu', fallbackReason: failed }], 'auto');
  t.equal(line.level, 'warn');
  t.equal(line.fields.cpuReason, failed);
});

t.test('different reasons are given per model; models on CUDA need none', async (t) => {
  const line = providerLine(
    [
      { name: 'a', provider: 'cuda' },
      { name: 'b', provider: 'cpu', fallbackReason: failed },
      { name: 'c', provider: 'cpu', fallbackReason: 'CUDA provider failed to load: out of memory' },
    ],
    'auto',
  );
  t.same(line, {
    level: 'warn',
    msg: 'execution providers',
    fields: {
      requested: 'auto',
      providers: { a: 'cuda', b: 'cpu', c: 'cpu' },
      cpuReasons: { b: failed, c: 'CUDA provider failed to load: out of memory' },
    },
  });
  t.same(providerLine([{ name: 'a', provider: 'cuda' }], 'cuda'), {
    level: 'info',
    msg: 'execution providers',
    fields: { requested: 'cuda', providers: { a: 'cuda' } },
  });
});
