/**
 * Offline checks of deploy/kubernetes/*.yaml and deploy/grafana/muon-dashboard.json (no cluster, no network).
 *
 * Core kinds are validated against the Kubernetes API schemas that the kubernetes-models package compiles from the
 * official OpenAPI spec (types, required fields, enums, int32/quantity formats). Those schemas are not strict (an
 * unknown field passes), so the fields that matter here are also asserted by name. CRDs (PodMonitor,
 * InferenceService) get structural checks. Cross-checks tie the manifests to the code: probe paths are real
 * routes, env names are real settings, the drain fits in the termination grace period, metric names exist.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { PersistentVolumeClaim, Service } from 'kubernetes-models/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const k8sDir = path.join(root, 'deploy/kubernetes');
const read = (rel: string) => readFileSync(path.join(root, rel), 'utf8');

/** A parsed YAML or JSON object, read loosely: the schemas and the assertions below do the typing. */
type Obj = Record<string, any>;

interface Doc {
  file: string;
  index: number;
  obj: Obj;
}

function loadDocs(): Doc[] {
  const docs: Doc[] = [];
  for (const file of readdirSync(k8sDir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()) {
    const parsed = parseAllDocuments(readFileSync(path.join(k8sDir, file), 'utf8'));
    if (!Array.isArray(parsed)) throw new Error(`${file}: no YAML documents`);
    parsed.forEach((d, index) => {
      if (d.errors.length > 0) throw new Error(`${file}#${index}: ${d.errors.map((e) => e.message).join('; ')}`);
      const obj = d.toJS() as Obj | null;
      if (obj !== null && obj !== undefined) docs.push({ file, index, obj });
    });
  }
  return docs;
}

const docs = loadDocs();
const label = (d: Doc) => `${d.file}#${d.index} ${d.obj.kind}/${d.obj.metadata?.name}`;
const ofKind = (kind: string) => docs.filter((d) => d.obj.kind === kind);

/** Schema validators for core kinds, by `apiVersion/kind`. */
const coreModels: Record<string, (data: Obj) => { validate(): void }> = {
  'apps/v1/Deployment': (d) => new Deployment(d as never),
  'v1/Service': (d) => new Service(d as never),
  'v1/PersistentVolumeClaim': (d) => new PersistentVolumeClaim(d as never),
  'autoscaling/v2/HorizontalPodAutoscaler': (d) => new HorizontalPodAutoscaler(d as never),
  'policy/v1/PodDisruptionBudget': (d) => new PodDisruptionBudget(d as never),
};
const crdKinds = new Set(['monitoring.coreos.com/v1/PodMonitor', 'serving.kserve.io/v1beta1/InferenceService']);

const metricsSource = read('src/metrics.ts');
const configSource = read('src/config.ts');
const routesDir = path.join(root, 'src/server/routes');
const routesSource = readdirSync(routesDir)
  .filter((f) => f.endsWith('.ts'))
  .map((f) => readFileSync(path.join(routesDir, f), 'utf8'))
  .join('\n');

/** Metric names registered in src/metrics.ts (every `'muon_...'` string literal there is a metric name). */
const knownMetrics = new Set([...metricsSource.matchAll(/['"](muon_[a-z0-9_]+)['"]/g)].map((m) => m[1]));
const histogramSuffix = /_(bucket|sum|count)$/;
/** A series name is known if it is a metric, or a histogram's `_bucket`/`_sum`/`_count` series. */
const isKnownSeries = (name: string) =>
  knownMetrics.has(name) || (histogramSuffix.test(name) && knownMetrics.has(name.replace(histogramSuffix, '')));
const metricNamesIn = (text: string) => [...new Set([...text.matchAll(/\bmuon_[a-z0-9_]+/g)].map((m) => m[0]))];

/** Every pod template in the manifests: Deployments' and the InferenceService predictor (a PodSpec inline). */
function podSpecs(): { where: string; spec: Obj; labels: Obj }[] {
  const out = ofKind('Deployment').map((d) => ({
    where: label(d),
    spec: d.obj.spec.template.spec,
    labels: d.obj.spec.template.metadata.labels,
  }));
  for (const d of ofKind('InferenceService')) {
    out.push({ where: label(d), spec: d.obj.spec.predictor, labels: d.obj.metadata.labels ?? {} });
  }
  return out;
}

const envOf = (container: Obj): Record<string, string> =>
  Object.fromEntries((container.env ?? []).map((e: Obj) => [e.name, e.value]));

const selects = (selector: Obj, labels: Obj) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v) && Object.keys(selector).length > 0;

t.test('every manifest parses and has a known apiVersion/kind', async (t) => {
  const files = readdirSync(k8sDir).filter((f) => /\.ya?ml$/.test(f));
  t.same(files.sort(), [
    'deployment-gpu.yaml',
    'deployment-pvc.yaml',
    'deployment.yaml',
    'hpa.yaml',
    'inferenceservice-storage.yaml',
    'inferenceservice.yaml',
    'podmonitor.yaml',
  ]);
  t.ok(docs.length >= 7, `${docs.length} documents`);
  for (const d of docs) {
    const key = `${d.obj.apiVersion}/${d.obj.kind}`;
    t.ok(key in coreModels || crdKinds.has(key), `${label(d)}: ${key} is validated`);
    t.match(d.obj.metadata?.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${label(d)}: DNS-1123 name`);
  }
});

t.test('core kinds validate against the Kubernetes schemas', async (t) => {
  for (const d of docs) {
    const make = coreModels[`${d.obj.apiVersion}/${d.obj.kind}`];
    if (!make) continue;
    t.doesNotThrow(() => make(d.obj).validate(), label(d));
  }
  // the validator is live: it rejects what the API server would
  const deployment = structuredClone(ofKind('Deployment')[0].obj);
  deployment.spec.replicas = 'two';
  t.throws(() => new Deployment(deployment as never).validate(), 'a string replica count is rejected');
  const badPort = structuredClone(ofKind('Deployment')[0].obj);
  badPort.spec.template.spec.containers[0].ports[0].containerPort = '8080';
  t.throws(() => new Deployment(badPort as never).validate(), 'a string container port is rejected');
  const hpa = structuredClone(ofKind('HorizontalPodAutoscaler')[0].obj);
  delete hpa.spec.scaleTargetRef.name;
  t.throws(
    () => new HorizontalPodAutoscaler(hpa as never).validate(),
    'an HPA without a scale target name is rejected',
  );
});

t.test('Deployments: replicas, probes, resources, security, shutdown', async (t) => {
  const deployments = ofKind('Deployment');
  t.same(deployments.map((d) => d.obj.metadata.name).sort(), ['muon-serve', 'muon-serve-gpu', 'muon-serve-models']);
  for (const d of deployments) {
    const spec = d.obj.spec;
    const pod = spec.template.spec;
    t.equal(spec.replicas, 2, `${label(d)}: 2 replicas`);
    t.ok(selects(spec.selector.matchLabels, spec.template.metadata.labels), `${label(d)}: selector matches template`);
    t.equal(pod.terminationGracePeriodSeconds, 45, `${label(d)}: terminationGracePeriodSeconds`);
    t.equal(pod.securityContext.runAsNonRoot, true, `${label(d)}: runAsNonRoot`);
    t.equal(pod.securityContext.runAsUser, 1000, `${label(d)}: the image's node user`);
    const annotations = spec.template.metadata.annotations;
    t.same(
      {
        scrape: annotations['prometheus.io/scrape'],
        port: annotations['prometheus.io/port'],
        path: annotations['prometheus.io/path'],
      },
      { scrape: 'true', port: '8080', path: '/metrics' },
      `${label(d)}: Prometheus scrape annotations`,
    );
    t.equal(pod.containers.length, 1);
    const c = pod.containers[0];
    t.same(c.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }], `${label(d)}: port`);
    t.equal(envOf(c).PORT, '8080', `${label(d)}: PORT`);
    t.same(c.startupProbe.httpGet, { path: '/v2/health/live', port: 'http' }, `${label(d)}: startup probe`);
    t.same(c.livenessProbe.httpGet, { path: '/v2/health/live', port: 'http' }, `${label(d)}: liveness probe`);
    t.same(c.readinessProbe.httpGet, { path: '/v2/health/ready', port: 'http' }, `${label(d)}: readiness probe`);
    for (const r of ['cpu', 'memory']) {
      t.ok(c.resources.requests[r], `${label(d)}: ${r} request`);
      t.ok(c.resources.limits[r], `${label(d)}: ${r} limit`);
    }
    t.equal(c.securityContext.readOnlyRootFilesystem, true, `${label(d)}: read-only root`);
    t.equal(c.securityContext.allowPrivilegeEscalation, false, `${label(d)}: no privilege escalation`);
    const tmp = c.volumeMounts.find((m: Obj) => m.mountPath === '/tmp');
    t.ok(tmp, `${label(d)}: /tmp is mounted`);
    t.ok(
      pod.volumes.find((v: Obj) => v.name === tmp?.name && v.emptyDir),
      `${label(d)}: /tmp is an emptyDir`,
    );
  }
  const gpu = deployments.find((d) => d.obj.metadata.name === 'muon-serve-gpu')!.obj;
  const gc = gpu.spec.template.spec.containers[0];
  t.equal(gc.image, 'muon-serve:cuda');
  t.equal(String(gc.resources.limits['nvidia.com/gpu']), '1', 'one GPU');
  t.equal(envOf(gc).MUON_EXECUTION_PROVIDER, 'auto', 'GPU pods fall back to CPU rather than crash-loop');
  t.ok(gpu.spec.template.spec.nodeSelector, 'GPU nodeSelector');
  t.ok(
    gpu.spec.template.spec.tolerations.some((x: Obj) => x.key === 'nvidia.com/gpu'),
    'tolerates the GPU taint',
  );
  const cpu = deployments.find((d) => d.obj.metadata.name === 'muon-serve')!.obj;
  t.equal(cpu.spec.template.spec.containers[0].image, 'muon-serve:latest');

  // two Deployments must never claim each other's pods
  for (const a of deployments) {
    for (const b of deployments) {
      if (a === b) continue;
      t.notOk(
        selects(a.obj.spec.selector.matchLabels, b.obj.spec.template.metadata.labels),
        `${label(a)} does not select ${label(b)}'s pods`,
      );
    }
  }
});

t.test('probe paths are routes the server serves', async (t) => {
  const paths = new Set<string>();
  for (const { spec } of podSpecs()) {
    for (const c of spec.containers) {
      for (const p of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
        if (c[p]?.httpGet) paths.add(c[p].httpGet.path);
      }
    }
  }
  t.same([...paths].sort(), ['/v2/health/live', '/v2/health/ready']);
  for (const p of paths) t.ok(routesSource.includes(`'${p}'`), `${p} is registered in src/server/routes`);
  for (const d of docs) {
    const annotated = d.obj.spec?.template?.metadata?.annotations?.['prometheus.io/path'];
    if (annotated) t.ok(routesSource.includes(`'${annotated}'`), `${annotated} is a route`);
  }
});

t.test('the drain fits in the termination grace period; env names are real settings', async (t) => {
  const specs = podSpecs();
  t.equal(specs.length, 5);
  for (const { where, spec } of specs) {
    for (const c of spec.containers) {
      const env = envOf(c);
      const timeout = Number(env.MUON_SHUTDOWN_TIMEOUT_MS);
      t.equal(timeout, 30_000, `${where}: MUON_SHUTDOWN_TIMEOUT_MS`);
      t.ok(spec.terminationGracePeriodSeconds * 1000 > timeout, `${where}: grace period > drain timeout`);
      if (env.MUON_SHUTDOWN_GRACE_MS !== undefined) {
        t.ok(Number(env.MUON_SHUTDOWN_GRACE_MS) < timeout, `${where}: serving grace < drain timeout`);
      }
      for (const name of Object.keys(env)) {
        if (name.startsWith('MUON_') || name === 'PORT') {
          // read as env['NAME'] or env.NAME
          t.ok(new RegExp(`(['.])${name}\\b`).test(configSource), `${where}: ${name} is read by src/config.ts`);
        }
      }
      if (env.MUON_EXECUTION_PROVIDER) t.match(env.MUON_EXECUTION_PROVIDER, /^(auto|cuda|cpu)$/);
    }
  }
});

t.test('Services route port 80 to the http container port', async (t) => {
  const services = ofKind('Service');
  t.equal(services.length, 3);
  for (const s of services) {
    t.equal(s.obj.spec.type, 'ClusterIP', `${label(s)}: ClusterIP`);
    t.same(s.obj.spec.ports, [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }], label(s));
    const targets = ofKind('Deployment').filter((d) =>
      selects(s.obj.spec.selector, d.obj.spec.template.metadata.labels),
    );
    t.equal(targets.length, 1, `${label(s)} selects exactly one Deployment's pods`);
    t.ok(
      targets[0]?.obj.spec.template.spec.containers[0].ports.some((p: Obj) => p.name === 'http'),
      `${label(s)}: the pods have a port named http`,
    );
  }
});

t.test('HPA scales the CPU Deployment on CPU and queue depth', async (t) => {
  const [hpa] = ofKind('HorizontalPodAutoscaler');
  const spec = hpa.obj.spec;
  t.same(spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'muon-serve' });
  t.ok(
    ofKind('Deployment').some((d) => d.obj.metadata.name === spec.scaleTargetRef.name),
    'the target exists',
  );
  t.ok(spec.minReplicas >= 2 && spec.maxReplicas > spec.minReplicas, 'replica bounds');
  const cpu = spec.metrics.find((m: Obj) => m.type === 'Resource');
  t.same(cpu.resource.name, 'cpu');
  t.equal(cpu.resource.target.type, 'Utilization');
  const pods = spec.metrics.find((m: Obj) => m.type === 'Pods');
  t.equal(pods.pods.metric.name, 'muon_queue_depth');
  t.equal(pods.pods.target.type, 'AverageValue');
  const names = metricNamesIn(JSON.stringify(spec.metrics));
  t.ok(names.length > 0);
  for (const n of names) t.ok(isKnownSeries(n), `HPA metric ${n} is in src/metrics.ts`);
});

t.test('PodMonitor (structural)', async (t) => {
  const [pm] = ofKind('PodMonitor');
  t.equal(pm.obj.apiVersion, 'monitoring.coreos.com/v1');
  const sel = pm.obj.spec.selector.matchLabels;
  for (const d of ofKind('Deployment')) {
    t.ok(selects(sel, d.obj.spec.template.metadata.labels), `selects ${label(d)}'s pods`);
  }
  t.equal(pm.obj.spec.podMetricsEndpoints.length, 1);
  const [ep] = pm.obj.spec.podMetricsEndpoints;
  t.equal(ep.port, 'http');
  t.equal(ep.path, '/metrics');
  t.ok(routesSource.includes(`'${ep.path}'`), '/metrics is a route');
  t.match(ep.interval, /^\d+(s|m)$/);
});

for (const isvc of ofKind('InferenceService'))
  t.test(`${label(isvc)} (structural)`, async (t) => {
    t.equal(isvc.obj.apiVersion, 'serving.kserve.io/v1beta1');
    const predictor = isvc.obj.spec.predictor;
    t.equal(predictor.containers.length, 1);
    const [c] = predictor.containers;
    t.equal(c.name, 'kserve-container', 'KServe routes to the container of this name');
    t.equal(c.image, 'muon-serve:latest');
    t.same(c.ports, [{ containerPort: 8080, protocol: 'TCP' }]);
    t.equal(envOf(c).PORT, '8080');
    t.equal(isvc.obj.metadata.labels['serving.kserve.io/protocol-version'], 'v2');
    t.equal(c.readinessProbe.httpGet.path, '/v2/health/ready');
    t.equal(c.readinessProbe.httpGet.port, 8080);
    t.equal(c.livenessProbe.httpGet.path, '/v2/health/live');
    t.ok(routesSource.includes(`'/v2/models/:name/infer'`), 'the server implements the v2 infer route');
    // the inline pod spec's container is a core Container: validate it through a Deployment wrapper
    const wrapped = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'isvc-predictor-check' },
      spec: {
        selector: { matchLabels: { a: 'b' } },
        template: {
          metadata: { labels: { a: 'b' } },
          spec: {
            containers: predictor.containers,
            volumes: predictor.volumes,
            securityContext: predictor.securityContext,
            terminationGracePeriodSeconds: predictor.terminationGracePeriodSeconds,
          },
        },
      },
    };
    t.doesNotThrow(() => new Deployment(wrapped as never).validate(), 'predictor pod spec validates as a core PodSpec');
  });

t.test("users' own models: KServe storage URI, and a PersistentVolumeClaim", async (t) => {
  // KServe: a custom container's storage URI is its STORAGE_URI variable; the storage initializer mounts what it
  // fetched at /mnt/models in kserve-container, which MUON_MODEL_REPOSITORY must name
  const stored = ofKind('InferenceService').filter((d) =>
    d.obj.spec.predictor.containers.some((c: Obj) => envOf(c).STORAGE_URI !== undefined),
  );
  t.same(
    stored.map((d) => d.file),
    ['inferenceservice-storage.yaml'],
  );
  for (const d of stored) {
    const [c] = d.obj.spec.predictor.containers;
    const env = envOf(c);
    t.match(
      env.STORAGE_URI,
      /^(s3|gs|https?|pvc|hdfs|webhdfs|hf|oci):\/\/\S+$/,
      `${label(d)}: a storage URI KServe takes`,
    );
    t.equal(env.MUON_MODEL_REPOSITORY, '/mnt/models', `${label(d)}: the server reads where KServe puts the models`);
    t.notOk(
      (c.volumeMounts ?? []).some((m: Obj) => m.mountPath === '/mnt/models'),
      `${label(d)}: /mnt/models is left to KServe's storage initializer`,
    );
    t.ok(env.MUON_DEFAULT_MODEL, `${label(d)}: a default model of the user's (the image's default, ocr, is not there)`);
  }
  const baked = ofKind('InferenceService').find((d) => d.file === 'inferenceservice.yaml')!;
  t.equal(envOf(baked.obj.spec.predictor.containers[0]).MUON_MODEL_REPOSITORY, undefined, 'the baked-in variant');

  // a Deployment with the repository on a volume: the claim exists, is mounted read-only where the server looks,
  // and can be mounted by replicas on several nodes
  const claims = ofKind('PersistentVolumeClaim');
  const onVolume = ofKind('Deployment').filter((d) =>
    (d.obj.spec.template.spec.volumes ?? []).some((v: Obj) => v.persistentVolumeClaim),
  );
  t.same(
    onVolume.map((d) => d.obj.metadata.name),
    ['muon-serve-models'],
  );
  for (const d of onVolume) {
    const pod = d.obj.spec.template.spec;
    const [c] = pod.containers;
    const repo = envOf(c).MUON_MODEL_REPOSITORY;
    t.ok(repo, `${label(d)}: MUON_MODEL_REPOSITORY is set`);
    const mount = c.volumeMounts.find((m: Obj) => m.mountPath === repo);
    t.ok(mount, `${label(d)}: a volume is mounted at ${repo}`);
    t.equal(mount?.readOnly, true, `${label(d)}: read-only`);
    const volume = pod.volumes.find((v: Obj) => v.name === mount?.name);
    const claim = claims.find((p) => p.obj.metadata.name === volume?.persistentVolumeClaim?.claimName);
    t.ok(claim, `${label(d)}: its claim ${volume?.persistentVolumeClaim?.claimName} is in the manifests`);
    t.ok(
      claim?.obj.spec.accessModes.some((m: string) => m === 'ReadOnlyMany' || m === 'ReadWriteMany'),
      `${label(d)}: the claim can be mounted on several nodes`,
    );
    t.ok(envOf(c).MUON_DEFAULT_MODEL, `${label(d)}: a default model of the user's`);
  }
  // the validator is live for claims too
  const bad = structuredClone(claims[0]!.obj);
  bad.spec.accessModes = 'ReadOnlyMany';
  t.throws(() => new PersistentVolumeClaim(bad as never).validate(), 'accessModes must be a list');
});

t.test('Grafana dashboard parses and uses only real metric names', async (t) => {
  const text = read('deploy/grafana/muon-dashboard.json');
  const dashboard = JSON.parse(text) as Obj;
  t.ok(dashboard.schemaVersion >= 36, 'recent schemaVersion');
  const dsVar = dashboard.templating.list.find((v: Obj) => v.type === 'datasource');
  t.equal(dsVar?.query, 'prometheus', 'Prometheus datasource variable');
  const panels: Obj[] = dashboard.panels.filter((p: Obj) => p.type !== 'row');
  const ids = dashboard.panels.map((p: Obj) => p.id);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  const exprs: string[] = [];
  for (const p of panels) {
    t.equal(p.datasource?.uid, '${datasource}', `${p.title}: uses the datasource variable`);
    t.ok(p.targets?.length > 0, `${p.title}: has queries`);
    for (const q of p.targets) exprs.push(q.expr);
  }
  const all = exprs.join('\n');
  // the panels draw deploy/prometheus's recording rules (level:metric:operations names): each one is recorded there
  const rulesText = read('deploy/prometheus/muon-rules.yml');
  const recorded = new Set([...rulesText.matchAll(/^\s*- record: (\S+)$/gm)].map((m) => m[1]));
  const used = new Set([...all.matchAll(/\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b/g)].map((m) => m[0]));
  for (const name of used) t.ok(recorded.has(name), `dashboard rule ${name} is recorded in muon-rules.yml`);
  for (const rule of [
    'model_code:muon_requests:rate1m',
    'model:muon_requests_errors:ratio_rate1m',
    'model:muon_request_duration_seconds:p50_rate1m',
    'model:muon_request_duration_seconds:p99_rate1m',
    'model:muon_batch_size:mean_rate1m',
    'model:muon_queue_saturation:max',
  ])
    t.ok(used.has(rule), `a panel draws ${rule}`);
  for (const metric of ['muon_queue_depth', 'muon_batch_size_bucket', 'muon_execution_provider_fallbacks_total']) {
    t.ok(all.includes(metric), `a panel queries ${metric}`);
  }
  t.ok(/code=~"5\.\."/.test(rulesText), 'the error ratio counts 5xx');
  t.ok(rulesText.includes('histogram_quantile(0.99'), 'a p99 rule');
  t.ok(rulesText.includes('histogram_quantile(0.5'), 'a p50 rule');
  const names = metricNamesIn(text.replace(/\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b/g, ''));
  t.ok(names.length >= 5);
  for (const n of names) t.ok(isKnownSeries(n), `dashboard metric ${n} is in src/metrics.ts`);
});
