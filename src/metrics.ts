import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { InferenceStatistics } from './inference-stats.js';
import { SeriesCounter, SeriesGauge, SeriesHistogram, type MetricSnapshot } from './metric-series.js';

/** Latency buckets (seconds) from 0.5 ms to 10 s: fine below 50 ms, where batching and preprocessing live. */
const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const batchBuckets = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128];

/** The states of a model folder (models/status.ts), each a `muon_model_state` series. */
const MODEL_STATES = ['LOADING', 'READY', 'FAILED', 'UNAVAILABLE'] as const;

/** What the per-model gauges read from the repository at a scrape. */
export interface ModelGauges {
  readonly name: string;
  readonly state: (typeof MODEL_STATES)[number];
  /** Requests its queues hold (0 when it is not ready). */
  readonly queueCapacity: number;
}

/**
 * Every metric the server exports, on a private registry (so tests can build several apps in one process).
 * The only module that imports prom-client. Labels are bounded: model names come from the repository, codes from
 * errors.ts, never from request data.
 */
export class Metrics {
  readonly registry = new Registry();

  /** Per model version counters for Triton's statistics extension, updated where the per-model metrics are. */
  readonly statistics = new InferenceStatistics();

  // (the metrics a request updates are metric-series.ts's; the others prom-client's own)
  readonly requests = this.#register(
    new SeriesCounter('muon_requests_total', 'Inference requests answered, by model and HTTP status code.', [
      'model',
      'code',
    ] as const),
  );
  readonly requestDuration = this.#perModelHistogram(
    'muon_request_duration_seconds',
    'Time from request received to response sent, for inference requests.',
  );
  readonly queueWait = this.#perModelHistogram(
    'muon_queue_wait_seconds',
    'Time a request waited in its model queue before its batch was cut.',
  );
  readonly inferenceDuration = this.#perModelHistogram(
    'muon_inference_duration_seconds',
    'Time one batch spent in the runtime (stack, session.run, split).',
  );
  readonly preprocessDuration = this.#perModelHistogram(
    'muon_preprocess_duration_seconds',
    'Time spent turning one request body into an input tensor (decode, resize, normalize).',
  );
  readonly batchSize = this.#perModelHistogram(
    'muon_batch_size',
    'Requests per batch sent to the runtime.',
    batchBuckets,
  );
  readonly queueDepth = this.#register(
    new SeriesGauge('muon_queue_depth', 'Requests waiting in the model queue.', ['model'] as const),
  );
  readonly dropped = new Counter({
    name: 'muon_requests_dropped_total',
    help: 'Queued requests dropped before compute: deadline passed, or client disconnected (cancelled).',
    labelNames: ['model', 'reason'] as const,
    registers: [this.registry],
  });
  readonly modelInfo = new Gauge({
    name: 'muon_model_info',
    help: 'Loaded models: always 1, labels say version and execution provider.',
    labelNames: ['model', 'version', 'provider'] as const,
    registers: [this.registry],
  });
  readonly providerFallbacks = new Counter({
    name: 'muon_execution_provider_fallbacks_total',
    help: 'Sessions that asked for CUDA (auto) and fell back to CPU: reason not_installed (no CUDA provider: a CPU machine) or failed.',
    labelNames: ['model', 'reason'] as const,
    registers: [this.registry],
  });

  readonly sessionRestarts = new Counter({
    name: 'muon_session_restarts_total',
    help: 'Session worker threads that died and were replaced (their run failed with a 500).',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });

  /** What {@link memoryBudget} reads at each scrape (set by {@link watchMemoryBudget}). */
  #memoryBudget: { readonly limit: number; readonly used: number } | undefined;
  readonly memoryBudget = new Gauge({
    name: 'muon_memory_budget_bytes',
    help: 'The memory budget requests are admitted against (MUON_MEMORY_BUDGET_BYTES), and the bytes they hold now.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
    // read when scraped: requests take and give back budget several times each, which is no reason to update a gauge
    collect: () => {
      if (this.#memoryBudget === undefined) return;
      this.memoryBudget.set({ kind: 'limit' }, this.#memoryBudget.limit);
      this.memoryBudget.set({ kind: 'used' }, this.#memoryBudget.used);
    },
  });
  /** Exports `budget`'s limit and the bytes held now as `muon_memory_budget_bytes`, read at each scrape. */
  watchMemoryBudget(budget: { readonly limit: number; readonly used: number }): void {
    this.#memoryBudget = budget;
  }
  readonly memoryAdmissions = this.#register(
    new SeriesCounter(
      'muon_memory_admissions_total',
      'Memory budget admissions: admitted at once, after waiting, or refused (busy: 429, too_large: 413).',
      ['outcome'] as const,
    ),
  );

  /** What {@link modelState} and {@link queueCapacity} read at each scrape (set by {@link watchModels}). */
  #models: (() => Iterable<ModelGauges>) | undefined;
  readonly modelState = new Gauge({
    name: 'muon_model_state',
    help: 'State of each model folder: 1 for the state it is in (LOADING, READY, FAILED, UNAVAILABLE), 0 for the others.',
    labelNames: ['model', 'state'] as const,
    registers: [this.registry],
    // read when scraped, from the repository: a model's state changes in a dozen places, none of which need know
    collect: () => {
      if (this.#models === undefined) return;
      this.modelState.reset();
      for (const m of this.#models())
        for (const state of MODEL_STATES) this.modelState.set({ model: m.name, state }, m.state === state ? 1 : 0);
    },
  });
  readonly queueCapacity = new Gauge({
    name: 'muon_queue_capacity',
    help: 'Requests the model queue holds before it refuses (429): its manifest maxQueueSize, summed over its versions.',
    labelNames: ['model'] as const,
    registers: [this.registry],
    collect: () => {
      if (this.#models === undefined) return;
      this.queueCapacity.reset();
      for (const m of this.#models())
        if (m.queueCapacity > 0) this.queueCapacity.set({ model: m.name }, m.queueCapacity);
    },
  });
  /** Exports each model's state and queue capacity as `muon_model_state` and `muon_queue_capacity`, read at each scrape. */
  watchModels(models: () => Iterable<ModelGauges>): void {
    this.#models = models;
  }

  readonly modelReloads = new Counter({
    name: 'muon_model_reloads_total',
    help: 'Background reloads of models whose sessions broke at run time, by outcome (ready, failed).',
    labelNames: ['model', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly largeInputAdmissions = new Counter({
    name: 'muon_large_input_admissions_total',
    help: 'Inputs of 32 MiB or more decoded, admitted to their lane (half the cores): at once, after waiting, or refused (429).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly pacedRefusals = new Counter({
    name: 'muon_client_errors_paced_total',
    help: 'Client errors (4xx but 429) held back because their client went over MUON_CLIENT_ERROR_RATE.',
    registers: [this.registry],
  });

  readonly pacedSeconds = new Counter({
    name: 'muon_client_errors_paced_seconds_total',
    help: 'Seconds client errors were held back in all (see muon_client_errors_paced_total).',
    registers: [this.registry],
  });

  #perModelHistogram(name: string, help: string, buckets = latencyBuckets): SeriesHistogram<'model'> {
    return this.#register(new SeriesHistogram(name, help, ['model'] as const, buckets));
  }

  #register<M extends { readonly name: string; get(): MetricSnapshot }>(metric: M): M {
    // the registry reads any metric through get() (typed for its own classes only)
    this.registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
    return metric;
  }

  /** @param defaultMetrics also export prom-client's process metrics (CPU, memory, event loop lag, GC) */
  constructor(defaultMetrics = true) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** The Prometheus text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Content type of {@link render}'s output. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
