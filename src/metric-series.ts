// Counters, gauges and histograms for the metrics every request updates. prom-client's own hash a request's labels
// on every call and make a label object for each: the seven updates of a language-id request took 2.1 us of the
// event loop, against 0.4 us with these (bench/results/metric-cost.md; a request takes about 50 us at saturation).
// These keep one series object per label values, found by a Map lookup on the values themselves, and are exported
// through the same prom-client registry (`Registry.registerMetric`, which reads `get()`), in the same text format
// (the same lines as prom-client's; a registry with default labels, which this server does not set, would order a
// histogram's labels differently).

/** The label values of one series, by label name. */
export type LabelValues<L extends string> = Readonly<Record<L, string>>;

/** One value prom-client's registry writes as a line. */
interface Sample {
  readonly metricName?: string;
  readonly labels: Record<string, string | number>;
  readonly value: number;
}

/** What a registry reads from a metric at a scrape (prom-client's `MetricObjectWithValues`). */
export interface MetricSnapshot {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly aggregator: 'sum';
  readonly values: Sample[];
}

/** The series of one metric, by label values. */
abstract class SeriesMetric<L extends string, S> {
  readonly aggregator = 'sum';
  abstract readonly type: MetricSnapshot['type'];
  readonly #series = new Map<string, { readonly labels: LabelValues<L>; readonly series: S }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly L[],
  ) {}

  /** The series for these label values, made (at zero) on first use. */
  protected seriesOf(labels: LabelValues<L>): S {
    const names = this.labelNames;
    // one label: its value is the key; more: each value after its length, so no two tuples share a key
    let key = names.length === 1 ? labels[names[0]] : '';
    if (names.length > 1) for (const n of names) key += `${labels[n].length}:${labels[n]}`;
    let entry = this.#series.get(key);
    if (entry === undefined) {
      const copy = Object.fromEntries(names.map((n) => [n, String(labels[n])])) as LabelValues<L>;
      entry = { labels: copy, series: this.create() };
      this.#series.set(key, entry);
    }
    return entry.series;
  }

  protected abstract create(): S;
  protected abstract samples(labels: LabelValues<L>, series: S): Sample[];

  /** Every series, as prom-client's registry reads them at a scrape. */
  get(): MetricSnapshot {
    const values: Sample[] = [];
    for (const { labels, series } of this.#series.values()) values.push(...this.samples(labels, series));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** Forgets every series (prom-client's `Registry.resetMetrics`). */
  reset(): void {
    this.#series.clear();
  }
}

/** A counter: only goes up. */
export class SeriesCounter<L extends string> extends SeriesMetric<L, { value: number }> {
  readonly type = 'counter';

  inc(labels: LabelValues<L>, by = 1): void {
    if (!(by >= 0 && by < Infinity))
      throw new RangeError(`${this.name}: a counter is increased by a finite number >= 0, got ${by}`);
    this.seriesOf(labels).value += by;
  }

  protected create(): { value: number } {
    return { value: 0 };
  }

  protected samples(labels: LabelValues<L>, s: { value: number }): Sample[] {
    return [{ labels: { ...labels }, value: s.value }];
  }
}

/** A gauge: set to what it measures now. */
export class SeriesGauge<L extends string> extends SeriesMetric<L, { value: number }> {
  readonly type = 'gauge';

  set(labels: LabelValues<L>, value: number): void {
    if (Number.isNaN(value)) throw new RangeError(`${this.name}: set to NaN`);
    this.seriesOf(labels).value = value;
  }

  protected create(): { value: number } {
    return { value: 0 };
  }

  protected samples(labels: LabelValues<L>, s: { value: number }): Sample[] {
    return [{ labels: { ...labels }, value: s.value }];
  }
}

/** One histogram series: a count per bucket (not cumulative; the last one is +Inf), their sum and count. */
interface Buckets {
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

/** A histogram with fixed upper bounds, as Prometheus's: `_bucket{le}` (cumulative), `_sum`, `_count`. */
export class SeriesHistogram<L extends string> extends SeriesMetric<L, Buckets> {
  readonly type = 'histogram';
  readonly #bounds: readonly number[];

  constructor(name: string, help: string, labelNames: readonly L[], bounds: readonly number[]) {
    super(name, help, labelNames);
    if (bounds.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= bounds[i - 1])))
      throw new RangeError(`${name}: bucket bounds must be finite and increasing, got ${bounds.join(', ')}`);
    this.#bounds = [...bounds];
  }

  observe(labels: LabelValues<L>, value: number): void {
    if (!Number.isFinite(value)) throw new RangeError(`${this.name}: observed ${value}, not a finite number`);
    const s = this.seriesOf(labels);
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]) i++;
    s.counts[i]++;
    s.sum += value;
    s.count++;
  }

  protected create(): Buckets {
    return { counts: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 };
  }

  protected samples(labels: LabelValues<L>, s: Buckets): Sample[] {
    const out: Sample[] = [];
    let cumulative = 0;
    this.#bounds.forEach((le, i) => {
      cumulative += s.counts[i];
      out.push({ metricName: `${this.name}_bucket`, labels: { le, ...labels }, value: cumulative });
    });
    out.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...labels }, value: s.count });
    out.push({ metricName: `${this.name}_sum`, labels: { ...labels }, value: s.sum });
    out.push({ metricName: `${this.name}_count`, labels: { ...labels }, value: s.count });
    return out;
  }
}
