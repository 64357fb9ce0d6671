import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Type } from 'typebox';
import { packageRoot } from '../../src/config.js';
import { ManifestSchema, taskNames } from '../../src/models/manifest.js';
import { answerFields, taskDefinition, taskDefinitions, taskOps } from '../../src/models/tasks/registry.js';
import { commonOps } from '../../src/workers/ops.js';

// A task is its folder and its registry line: what is built from the registry, and that nothing else names a task.

const tasksDir = path.join(packageRoot, 'src/models/tasks');

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

t.test(
  'every registered task is a folder exporting its definition, and the manifest schema is their union',
  async (t) => {
    t.same(taskNames, [
      'image-classification',
      'language-id',
      'face-detection',
      'voice-activity',
      'text-recognition',
      'ocr',
    ]);
    for (const d of taskDefinitions) {
      t.ok(statSync(path.join(tasksDir, d.name, 'index.ts')).isFile(), `tasks/${d.name}/index.ts`);
      t.equal(taskDefinition(d.name), d);
      t.equal(d.manifest.properties.task.const, d.name, `${d.name}: its schema's task is its name`);
    }
    t.same(
      (ManifestSchema.anyOf as { properties: { task: { const: string } } }[]).map((s) => s.properties.task.const),
      taskNames,
    );
    t.equal(taskDefinition('no-such-task'), undefined);
  },
);

t.test('outside its folder and the registry, no source file names a task', async (t) => {
  const others = tsFiles(path.join(packageRoot, 'src')).filter((f) => {
    const rel = path.relative(tasksDir, f);
    return rel.startsWith('..') || rel === 'task.ts' || rel.startsWith('common' + path.sep);
  });
  t.ok(others.length > 50, 'the sources were found');
  for (const file of others) {
    const text = readFileSync(file, 'utf8');
    for (const name of taskNames) {
      // `ocr` is also the default model's name (a folder of models/), which config.ts may name
      const literal = new RegExp(`['"\`]${name}['"\`]`);
      if (name === 'ocr' && file.endsWith(path.join('src', 'config.ts'))) continue;
      t.notMatch(text, literal, `${path.relative(packageRoot, file)} does not name the task '${name}'`);
    }
  }
});

t.test(
  "the predict answer schema is the union of the tasks' fields; a field two tasks answer differently is refused",
  async (t) => {
    const fields = answerFields();
    t.same(Object.keys(fields).sort(), ['duration_ms', 'faces', 'lines', 'predictions', 'segments']);
    const a = { ...taskDefinitions[0], name: 'a', answer: { score: Type.Number() } };
    const b = { ...taskDefinitions[0], name: 'b', answer: { score: Type.String() } };
    t.throws(() => answerFields([a, b]), /tasks 'a' and 'b' answer 'score' with different schemas/);
    const shared = Type.Number();
    t.same(
      Object.keys(
        answerFields([
          { ...a, answer: { score: shared } },
          { ...b, answer: { score: shared } },
        ]),
      ),
      ['score'],
    );
  },
);

t.test('op names are unique across the common ops and every task', async (t) => {
  const names = [...commonOps, ...taskOps].map((o) => o.name);
  t.same(new Set(names).size, names.length, names.join(', '));
});

t.test('docs/tasks.md has a section for every registered task', async (t) => {
  const doc = readFileSync(path.join(packageRoot, 'docs/tasks.md'), 'utf8');
  for (const name of taskNames)
    t.ok(
      doc.includes('| ' + name + ' |') ||
        new RegExp('^###? .*\\(`' + name + '`').test(doc) ||
        doc.includes('(`' + name + '`'),
      `docs/tasks.md documents '${name}'`,
    );
});
