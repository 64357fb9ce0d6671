import type { ExecutionProviderChoice } from '../config.js';
import type { LoadedModel } from './loaded-model.js';
import { cudaNotInstalled } from './session.js';

// The startup line about execution providers: one line for the whole repository, not a warning per model, since on a
// machine without CUDA every model falls back for the same expected reason.

/** A served model's provider, and why it is on the CPU when `auto` wanted CUDA. */
export interface ModelProvider {
  readonly name: string;
  readonly provider: 'cuda' | 'cpu';
  readonly fallbackReason?: string;
}

/** A served model's provider and fallback reason. */
export const providerOf = (m: LoadedModel): ModelProvider => ({
  name: m.name,
  provider: m.session.provider,
  ...(m.session.fallbackReason ? { fallbackReason: m.session.fallbackReason } : {}),
});

/** The line's level, message and fields. */
export interface ProviderLine {
  readonly level: 'info' | 'warn';
  readonly msg: 'execution providers';
  readonly fields: {
    readonly requested: ExecutionProviderChoice;
    readonly providers: Record<string, 'cuda' | 'cpu'>;
    /** Why the models on the CPU are there, when they share one reason (the usual case). */
    readonly cpuReason?: string;
    /** Each model's reason, when they differ. */
    readonly cpuReasons?: Record<string, string>;
  };
}

/**
 * Which provider each model got and why any is on the CPU: at info when that is expected (`MUON_EXECUTION_PROVIDER=cpu`,
 * or `auto` on a machine without the CUDA provider), at warn when CUDA is installed but failed to load a model.
 */
export function providerLine(models: readonly ModelProvider[], requested: ExecutionProviderChoice): ProviderLine {
  const providers = Object.fromEntries(models.map((m) => [m.name, m.provider]));
  const reasons = new Map<string, string>();
  for (const m of models) {
    if (m.provider !== 'cpu') continue;
    reasons.set(m.name, requested === 'cpu' ? 'MUON_EXECUTION_PROVIDER=cpu' : (m.fallbackReason ?? 'unknown'));
  }
  const distinct = new Set(reasons.values());
  const failed = [...distinct].some((r) => r !== 'MUON_EXECUTION_PROVIDER=cpu' && !cudaNotInstalled(r));
  return {
    level: failed ? 'warn' : 'info',
    msg: 'execution providers',
    fields: {
      requested,
      providers,
      ...(distinct.size === 1 ? { cpuReason: [...distinct][0] } : {}),
      ...(distinct.size > 1 ? { cpuReasons: Object.fromEntries(reasons) } : {}),
    },
  };
}
