/**
 * Plots of bench/results/models.json (written by bench/models.ts), as SVG through Vega-Lite: server throughput
 * against concurrency per model, batching on and off; and p99 latency against throughput (the usual serving
 * trade-off curve). Usage: npx tsx bench/plot.ts [results.json]   (writes bench/results/*.svg)
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { packageRoot } from '../src/config.js';

interface Row {
  model: string;
  batching: 'on' | 'off';
  connections: number;
  result: { rps: number; latency: { p99: number } };
}

/** Writes the plots of one results file (bench/results/models.json) next to it. */
export async function writePlots(file: string): Promise<void> {
  const results = JSON.parse(await readFile(file, 'utf8')) as {
    machine: { cpuModel: string; cores: number };
    server: Row[];
  };
  const values = results.server
    .filter((r) => r.result.rps > 0)
    .map((r) => ({
      model: r.model,
      batching: `batching ${r.batching}`,
      connections: r.connections,
      rps: Math.round(r.result.rps * 10) / 10,
      p99: Math.round(r.result.latency.p99 * 10) / 10,
    }));
  const machine = `${results.machine.cpuModel}, ${results.machine.cores} cores`;

  async function svg(spec: TopLevelSpec, out: string): Promise<void> {
    const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
    await writeFile(path.join(path.dirname(file), out), await view.toSVG());
    process.stderr.write(`wrote ${path.relative(packageRoot, path.join(path.dirname(file), out))}\n`);
  }

  /** Small multiples, one panel per model, batching on and off as two colours. */
  const faceted = (title: string, encoding: object, resolve: object): TopLevelSpec =>
    ({
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: { text: title, subtitle: machine },
      data: { values },
      facet: { field: 'model', type: 'nominal', title: null },
      columns: 5,
      spec: {
        width: 150,
        height: 110,
        mark: { type: 'line', point: true },
        encoding: { ...encoding, color: { field: 'batching', type: 'nominal', title: null } },
      },
      resolve: { scale: resolve },
    }) as TopLevelSpec;
  await svg(
    faceted(
      'Server throughput by concurrency',
      {
        x: { field: 'connections', type: 'quantitative', scale: { type: 'log', base: 2 }, title: 'connections' },
        y: { field: 'rps', type: 'quantitative', title: 'req/s' },
      },
      { y: 'independent' },
    ),
    'throughput.svg',
  );
  await svg(
    faceted(
      'p99 latency against throughput (points: 1, 4, 16, 64 connections)',
      {
        x: { field: 'rps', type: 'quantitative', title: 'req/s' },
        y: { field: 'p99', type: 'quantitative', scale: { type: 'log' }, title: 'p99 ms' },
        order: { field: 'connections', type: 'quantitative' },
      },
      { x: 'independent', y: 'independent' },
    ),
    'latency-vs-throughput.svg',
  );
}

// run directly: npx tsx bench/plot.ts [results.json]
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await writePlots(process.argv[2] ?? path.join(packageRoot, 'bench/results/models.json'));
}
