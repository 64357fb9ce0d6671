/**
 * metric-series.ts against prom-client's own metrics: the same observations give the same text exposition, byte for
 * byte, so a scraper cannot tell them apart.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import t from 'tap';
import { SeriesCounter, SeriesGauge, SeriesHistogram } from '../src/metric-series.js';

const register = (r: Registry, m: { readonly name: string }) =>
  r.registerMetric(m as unknown as Parameters<Registry['registerMetric']>[0]);

t.test('a histogram is exported as prom-client exports the same observations', async (t) => {
  const buckets = [0.0005, 0.001, 0.01, 0.1, 1];
  const theirs = new Registry();
  const ours = new Registry();
  const reference = new Histogram({
    name: 'h_seconds',
    help: 'help "text"\nwith a newline',
    labelNames: ['model'] as const,
    buckets,
    registers: [theirs],
  });
  const series = new SeriesHistogram('h_seconds', 'help "text"\nwith a newline', ['model'] as const, buckets);
  register(ours, series);
  // on a bound, between bounds, past the last one, zero, negative, a second series
  const seen: [string, number][] = [
    ['a', 0.001],
    ['a', 0.0007],
    ['a', 5],
    ['a', 0],
    ['a', -1],
    ['b', 0.05],
    ['a', 0.1],
  ];
  for (const [model, v] of seen) {
    reference.observe({ model }, v);
    series.observe({ model }, v);
  }
  t.equal(await ours.metrics(), await theirs.metrics());
  t.match(await ours.metrics(), /h_seconds_bucket\{le="0.001",model="a"\} 4\n/);
  t.match(await ours.metrics(), /h_seconds_bucket\{le="\+Inf",model="a"\} 6\n/);
  for (const bad of [NaN, Infinity, -Infinity]) t.throws(() => series.observe({ model: 'a' }, bad), RangeError);
  t.throws(() => new SeriesHistogram('x', 'x', ['model'] as const, [1, 1]), RangeError);

  series.reset();
  reference.reset();
  t.equal(await ours.metrics(), await theirs.metrics(), 'reset forgets every series');
});

t.test('counters and gauges with one or two labels are exported as prom-client exports them', async (t) => {
  const theirs = new Registry();
  const ours = new Registry();
  const refCounter = new Counter({
    name: 'c_total',
    help: 'c',
    labelNames: ['model', 'code'] as const,
    registers: [theirs],
  });
  const refGauge = new Gauge({ name: 'g', help: 'g', labelNames: ['model'] as const, registers: [theirs] });
  const counter = new SeriesCounter('c_total', 'c', ['model', 'code'] as const);
  const gauge = new SeriesGauge('g', 'g', ['model'] as const);
  register(ours, counter);
  register(ours, gauge);
  for (const [model, code] of [
    ['a', '200'],
    ['a', '429'],
    ['a', '200'],
    ['b', '200'],
  ]) {
    refCounter.inc({ model, code });
    counter.inc({ model, code });
  }
  refCounter.inc({ model: 'b', code: '500' }, 2.5);
  counter.inc({ model: 'b', code: '500' }, 2.5);
  for (const [model, v] of [
    ['a', 3],
    ['b', 7],
    ['a', 0],
  ] as const) {
    refGauge.set({ model }, v);
    gauge.set({ model }, v);
  }
  t.equal(await ours.metrics(), await theirs.metrics());
  t.match(await ours.metrics(), /c_total\{model="a",code="200"\} 2\n/);
  t.throws(() => counter.inc({ model: 'a', code: '200' }, -1), RangeError, 'a counter never goes down');
  t.throws(() => counter.inc({ model: 'a', code: '200' }, Infinity), RangeError);
  t.throws(() => gauge.set({ model: 'a' }, NaN), RangeError);
  // label values that differ only in where a separator would fall are different series
  counter.inc({ model: 'a\u0000', code: 'b' });
  counter.inc({ model: 'a', code: '\u0000b' });
  t.equal(counter.get().values.length, 6);
});
