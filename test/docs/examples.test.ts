import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { packageRoot } from '../../src/config.js';
import { startApp } from '../helpers/app.js';
import { compareOutput, consoleBlocks, githubSlug, markdownHeadings, markdownLinks } from '../helpers/doc-examples.js';

// Docs that are run: every ```console block of the README and docs/ is executed against a real server (the shipped
// models and settings, on a free port standing in for localhost:8080), and what each command prints is compared
// with what the page shows: JSON as JSON, each number to the digits shown. And every relative link resolves.

const run = promisify(execFile);
const pages = ['README.md', ...readdirSync(path.join(packageRoot, 'docs')).map((f) => `docs/${f}`)].filter((p) =>
  p.endsWith('.md'),
);
const text = new Map(pages.map((p) => [p, readFileSync(path.join(packageRoot, p), 'utf8')]));
const blocks = pages.flatMap((page) => consoleBlocks(text.get(page)!).map((b) => ({ page, ...b })));

t.test('the pages have examples to run', async (t) => {
  t.ok(blocks.length >= 3, `${blocks.length} console blocks`);
  t.ok(blocks.filter((b) => b.page === 'README.md').length >= 2, 'the README has its own');
});

t.test('every console example prints what its page shows', async (t) => {
  const ctx = await startApp({ MUON_DEFAULT_MODEL: '' });
  t.teardown(() => ctx.close());
  t.same(ctx.failures, []);
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  const address = ctx.app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const marker = '@@muon-doc-example-end@@';
  for (const block of blocks) {
    // the commands of a block share one shell, so a block may set a variable and use it below
    t.ok(block.commands.length > 0, `${block.page}:${block.line}: a console block without commands`);
    // each command is followed by a marker with its exit status: every command must run, and succeed
    const script = block.commands
      .map((c) => `${c.command.replaceAll('localhost:8080', `127.0.0.1:${port}`)}\nprintf '\\n${marker} %d\\n' $?`)
      .join('\n');
    const { stdout, stderr } = await run('bash', ['-c', script], { cwd: packageRoot, timeout: 60_000 });
    const parts = stdout.split(new RegExp(`\\n${marker} (\\d+)\\n`));
    t.equal(parts.length, 2 * block.commands.length + 1, `${block.page}:${block.line}: every command ran ${stderr}`);
    block.commands.forEach((c, i) => {
      const where = `${block.page}:${c.line}: ${c.command.slice(0, 90)}`;
      t.equal(parts[2 * i + 1], '0', `${where} (exit status) ${stderr}`);
      t.equal(compareOutput(c.expected, parts[2 * i] ?? ''), undefined, where);
    });
  }
});

t.test('every relative link of the README and docs/ resolves, anchors included', async (t) => {
  for (const page of pages) {
    for (const { target, line } of markdownLinks(text.get(page)!)) {
      if (/^[a-z]+:/i.test(target)) continue; // http:, https:, mailto:
      const [file, anchor] = target.split('#');
      const resolved = file === '' ? page : path.normalize(path.join(path.dirname(page), file));
      const where = `${page}:${line}: ${target}`;
      t.ok(existsSync(path.join(packageRoot, resolved)), `${where} (the file)`);
      if (anchor === undefined || !resolved.endsWith('.md') || !text.has(resolved)) continue;
      const headings = markdownHeadings(text.get(resolved)!).map(githubSlug);
      t.ok(headings.includes(anchor), `${where} (the heading)`);
    }
  }
});
