import { compareVersions } from './folder.js';
import type { ModelGauges } from '../metrics.js';
import type { LoadedModel } from './loaded-model.js';

/** Status of one model folder in the repository. */
export type ModelStatus =
  | { readonly state: 'LOADING'; readonly name: string }
  | {
      readonly state: 'READY';
      readonly name: string;
      /** The version unversioned requests get: the highest one served. */
      readonly model: LoadedModel;
      /** Every version served, by version. */
      readonly versions: ReadonlyMap<string, LoadedModel>;
    }
  | {
      readonly state: 'FAILED';
      readonly name: string;
      readonly error: string;
      /** Background reloads tried so far, and when the next one starts (epoch ms), for a model that broke. */
      readonly reloads?: number;
      readonly nextReloadAt?: number;
    }
  /** Unloaded on purpose (`POST /v2/repository/models/{name}/unload`); does not count against readiness. */
  | { readonly state: 'UNAVAILABLE'; readonly name: string };

/** A READY status over the versions loaded; unversioned requests get the highest version. */
export function ready(name: string, versions: Map<string, LoadedModel>): Extract<ModelStatus, { state: 'READY' }> {
  const order = [...versions.keys()].sort(compareVersions);
  return { state: 'READY', name, model: versions.get(order.at(-1)!)!, versions };
}

/** What `/metrics` reads of each model folder at a scrape: its state, and the requests its queues hold when READY. */
export function gaugesOf(s: ModelStatus): ModelGauges {
  const queueCapacity =
    s.state === 'READY' ? [...s.versions.values()].reduce((n, m) => n + m.batcher.options.maxQueueSize, 0) : 0;
  return { name: s.name, state: s.state, queueCapacity };
}
