import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { packageRoot } from '../../src/config.js';
import { startApp } from '../helpers/app.js';
import { compareOutput, consoleBlocks, githubSlug, markdownLinks } from '../helpers/doc-examples.js';

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
    const script = block.commands
      .map((c) => `${c.command.replaceAll('localhost:8080', `127.0.0.1:${port}`)}\nprintf '\\n${marker}\\n'`)
      .join('\n');
    const { stdout } = await run('bash', ['-c', script], { cwd: packageRoot, timeout: 60_000 });
    const outputs = stdout.split(`\n${marker}\n`);
    block.commands.forEach((c, i) => {
      const where = `${block.page}:${c.line}: ${c.command.slice(0, 90)}`;
      const problem = compareOutput(c.expected, outputs[i] ?? '');
      t.equal(problem, undefined, where);
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
      const headings = [...text.get(resolved)!.matchAll(/^#{1,6} (.*)$/gm)].map((m) => githubSlug(m[1]));
      t.ok(headings.includes(anchor), `${where} (the heading)`);
    }
  }
});
