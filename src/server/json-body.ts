import { Errors } from '../errors.js';
import { decodeUtf8, notUtf8 } from '../preprocess/text.js';
import { nestedDeeperThan } from '../protocol/v2-codec.js';
import type { App } from './app.js';

// JSON bodies outside the v2 infer routes (which read theirs whole and bound them: routes/v2.ts) are small: /predict's
// `{"text": "..."}`, the repository calls'. Parsing is synchronous on the event loop and a parsed tree can take 30
// times its text (8 MiB of `[[[[...` took a second of the loop and 250 MB each): such a body is checked before it is
// parsed.

/** Bytes of such a JSON body (a text model's input is at most its manifest's `input.maxBytes`, 16 KiB by default). */
export const JSON_BODY_BYTES = 1 << 20;
/** How deep such a body may nest (`{"text"}` is 1 deep). */
export const JSON_BODY_DEPTH = 16;

/**
 * Replaces Fastify's `application/json` parser: a body over {@link JSON_BODY_BYTES} is 413, one nested deeper than
 * {@link JSON_BODY_DEPTH} 400, one that is not UTF-8 (or declares another charset) refused as a `text/plain` body
 * is; then Fastify's own parser (which refuses `__proto__` and `constructor.prototype` keys).
 */
export function jsonBodies(app: App): void {
  // Fastify's defaults: a `__proto__` or `constructor.prototype` key is refused
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    // a route that does not exist answers 404 without its body being read as JSON
    if (req.routeOptions.url === undefined) return done(null, undefined);
    const bytes = body as Buffer;
    const refusal = notUtf8(req.headers['content-type'], 'application/json');
    if (refusal) return done(refusal, undefined);
    if (bytes.length > JSON_BODY_BYTES) return done(new Errors.BODY_TOO_LARGE(String(JSON_BODY_BYTES)), undefined);
    if (nestedDeeperThan(bytes, JSON_BODY_DEPTH))
      return done(new Errors.BAD_REQUEST(`the JSON body is nested deeper than ${JSON_BODY_DEPTH} levels`), undefined);
    let text: string;
    try {
      text = decodeUtf8(bytes);
    } catch (err) {
      return done(err as Error, undefined);
    }
    parse(req, text, done);
  });
}
