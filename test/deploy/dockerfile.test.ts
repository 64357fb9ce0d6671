// The Dockerfile's structure, checked without a container engine: both targets (cpu, the default, and cuda), what
// each final image must have (non-root user, health check on readiness, port, exec-form CMD, models baked in), the
// README's install step, and the CUDA provider placed where the server looks for it. Building and running the
// images is done with podman (see ../shared/CONTAINERS.md); nothing here needs one, or the network.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { cudaProviderPath } from '../../src/models/session.js';

const root = path.resolve(import.meta.dirname, '../..');
const read = (f: string) => readFileSync(path.join(root, f), 'utf8');

interface Instruction {
  keyword: string;
  args: string;
}
interface Stage {
  image: string;
  name: string | undefined;
  body: Instruction[];
}

/** Dockerfile instructions grouped by stage: continuation lines joined, comment lines dropped (as Docker does). */
function parseDockerfile(text: string): Stage[] {
  const instructions: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && pending === '')) continue;
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' ';
      continue;
    }
    const whole = (pending + line).trim();
    pending = '';
    if (whole === '') continue;
    const m = /^(\S+)\s*(.*)$/s.exec(whole)!;
    instructions.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim() });
  }
  const stages: Stage[] = [];
  for (const i of instructions) {
    if (i.keyword === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(i.args);
      if (!m) throw new Error(`cannot parse FROM ${i.args}`);
      stages.push({ image: m[1]!, name: m[2]?.toLowerCase(), body: [] });
    } else if (stages.length > 0) {
      stages.at(-1)!.body.push(i);
    } else if (i.keyword !== 'ARG') {
      throw new Error(`${i.keyword} before the first FROM`);
    }
  }
  return stages;
}

const all = (s: Stage, keyword: string) => s.body.filter((i) => i.keyword === keyword).map((i) => i.args);
const last = (s: Stage, keyword: string) => all(s, keyword).at(-1);
/** `ENV` values of a stage (both `ENV A=1 B=2` and `ENV A 1` forms). */
function env(s: Stage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const args of all(s, 'ENV')) {
    if (!args.includes('=')) {
      const [k, ...v] = args.split(/\s+/);
      out[k!] = v.join(' ');
      continue;
    }
    for (const m of args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) out[m[1]!] = m[2]!.replace(/^"|"$/g, '');
  }
  return out;
}
/** `COPY` instructions as { from, sources, dest } (flags other than --from are ignored). */
function copies(s: Stage) {
  return all(s, 'COPY').map((args) => {
    const words = args.split(/\s+/);
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
    const paths = words.filter((w) => !w.startsWith('--'));
    return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
  });
}

const dockerfile = read('Dockerfile');
const stages = parseDockerfile(dockerfile);
const stage = (name: string) => stages.find((s) => s.name === name);
const targets = ['cpu', 'cuda'] as const;

t.test('two targets: cuda, and cpu as the default (last) stage', async (t) => {
  for (const name of targets) t.ok(stage(name), `a stage named ${name} (FROM ... AS ${name})`);
  t.equal(stages.at(-1)?.name, 'cpu', 'cpu is the last stage, so a plain `docker build` gives the CPU image');
  for (const s of stages.filter((s) => s.image.startsWith('node:')))
    t.equal(s.image, 'node:24-bookworm-slim', `stage ${s.name}: Node 24 (LTS), as package.json \`engines\` says`);
  const names = stages.map((s) => s.name);
  t.equal(new Set(names).size, names.length, 'stage names are unique');
  for (const s of stages) {
    for (const c of copies(s)) {
      if (c.from === undefined || c.from.includes(':')) continue; // from the context, or from an image
      const from = stage(c.from);
      t.ok(from, `COPY --from=${c.from} names a stage`);
      t.ok(stages.indexOf(from!) < stages.indexOf(s), `stage ${c.from} comes before ${s.name}`);
    }
  }
});

t.test('the install step is `npm ci`, as in the README, and it builds dist/', async (t) => {
  const build = stage('build');
  t.ok(build, 'a build stage');
  const runs = all(build!, 'RUN');
  const install = runs.find((r) => /^npm ci\b/.test(r));
  t.ok(install, 'a RUN that starts with `npm ci`');
  t.match(install, /^npm ci(\s*&&|\s*$)/, 'plain `npm ci`: no --ignore-scripts, so `prepare` builds dist/');
  t.match(install, /npm prune --omit=dev/, 'then only production dependencies are kept');
  const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
  t.match(pkg.scripts.prepare, /\btsc\b/, '`prepare` compiles the TypeScript');
  t.match(
    pkg.scripts.start,
    /^([A-Z_]+=\S+ )*node( --[a-z-]+=\d+)* dist\/main\.js$/,
    '`npm start` runs node on dist/main.js',
  );
  // `prepare` needs the sources and the tsconfigs before `npm ci` runs
  const body = build!.body;
  const installAt = body.findIndex((i) => i.keyword === 'RUN' && i.args === install);
  const copiedBefore = body
    .slice(0, installAt)
    .filter((i) => i.keyword === 'COPY')
    .flatMap((i) => i.args.split(/\s+/));
  for (const f of ['package.json', 'package-lock.json', 'stubs', 'tsconfig.json', 'tsconfig.build.json', 'src'])
    t.ok(copiedBefore.includes(f), `${f} is copied before npm ci`);
  // onnxruntime-node's install script would fetch its CUDA provider from NuGet (no network but the registry in CI
  // and here): denied through package.json `allowScripts` (npm 11), and skipped by its own variable under any npm
  const allow = (JSON.parse(read('package.json')) as { allowScripts?: Record<string, boolean> }).allowScripts;
  t.equal(allow?.['onnxruntime-node'], false, "package.json allowScripts denies onnxruntime-node's install script");
  t.equal(env(build!).ONNXRUNTIME_NODE_INSTALL, 'skip', 'the build stage skips the CUDA download under any npm');
  t.ok(
    body.findIndex((i) => i.keyword === 'ENV' && i.args.includes('ONNXRUNTIME_NODE_INSTALL')) < installAt,
    'ONNXRUNTIME_NODE_INSTALL is set before npm ci',
  );
});

for (const name of targets) {
  t.test(`the ${name} target: non-root, healthy when ready, port 8080, exec-form CMD, models baked in`, async (t) => {
    const s = stage(name)!;
    t.ok(s, `stage ${name}`);
    const user = last(s, 'USER');
    t.ok(user, 'USER is set');
    t.notMatch(user, /^(root|0)(:|$)/, 'USER is not root');
    t.equal(user, 'node', 'the node user (uid 1000)');

    const hc = last(s, 'HEALTHCHECK');
    t.ok(hc, 'HEALTHCHECK is set');
    const hcCmd = /\bCMD\s+(\[.*\])\s*$/.exec(hc ?? '');
    t.ok(hcCmd, 'HEALTHCHECK CMD in exec form');
    const probe = JSON.parse(hcCmd![1]!) as string[];
    t.equal(probe[0], 'node', 'probes with node itself (no curl in slim images)');
    t.match(probe.join(' '), /\/v2\/health\/ready/, 'probes readiness');
    t.match(probe.join(' '), /process\.env\.PORT/, 'on the port the server listens on');
    t.match(hc, /--start-period=\d+s/, 'with a start period for model loading');

    t.ok(
      all(s, 'EXPOSE').some((e) => e.split(/\s+/).includes('8080')),
      'EXPOSE 8080',
    );
    t.equal(last(s, 'STOPSIGNAL'), 'SIGTERM');
    const cmd = last(s, 'CMD');
    t.ok(cmd?.startsWith('['), 'CMD in exec form, so SIGTERM reaches node');
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    // `npm start` sets its environment in the shell (NAME=value before node); the image sets it with ENV
    const words = pkg.scripts.start.split(' ');
    const assigned = words.filter((w) => /^[A-Z_]+=/.test(w));
    t.same(JSON.parse(cmd!), words.slice(assigned.length), 'CMD runs what `npm start` runs, node flags included');
    for (const a of assigned) {
      // NAME=value, or NAME=${NAME:-value} (the caller's own value wins)
      const [k, v] = a.split('=');
      const value = /^\$\{[A-Z_]+:-(.*)\}$/.exec(v)?.[1] ?? v;
      t.equal(env(s)[k], value, `ENV ${k}=${value}, as npm start sets it`);
    }
    t.notOk(last(s, 'ENTRYPOINT'), 'no ENTRYPOINT wrapping node');

    const e = env(s);
    t.equal(e.NODE_ENV, 'production');
    t.equal(e.PORT ?? '8080', '8080');
    t.equal(last(s, 'WORKDIR'), '/app');
    const c = copies(s);
    for (const dir of ['node_modules', 'dist'])
      t.ok(
        c.some((x) => x.from === 'build' && x.sources.includes(`/app/${dir}`)),
        `${dir} comes from the build stage`,
      );
    t.ok(
      c.some((x) => x.from === undefined && x.sources.includes('models')),
      'models/ is baked in',
    );
    // the USER comes after every COPY and RUN, so the app files stay root-owned (read-only to the server)
    const userAt = s.body.findIndex((i) => i.keyword === 'USER');
    t.notOk(
      s.body.slice(userAt).some((i) => i.keyword === 'COPY' || i.keyword === 'RUN'),
      'no COPY or RUN after USER',
    );
  });
}

t.test('the cuda target: CUDA 13 + cuDNN runtime, the provider where the server looks for it', async (t) => {
  const s = stage('cuda')!;
  t.match(s.image, /^(?:docker\.io\/|nvcr\.io\/)?nvidia\/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+$/);
  t.equal(env(s).MUON_EXECUTION_PROVIDER, 'auto', 'auto: the GPU when it can, CPU otherwise');
  t.ok(
    copies(s).some((c) => c.sources.includes('/usr/local/bin/node') && c.dest === '/usr/local/bin/node'),
    'node is copied in from the Node 24 image',
  );
  t.match(dockerfile, /useradd[^\n]*--uid 1000[^\n]*node/, 'creates the node user with uid 1000');

  // cudaProviderPath() relative to the package root, for linux/x64, as it resolves inside the image (WORKDIR /app)
  const here = path.relative(root, path.dirname(cudaProviderPath())).split(path.sep).join('/');
  const suffix = `${process.platform}/${process.arch}`;
  t.ok(here.endsWith(suffix), `cudaProviderPath() ends with the platform folder (${here})`);
  const inImage = `/app/${here.slice(0, -suffix.length)}linux/x64`;
  t.equal(inImage, '/app/node_modules/onnxruntime-node/bin/napi-v6/linux/x64');
  t.equal(path.basename(cudaProviderPath()), 'libonnxruntime_providers_cuda.so');

  const provider = copies(s).find((c) => c.sources.some((p) => p.endsWith('/libonnxruntime_providers_cuda.so')));
  t.ok(provider, 'the CUDA provider library is copied in');
  t.ok(stage(provider!.from ?? ''), 'from a stage of this Dockerfile');
  t.ok(
    provider!.sources.some((p) => p.endsWith('/libonnxruntime_providers_shared.so')),
    'with libonnxruntime_providers_shared.so',
  );
  t.equal(path.posix.resolve('/app', provider!.dest), inImage, 'next to libonnxruntime.so.1');

  // the provider package is pinned and checked, and matches the pinned onnxruntime-node (1.29.0, CUDA 13)
  const from = stage(provider!.from!)!;
  const args = Object.fromEntries(all(from, 'ARG').map((a) => a.split('=', 2) as [string, string]));
  t.equal(args.ORT_CUDA_PACKAGE, 'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9');
  t.match(args.ORT_CUDA_SHA512, /^[0-9a-f]{128}$/, 'the tarball is checked against a pinned sha512');
  t.match(all(from, 'RUN').join('\n'), /sha512sum -c/);
  const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
  t.equal(pkg.dependencies['onnxruntime-node'], '1.29.0', 'onnxruntime-node is pinned to the provider version');
  t.match(all(s, 'RUN').join('\n'), /cudaProviderPath\(\)/, 'the build fails if the server would not find it');
});

t.test('.dockerignore keeps build outputs and the repository out, and what COPY needs in', async (t) => {
  const patterns = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/^\/|\/$/g, ''));
  for (const p of ['node_modules', '.git', 'dist']) t.ok(patterns.includes(p), `${p} is ignored`);
  // every path copied from the build context must be in it
  const fromContext = stages.flatMap((s) => copies(s).filter((c) => c.from === undefined)).flatMap((c) => c.sources);
  t.ok(fromContext.includes('models'), 'models/ is copied from the context');
  for (const src of new Set(fromContext)) {
    const top = src.replace(/^\.\//, '').split('/')[0]!;
    t.notOk(patterns.includes(top), `${src} is not ignored`);
  }
});
