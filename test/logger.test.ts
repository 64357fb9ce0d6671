import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';

// The server's logger buffers its lines (src/logger.ts): a line still reaches stdout soon on an idle server, and
// whatever is buffered when the process exits is written, not lost.

const root = path.resolve(import.meta.dirname, '..');

/** Runs `code` (an ES module that has `createLogger` in scope) in a child; resolves with the lines it printed. */
function run(code: string, onLine?: (line: string, kill: () => void) => void): Promise<string[]> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', `import { createLogger } from './src/logger.ts';\n${code}`],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines: string[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    onLine?.(line, () => child.kill('SIGKILL'));
  });
  return new Promise((resolve) => child.on('close', () => resolve(lines)));
}

t.test('a lone line reaches stdout while the process keeps running', async (t) => {
  // the child logs one line, then idles for a minute; it is killed once the line is read
  let arrivedAlive = false;
  const lines = await run(`createLogger('info').info({ n: 1 }, 'one'); setTimeout(() => {}, 60_000);`, (line, kill) => {
    arrivedAlive = true;
    kill();
  });
  t.ok(arrivedAlive, 'the line came out before the process ended');
  t.match(JSON.parse(lines[0]), { level: 30, name: 'muon', n: 1, msg: 'one' });
});

t.test('the tail of a burst reaches stdout while the process idles after it', async (t) => {
  // bursts larger than the buffer, so that writes are in flight when the flush timer ticks; then silence
  const total = 3000;
  let got = 0;
  const lines = await run(
    `const log = createLogger('info'); let i = 0;
     const burst = setInterval(() => { for (let k = 0; k < 60 && i < ${total}; k++) log.info({ i: i++, pad: 'x'.repeat(80) }, 'line');
       if (i >= ${total}) clearInterval(burst); }, 2);
     setTimeout(() => {}, 60_000);`,
    (_line, kill) => {
      if (++got === total) kill();
    },
  );
  t.equal(lines.length, total, 'every line, the last ones included, while the process was still running');
});

t.test('lines buffered when the process exits are written', async (t) => {
  const lines = await run(
    `const log = createLogger('info'); for (let i = 0; i < 1000; i++) log.info({ i }, 'line'); process.exit(0);`,
  );
  t.equal(lines.length, 1000, 'every line');
  t.same(
    lines.map((l) => JSON.parse(l).i),
    Array.from({ length: 1000 }, (_, i) => i),
    'in order',
  );
});

t.test('the level is honoured', async (t) => {
  const lines = await run(`const log = createLogger('warn'); log.info('quiet'); log.warn('loud'); process.exit(0);`);
  t.same(
    lines.map((l) => JSON.parse(l).msg),
    ['loud'],
  );
});
