import { Type } from 'typebox';
import { Errors } from '../../errors.js';
import type { ModelStatus } from '../../models/status.js';
import type { AppDeps, App } from '../app.js';

function describe(s: ModelStatus): Record<string, unknown> {
  if (s.state === 'READY') return { ...s.model.describe(), versions: [...s.versions.keys()] };
  if (s.state !== 'FAILED') return { name: s.name, state: s.state };
  const reload =
    s.nextReloadAt === undefined
      ? {}
      : { reload: { attempts: s.reloads ?? 0, next_in_ms: Math.max(0, s.nextReloadAt - Date.now()) } };
  return { name: s.name, state: s.state, reason: s.error, ...reload };
}

/** `GET /v1/models` and `GET /v1/models/{name}`: what is served, on which provider, with which batching limits. */
export async function modelRoutes(app: App, { repository }: AppDeps): Promise<void> {
  app.get(
    '/v1/models',
    { schema: { tags: ['models'], summary: 'Every model: state, versions, execution provider, batching limits' } },
    async () => ({ models: repository.list().map(describe) }),
  );
  app.get(
    '/v1/models/:name',
    {
      schema: {
        tags: ['models'],
        summary: 'One model: state, versions, execution provider, batching limits (or why it failed)',
        params: Type.Object({ name: Type.String({ maxLength: 256 }) }),
      },
    },
    async (req) => {
      const s = repository.status(req.params.name);
      if (!s) throw new Errors.MODEL_NOT_FOUND(req.params.name);
      return describe(s);
    },
  );
}
