import type { FastifyDynamicSwaggerOptions } from '@fastify/swagger';
import { Type } from 'typebox';
import { serverInfo } from '../config.js';

// The OpenAPI document (/openapi.json, Swagger UI at /docs) is generated from the route schemas. What Fastify must not
// validate (raw image and audio bodies, multipart, the v2 binary body) is declared on a route as `x-doc-only` and put
// into the document here, so documenting a body never changes which requests are accepted.

/** The route groups of the document, in the order Swagger UI shows them. */
export const openapiTags = [
  {
    name: 'predict',
    description: 'One input (an image, audio or text) in, one answer out, with pre- and post-processing',
  },
  { name: 'models', description: 'What is served, on which execution provider, with which batching limits' },
  { name: 'v2', description: 'Open Inference Protocol (KServe v2) over REST: metadata, readiness, raw tensor infer' },
  { name: 'health', description: 'Liveness and readiness probes' },
  { name: 'repository', description: "Triton's model repository extension (load and unload need the admin token)" },
  { name: 'metrics', description: 'Prometheus metrics' },
  { name: 'playground', description: 'A page to try the models in a browser' },
] as const;

/** Route schema fields that only the document shows (Fastify neither validates nor serializes with them). */
export interface DocOnly {
  /** The request body per content type, e.g. `{ content: { 'image/png': { schema: Binary } } }`. */
  readonly body?: unknown;
  /** Request headers worth documenting. */
  readonly headers?: unknown;
  /** Answers by status code, added to (and overriding) the route's own response schemas in the document. */
  readonly response?: Record<string, unknown>;
}

/** The key on a route's schema that holds its {@link DocOnly} fields. */
export const DOC_ONLY = 'x-doc-only';

/** A raw binary body or multipart file, as OpenAPI 3.0 spells it (Swagger UI shows a file picker). */
export const Binary = { type: 'string', format: 'binary' } as const;

/** Our error body (error-mapping.ts), for every route outside the v2 protocol. */
const ErrorBody = Type.Object(
  {
    statusCode: Type.Integer(),
    code: Type.String({ description: 'stable error code, MUON_ERR_*' }),
    error: Type.String({ description: 'the HTTP status text' }),
    message: Type.String({ description: 'what was wrong, and what to send instead' }),
  },
  { additionalProperties: true },
);

/** The Open Inference Protocol's error body plus our code (v2 routes; the health probes answer like the rest). */
const V2ErrorBody = Type.Object(
  {
    error: Type.String({ description: 'what was wrong' }),
    code: Type.String({ description: 'stable error code, MUON_ERR_*' }),
  },
  { additionalProperties: true },
);

const usesV2Errors = (url: string) => (url === '/v2' || url.startsWith('/v2/')) && !url.startsWith('/v2/health/');

/** The error answers every route may give, documented only (errors are sent by the error handler as they are). */
function errorResponses(url: string): Record<string, unknown> {
  const body = usesV2Errors(url) ? V2ErrorBody : ErrorBody;
  return {
    '4XX': {
      ...body,
      description:
        'Refused; `code` says why: a bad request (400), no or a wrong admin token (401, 403), an unknown model, ' +
        'version or route (404), a body too large (413), an unsupported media type (415), an input or load not ' +
        'accepted (422), overloaded: retry after Retry-After (429)',
    },
    '5XX': {
      ...body,
      description:
        'Not served: inference failed (500), the model not ready, the server shutting down or a request not ' +
        'answered in time (503, may carry Retry-After), its deadline passed (504)',
    },
  };
}

/**
 * Puts a route's documentation-only fields into its schema and adds the error responses. Runs per route when the
 * document is generated; the schema Fastify validates with is not touched.
 */
const transform: NonNullable<FastifyDynamicSwaggerOptions['transform']> = ({ schema: routeSchema, url }) => {
  const schema = routeSchema as Record<string, unknown> | undefined;
  if (!schema) return { schema: { response: { 200: { description: 'OK' }, ...errorResponses(url) } }, url };
  const { [DOC_ONLY]: docOnly, ...rest } = schema as Record<string, unknown> & { [DOC_ONLY]?: DocOnly };
  const response = { ...(rest.response as Record<string, unknown> | undefined), ...docOnly?.response };
  // without any success answer declared, @fastify/swagger's own default (200) would be lost with the errors added
  if (!Object.keys(response).some((status) => status.startsWith('2'))) response['200'] = { description: 'OK' };
  return {
    schema: {
      ...rest,
      ...(docOnly?.body ? { body: docOnly.body } : {}),
      ...(docOnly?.headers ? { headers: docOnly.headers } : {}),
      response: { ...errorResponses(url), ...response },
    },
    url,
  };
};

/** @fastify/swagger's options: OpenAPI 3.0 with our tags and the transform above. */
export function swaggerOptions(): FastifyDynamicSwaggerOptions {
  return {
    openapi: {
      info: { title: 'Muon Serve', version: serverInfo.version, description: 'ONNX inference with dynamic batching' },
      tags: [...openapiTags],
      components: {
        securitySchemes: { admin: { type: 'http', scheme: 'bearer', description: 'MUON_ADMIN_TOKEN' } },
      },
    },
    transform,
  };
}
