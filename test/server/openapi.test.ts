import { readFileSync } from 'node:fs';
import path from 'node:path';
import { compileErrors, validate } from '@readme/openapi-parser';
import t from 'tap';
import { openapiTags } from '../../src/server/openapi.js';
import { multipart, startApp } from '../helpers/app.js';

// The OpenAPI document at /openapi.json: valid by a maintained validator, every route tagged and summarized, and the
// bodies Swagger UI needs to try a route (a file upload for /predict); documenting bodies must not change which
// requests are accepted.

const ctx = await startApp();
t.teardown(() => ctx.close());
const { app } = ctx;
const png = readFileSync(path.resolve(import.meta.dirname, '../fixtures/text-lines/line-03.png'));

type Operation = {
  tags?: string[];
  summary?: string;
  parameters?: { name: string; in: string; required?: boolean }[];
  requestBody?: { content: Record<string, { schema: Record<string, any> }> };
  responses: Record<string, { content?: Record<string, { schema: Record<string, any> }> }>;
};
const res = await app.inject({ url: '/openapi.json' });
const doc = res.json() as { paths: Record<string, Record<string, Operation>>; tags: { name: string }[] };
const operations = Object.entries(doc.paths).flatMap(([p, methods]) =>
  Object.entries(methods).map(([method, op]) => ({ route: `${method.toUpperCase()} ${p}`, op })),
);
const op = (route: string): Operation => operations.find((o) => o.route === route)!.op;

t.test('the document validates as OpenAPI', async (t) => {
  t.equal(res.statusCode, 200);
  const result = await validate(structuredClone(doc) as never);
  t.ok(result.valid, result.valid ? 'valid' : compileErrors(result));
  t.same(result.warnings, []);
  t.notOk(JSON.stringify(doc).includes('x-doc-only'), 'documentation-only fields are merged, not shown as they are');
});

t.test('every route is in the document, with a known tag and a summary', async (t) => {
  const expected = [
    'GET /v2/health/live',
    'GET /v2/health/ready',
    'GET /metrics',
    'GET /v1/models',
    'GET /v1/models/{name}',
    'POST /predict',
    'POST /v1/models/{name}/predict',
    'GET /v2',
    'GET /v2/models/{name}',
    'GET /v2/models/{name}/versions/{version}',
    'GET /v2/models/{name}/ready',
    'GET /v2/models/{name}/versions/{version}/ready',
    'POST /v2/models/{name}/infer',
    'POST /v2/models/{name}/versions/{version}/infer',
    'POST /v2/repository/index',
    'POST /v2/repository/models/{name}/load',
    'POST /v2/repository/models/{name}/unload',
    'GET /v2/models/{name}/config',
    'GET /v2/models/{name}/versions/{version}/config',
    'GET /v2/models/stats',
    'GET /v2/models/{name}/stats',
    'GET /v2/models/{name}/versions/{version}/stats',
    'GET /playground',
  ];
  const routes = operations.map((o) => o.route);
  for (const route of expected) t.ok(routes.includes(route), `${route} documented`);
  t.same(
    doc.tags.map((tag) => tag.name),
    openapiTags.map((tag) => tag.name),
  );
  const known = new Set(doc.tags.map((tag) => tag.name));
  for (const { route, op } of operations) {
    t.ok(op.tags?.length && op.tags.every((tag) => known.has(tag)), `${route}: tags ${op.tags}`);
    t.match(op.summary, /^\S.{8,}$/, `${route}: a one-line summary`);
  }
  t.same(op('POST /predict').tags, ['predict']);
  t.same(op('POST /v2/models/{name}/infer').tags, ['v2']);
  t.same(op('POST /v2/repository/models/{name}/load').tags, ['repository']);
});

t.test('path parameters are exactly those of the path', async (t) => {
  for (const { route, op } of operations) {
    const inPath = [...route.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    const declared = (op.parameters ?? []).filter((p) => p.in === 'path');
    t.same(declared.map((p) => p.name).sort(), inPath, route);
    t.ok(
      declared.every((p) => p.required),
      `${route}: path parameters required`,
    );
  }
});

t.test('/predict documents a multipart file and each raw body', async (t) => {
  for (const route of ['POST /predict', 'POST /v1/models/{name}/predict']) {
    const content = op(route).requestBody!.content;
    t.same(content['multipart/form-data'].schema.properties.file, {
      type: 'string',
      format: 'binary',
      description: 'the image or WAV file (exactly one file part)',
    });
    t.same(content['multipart/form-data'].schema.required, ['file']);
    for (const type of ['image/png', 'image/jpeg', 'image/webp', 'application/octet-stream', 'audio/wav']) {
      t.match(content[type].schema, { type: 'string', format: 'binary' }, `${route}: ${type}`);
    }
    t.match(content['text/plain'].schema, { type: 'string' });
    t.match(content['application/json'].schema, { type: 'object', required: ['text'] });
  }
});

t.test('v2 infer documents its JSON and binary bodies; errors are documented per route family', async (t) => {
  const infer = op('POST /v2/models/{name}/infer');
  t.match(infer.requestBody!.content['application/json'].schema, { required: ['inputs'] });
  t.match(infer.requestBody!.content['application/octet-stream'].schema, { type: 'string', format: 'binary' });
  t.ok(infer.parameters!.some((p) => p.in === 'header' && p.name === 'inference-header-content-length'));
  t.match(infer.responses['200'].content!['application/json'].schema, { required: ['model_name', 'model_version'] });
  const body = (route: string, status: string) => op(route).responses[status].content!['application/json'];
  for (const status of ['4XX', '5XX']) {
    t.same(body('POST /v2/models/{name}/infer', status).schema.required, ['error', 'code'], `v2 ${status}`);
    t.same(body('POST /predict', status).schema.required, ['statusCode', 'code', 'error', 'message'], status);
    t.same(body('GET /v2/health/ready', status).schema.required, ['statusCode', 'code', 'error', 'message']);
  }
});

t.test('documenting bodies changes no validation', async (t) => {
  const raw = await app.inject({
    method: 'POST',
    url: '/predict',
    headers: { 'content-type': 'image/png' },
    payload: png,
  });
  t.equal(raw.statusCode, 200, raw.body);
  const file = await app.inject({
    method: 'POST',
    url: '/predict',
    ...multipart([{ name: 'file', filename: 'line.png', type: 'image/png', data: png }]),
  });
  t.equal(file.statusCode, 200, file.body);
  const json = await app.inject({ method: 'POST', url: '/predict', payload: { txt: 'hello' } });
  t.equal(json.statusCode, 400, 'JSON bodies are still validated');
  t.equal(json.json().code, 'MUON_ERR_BAD_REQUEST');
  const infer = await app.inject({
    method: 'POST',
    url: '/v2/models/text-orientation/infer',
    headers: { 'content-type': 'application/json' },
    payload: '{"inputs": 3}',
  });
  t.equal(infer.statusCode, 400);
  t.equal(infer.json().code, 'MUON_ERR_BAD_REQUEST', 'the codec, not a schema, refuses a bad infer body');
  const versioned = await app.inject({ url: '/v2/models/text-orientation/versions/9/ready' });
  t.equal(versioned.statusCode, 404);
  t.equal(versioned.json().code, 'MUON_ERR_VERSION_NOT_FOUND');
});

t.test('Swagger UI is served at /docs', async (t) => {
  const page = await app.inject({ url: '/docs/' });
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-type'], /text\/html/);
});
