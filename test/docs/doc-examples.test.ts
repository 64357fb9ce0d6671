import t from 'tap';
import { compareOutput, consoleBlocks, githubSlug, markdownLinks } from '../helpers/doc-examples.js';

// The reader of the docs' examples: what it runs, and what it lets through.

t.test('console blocks: commands, continuations, outputs', async (t) => {
  const page = [
    'text',
    '```console',
    '$ curl -s localhost:8080/a \\',
    "  'b'",
    '{"x": 1}',
    "$ curl -d '{",
    '>   "y": 2}\'',
    '$ true',
    '```',
    '```sh',
    '$ not a console block',
    '```',
  ].join('\n');
  const [block, ...rest] = consoleBlocks(page);
  t.same(rest, []);
  t.same(
    block.commands.map((c) => [c.command, c.expected, c.line]),
    [
      ["curl -s localhost:8080/a \\\n  'b'", '{"x": 1}', 3],
      ['curl -d \'{\n  "y": 2}\'', '', 6],
      ['true', '', 8],
    ],
  );
});

t.test('outputs: JSON to the digits shown, lists cut with ..., text exactly', async (t) => {
  t.equal(compareOutput('{"score":0.943,"n":3}', '{"n":3,"score":0.9428950647513071}'), undefined, 'rounds to 0.943');
  t.match(compareOutput('{"score":0.943}', '{"score":0.9436}'), /shown 0.943, got 0.9436/, 'does not');
  t.match(compareOutput('{"n":3}', '{"n":3.2}'), /shown 3/, 'integers exactly');
  t.equal(compareOutput('{"s":1.3e-7}', '{"s":1.26e-7}'), undefined, 'exponents: 1.3e-7 +- 0.05e-7');
  t.match(compareOutput('{"s":1.3e-7}', '{"s":1.4e-7}'), /shown 1.3e-7/);
  t.equal(compareOutput('[1, 2, ...]', '[1, 2, 3, 4]'), undefined, 'the rest of a list');
  t.match(compareOutput('[1, 2, ...]', '[1, 3, 4]'), /\$\[1\]/, 'but the shown items must match');
  t.match(compareOutput('[1, 2]', '[1, 2, 3]'), /a list of 2/, 'whole lists are whole');
  t.match(compareOutput('{"a":"x"}', '{"a":"x","b":1}'), /keys/, 'no extra keys');
  t.equal(compareOutput('{"t":"3 ... 4, 0.5"}', '{"t":"3 ... 4, 0.5"}'), undefined, 'numbers in strings are text');
  t.match(compareOutput('{"t":"a"}', 'not json'), /shown JSON/);
  t.equal(compareOutput('200\n', '200'), undefined, 'text, blank space aside');
  t.match(compareOutput('200', '404'), /shown:\n200\ngot:\n404/);
});

t.test('links and anchors', async (t) => {
  t.same(
    markdownLinks('[a](x.md#y) `[b](not)`\n```\n[c](code)\n```\n[d](https://e)').map((l) => [l.target, l.line]),
    [
      ['x.md#y', 1],
      ['https://e', 5],
    ],
  );
  t.equal(githubSlug('Compressing models (`muon-compress`)'), 'compressing-models-muon-compress');
  t.equal(githubSlug('Quality (task metrics, held-out data)'), 'quality-task-metrics-held-out-data');
});
