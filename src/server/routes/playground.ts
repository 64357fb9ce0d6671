import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { packageRoot } from '../../config.js';
import { Errors } from '../../errors.js';
import type { App, AppDeps } from '../app.js';

/**
 * The playground's files, by the name they are served under: a fixed list, so no request path ever reaches the
 * file system. They are plain ES modules and CSS, with no build step (see docs/playground.md).
 */
const FILES: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'api.js': 'text/javascript; charset=utf-8',
  'draw.js': 'text/javascript; charset=utf-8',
  'audio.js': 'text/javascript; charset=utf-8',
  'icon.svg': 'image/svg+xml',
};

/**
 * Same origin only: the page's scripts, styles and icon come from here and it talks only to this server. Images
 * and audio the user picks are drawn through canvas (createImageBitmap, decodeAudioData), so no blob: or data:
 * source is needed.
 */
export const PLAYGROUND_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

/**
 * Where the files are: next to this module once built (`prepare` copies them into dist/server/playground, which is
 * what the container image has), else in the checkout's src/ (after a bare `tsc`, which copies nothing).
 */
function playgroundDir(): string | undefined {
  const candidates = [
    fileURLToPath(new URL('../playground/', import.meta.url)),
    path.join(packageRoot, 'src', 'server', 'playground'),
  ];
  return candidates.find((dir) => Object.keys(FILES).every((f) => existsSync(path.join(dir, f))));
}

/** Reads every file once: they are small (about 25 KB together) and never change while the server runs. */
function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const [name, type] of Object.entries(FILES)) {
    const body = readFileSync(path.join(dir, name));
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    assets.set(name, { body, type, etag });
  }
  return assets;
}

/**
 * `GET /playground` (and its files under `/playground/`): a page to try the served models from a browser. `GET /`
 * redirects to it. Files are revalidated on every load (`no-cache` with an ETag), so an upgraded server is never
 * shown with stale scripts.
 */
export async function playgroundRoutes(app: App, { logger }: AppDeps): Promise<void> {
  const dir = playgroundDir();
  if (dir === undefined) {
    // the API does not need the page: a broken install loses the playground, not the server
    logger.warn('playground files not found; /playground is not served');
    return;
  }
  const assets = loadAssets(dir);

  const send = (req: FastifyRequest, reply: FastifyReply, asset: Asset) => {
    reply
      .header('cache-control', 'no-cache')
      .header('etag', asset.etag)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('content-security-policy', PLAYGROUND_CSP);
    if (req.headers['if-none-match'] === asset.etag) return reply.code(304).send();
    return reply.type(asset.type).send(asset.body);
  };

  const tags = ['playground'];
  app.get('/', { schema: { tags, summary: 'Redirects to the playground page' } }, (_req, reply) =>
    reply.redirect('/playground'),
  );
  app.get('/playground/', { schema: { hide: true } }, (_req, reply) => reply.redirect('/playground'));
  app.get(
    '/playground',
    {
      schema: {
        tags,
        summary: 'A page to try the served models in a browser',
        description: 'Pick a model, give it an image, a WAV file, a recording or text, and see its answer drawn.',
      },
    },
    (req, reply) => send(req, reply, assets.get('index.html')!),
  );
  app.get(
    '/playground/:file',
    { schema: { hide: true, params: Type.Object({ file: Type.String() }) } },
    (req, reply) => {
      const asset = Object.hasOwn(FILES, req.params.file) ? assets.get(req.params.file) : undefined;
      if (asset === undefined) throw new Errors.NOT_FOUND(req.method, req.url.split('?')[0]);
      return send(req, reply, asset);
    },
  );
}
