import multipart from '@fastify/multipart';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static } from 'typebox';
import { Errors } from '../../errors.js';
import { modelNamePattern } from '../../models/manifest.js';
import { answerFields } from '../../models/tasks/registry.js';
import type { LoadedModel } from '../../models/repository.js';
import type { WireInput } from '../../models/tasks/task.js';
import { abortOnClose, requestTimeoutMs, trackRequests } from '../request-metrics.js';
import { isWav } from '../../preprocess/audio.js';
import { decodeUtf8, notUtf8 } from '../../preprocess/text.js';
import type { App, RouteDeps } from '../app.js';
import { LARGE_INPUT_BYTES } from '../memory-budget.js';
import { inputCost } from '../request-cost.js';
import { RequestCapture } from '../capture.js';
import { bodyReceived, takeTurn } from '../connection.js';
import { Binary, DOC_ONLY, type DocOnly } from '../openapi.js';

const Query = Type.Object(
  {
    model: Type.Optional(
      Type.String({ pattern: modelNamePattern, description: 'Model name; MUON_DEFAULT_MODEL when absent.' }),
    ),
    top_k: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 100_000,
        description: "How many classes to return; the manifest's topK when absent.",
      }),
    ),
    timeout_ms: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 600_000,
        description:
          "Deadline for this request (queue and compute; also the x-muon-timeout-ms header), capped by the model's maxTimeoutMs; the model's default when absent.",
      }),
    ),
  },
  { additionalProperties: false },
);

const Params = Type.Object({ name: Type.String({ pattern: modelNamePattern }) });

/**
 * Header lines read from a multipart part; busboy drops those past it, so a part whose Content-Disposition comes
 * later has no name and is skipped (answered as a missing file, not held).
 */
const PART_HEADER_LINES = 64;

/** The JSON form of a text input (`application/json`); raw text goes as `text/plain`. */
const TextBody = Type.Object(
  { text: Type.String({ description: 'The text, for models that take text (e.g. language-id).' }) },
  { additionalProperties: false },
);

/**
 * One answer shape for every task: the common fields, plus each registered task's own (classification and
 * language-id: `predictions`; face-detection: `faces`; voice-activity: `segments` and `duration_ms`;
 * text-recognition: `lines`; ocr: `lines` with their boxes). Declared so that Fastify serializes answers fast and
 * OpenAPI documents them.
 */
const PredictResponse = Type.Object({
  model: Type.String(),
  version: Type.String(),
  task: Type.String(),
  ...answerFields(),
});

/**
 * `POST /predict?model=` and `POST /v1/models/{name}/predict`: one input (a multipart file or a raw body), one answer.
 * Images come as a multipart file or a raw `image/*` / `application/octet-stream` body (the format is decided from
 * the bytes); text comes as a raw `text/plain` body (strict UTF-8) or as JSON `{"text": "..."}`; audio comes as a WAV
 * file, multipart or a raw `audio/wav` (`audio/x-wav`, `audio/wave`, `audio/vnd.wave`) body.
 */
export async function predictRoutes(
  app: App,
  { config, repository, metrics, budget, largeInputs }: RouteDeps,
): Promise<void> {
  await app.register(multipart, {
    limits: {
      fileSize: config.maxBodyBytes,
      files: 1,
      fields: 16,
      fieldSize: 16 * 1024,
      parts: 32,
      headerPairs: PART_HEADER_LINES,
    },
  });
  for (const type of [/^image\/[\w.+-]+$/, 'application/octet-stream', ...audioTypes]) {
    app.addContentTypeParser(type, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  }
  // replaces Fastify's own text/plain parser, which would turn invalid UTF-8 into U+FFFD instead of refusing it
  app.addContentTypeParser('text/plain', { parseAs: 'buffer' }, (req, body, done) => {
    const refusal = notUtf8(req.headers['content-type'], 'text/plain');
    if (refusal) return done(refusal, undefined);
    try {
      done(null, new TextInput(decodeUtf8(body as Buffer)));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  const capture = config.capture ? new RequestCapture(config.capture, app.log) : undefined;
  const track = trackRequests(app, metrics);

  const handle = async (
    name: string,
    query: Static<typeof Query>,
    req: FastifyRequest,
    reply: FastifyReply,
  ): Promise<Static<typeof PredictResponse>> => {
    const named = lookup(name); // refuses an unknown model before its body is read
    track.model(req, named.name, named.version);
    const input = await readInput(req);
    // what decoding will hold, admitted before it happens (from the image or WAV header)
    const cost = inputCost(input, lookup(name).manifest, config.maxImagePixels);
    const what = `this ${input.kind} input`;
    req.holdings.add(budget.tryAcquire(cost, what) ?? (await budget.acquire(cost, what)));
    if (cost >= LARGE_INPUT_BYTES) req.holdings.add(await largeInputs.acquire(1, `this large ${input.kind} input`));
    // looked up again once the body is in and admitted (an upload can outlast a reload of the model), and handed
    // to it at once
    const model = lookup(name);
    track.model(req, model.name, model.version);
    if (!model.pipeline.accepts.includes(input.kind)) {
      throw new Errors.UNSUPPORTED_MEDIA_TYPE(
        `model '${model.name}' takes ${model.pipeline.accepts.join(' or ')} input, not ${input.kind}`,
      );
    }
    const timeoutMs = requestTimeoutMs(req, model, query.timeout_ms);
    const answer = await model.infer(input, {
      topK: query.top_k,
      deadline: track.arrival(req) + timeoutMs, // from arrival, upload included
      timeoutMs,
      signal: abortOnClose(reply),
    });
    // successes only: failed inputs make poor calibration data; capture never fails a request
    capture?.offer(model.name, input).catch((err: unknown) => req.log.warn({ err }, 'capture failed'));
    return {
      model: model.name,
      version: model.version,
      task: model.task,
      ...(answer as object), // the task's own fields, declared by its definition (registry.ts)
    };
  };

  const lookup = (name: string): LoadedModel => repository.readyModel(name);

  const schema = {
    tags: ['predict'],
    description: PREDICT_DESCRIPTION,
    querystring: Query,
    // every body is checked by its reader (readInput): a JSON one is not validated against TextBody by Fastify, whose
    // validator coerces types (`{"text": true}` would be read as the text "true")
    [DOC_ONLY]: { body: { content: documentedBodies } } satisfies DocOnly,
    response: { 200: PredictResponse },
  };
  app.post(
    '/predict',
    { schema: { ...schema, summary: 'Run one input through a model (?model=, else the default model)' } },
    (req, reply) => handle(req.query.model ?? config.defaultModel, req.query, req, reply),
  );
  app.post(
    '/v1/models/:name/predict',
    { schema: { ...schema, summary: 'Run one input through the named model', params: Params } },
    (req, reply) => handle(req.params.name, req.query, req, reply),
  );
}

/** Raw WAV bodies; the bytes decide (RIFF/WAVE), as for images. */
const audioTypes = ['audio/wav', 'audio/x-wav', 'audio/wave', 'audio/vnd.wave'];

const PREDICT_DESCRIPTION =
  'One input per request: an image (JPEG, PNG or WebP: the bytes decide, not the declared type) or a WAV ' +
  'recording, as a multipart `file` or as the raw body; text as a raw `text/plain` body (UTF-8) or JSON ' +
  '`{"text": "..."}`. The answer has the common fields (`model`, `version`, `task`) and the task\'s own.';

/**
 * Every body the route reads, for the OpenAPI document only: Fastify validates the JSON one (the route's `body`);
 * the others are checked by their decoders (readInput).
 */
const documentedBodies: Record<string, { schema: unknown }> = {
  'multipart/form-data': {
    schema: {
      type: 'object',
      properties: { file: { ...Binary, description: 'the image or WAV file (exactly one file part)' } },
      required: ['file'],
    },
  },
  ...Object.fromEntries(
    ['image/png', 'image/jpeg', 'image/webp', 'application/octet-stream', ...audioTypes].map((type) => [
      type,
      { schema: { ...Binary, description: type.startsWith('audio/') ? 'a WAV file' : 'an image file' } },
    ]),
  ),
  'text/plain': { schema: { type: 'string', description: 'the text, UTF-8' } },
  'application/json': { schema: TextBody },
};

/** A decoded `text/plain` body, told apart from a JSON body by its class. */
class TextInput {
  constructor(readonly text: string) {}
}

/**
 * The one file of a multipart body. busboy reports a malformed body (cut off, no boundary, a broken part header)
 * with plain errors that carry no code; they are the client's fault, so they become 400s, not 500s.
 */
async function readOneFile(req: FastifyRequest): Promise<Buffer> {
  let bytes: Buffer | undefined;
  try {
    for await (const part of req.parts()) {
      if (part.type !== 'file') {
        // fields are ignored, but one over the field size limit is refused rather than silently cut
        if (part.valueTruncated) throw new Errors.BAD_REQUEST(`multipart field '${part.fieldname}' is over 16 KiB`);
        continue;
      }
      if (bytes) throw new Errors.BAD_REQUEST('send exactly one file');
      // read as toBuffer() would, each chunk charged to the memory budget as it comes (waiting pauses the upload)
      const chunks: Buffer[] = [];
      for await (const chunk of part.file) {
        await req.bodyMeter.received(chunk.length);
        chunks.push(chunk);
        await takeTurn(chunk.length);
      }
      if (part.file.truncated) throw new req.server.multipartErrors.RequestFileTooLargeError();
      bytes = Buffer.concat(chunks);
    }
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('MUON_ERR_') || code.startsWith('FST_')) throw err;
    throw new Errors.BAD_REQUEST(`malformed multipart body: ${(err as Error).message}`);
  }
  if (!bytes)
    throw new Errors.MISSING_INPUT(
      `the multipart body has no file part: a part needs a Content-Disposition header with a name among its first ${PART_HEADER_LINES} header lines (curl -F file=@image.jpg)`,
    );
  bodyReceived(req);
  return bytes;
}

/**
 * Reads the single input of a predict request: the one file of a multipart body, a raw image or audio body, a raw
 * text body or a JSON `{"text"}` body. Files and raw bodies whose bytes are RIFF/WAVE are audio, whatever their
 * declared type; other bytes are images (the image decoder refuses what is not one).
 */
async function readInput(req: FastifyRequest): Promise<WireInput> {
  let bytes: Buffer | undefined;
  if (req.isMultipart()) {
    bytes = await readOneFile(req);
  } else if (Buffer.isBuffer(req.body)) {
    bytes = req.body;
  } else if (req.body instanceof TextInput) {
    if (req.body.text === '') throw new Errors.MISSING_INPUT('the request body is empty');
    return { kind: 'text', text: req.body.text };
  } else if (req.mediaType === 'application/json') {
    const body = req.body as Partial<Static<typeof TextBody>> | null;
    const keys = typeof body === 'object' && body !== null && !Array.isArray(body) ? Object.keys(body) : undefined;
    if (keys?.length !== 1 || typeof body?.text !== 'string')
      throw new Errors.BAD_REQUEST('a JSON body is {"text": "..."}: one key, text, whose value is a string');
    return { kind: 'text', text: body.text };
  } else if (req.body === undefined || req.body === null || req.body === '') {
    throw new Errors.MISSING_INPUT('the request body is empty');
  } else {
    throw new Errors.UNSUPPORTED_MEDIA_TYPE(
      `${req.headers['content-type'] ?? 'this content type'} (send an image as multipart/form-data or a raw image/* body, or text as text/plain or JSON {"text": "..."})`,
    );
  }
  if (bytes.length === 0) throw new Errors.MISSING_INPUT('the uploaded file is empty');
  if (isWav(bytes)) return { kind: 'audio', bytes };
  if (audioTypes.includes(req.mediaType ?? '')) {
    if (bytes.length < 12 && bytes.subarray(0, 4).toString('latin1') === 'RIFF') {
      throw new Errors.INVALID_AUDIO('the RIFF header is truncated');
    }
    throw new Errors.UNSUPPORTED_MEDIA_TYPE(`${req.mediaType} body that is not a RIFF/WAVE file (send WAV audio)`);
  }
  return { kind: 'image', bytes };
}
