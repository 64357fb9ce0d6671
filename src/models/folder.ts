import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { packageRoot } from '../config.js';
import { ManifestError, modelNamePattern, npmPackagePattern, parseManifest, type Manifest } from './manifest.js';

// The model folder rules: what a model folder is, which versions it serves (the version policy), how its manifest is
// read, and where the files its manifest names are (inside the folder or an npm package, never outside).

/** Numbered versions compare as numbers, anything else as text. */
export function compareVersions(a: string, b: string): number {
  return /^\d+$/.test(a) && /^\d+$/.test(b) ? Number(a) - Number(b) : a.localeCompare(b);
}

const versionFolder = /^\d{1,9}$/;

/** A model folder holds a manifest.json, or numbered version folders that do (a small folder: read in place). */
export function isModelFolder(dir: string): boolean {
  if (existsSync(path.join(dir, 'manifest.json'))) return true;
  return readdirSync(dir, { withFileTypes: true }).some(
    (e) => e.isDirectory() && versionFolder.test(e.name) && existsSync(path.join(dir, e.name, 'manifest.json')),
  );
}

/**
 * The model folders of a repository: those with a manifest.json (or version folders) whose name matches
 * {@link modelNamePattern}, in name order; `skipped` hears of the others that hold a model.
 */
export async function modelFolders(root: string, skipped: (folder: string) => void): Promise<string[]> {
  if (!existsSync(root)) throw new Error(`model repository ${root} does not exist (MUON_MODEL_REPOSITORY)`);
  const names: string[] = [];
  for (const entry of await readdir(root, { withFileTypes: true })) {
    if (!entry.isDirectory() || !isModelFolder(path.join(root, entry.name))) continue;
    if (new RegExp(modelNamePattern).test(entry.name)) names.push(entry.name);
    else skipped(entry.name);
  }
  return names.sort();
}

/**
 * Whether a model name from a client is a model folder of the repository (no separators, no dots first). A file of
 * the repository (its `manifest.schema.json`) or a folder that cannot be read is not one.
 */
export function isServedName(root: string, name: string): boolean {
  if (!new RegExp(modelNamePattern).test(name)) return false;
  const dir = path.join(root, name);
  try {
    return statSync(dir, { throwIfNoEntry: false })?.isDirectory() === true && isModelFolder(dir);
  } catch {
    return false;
  }
}

/** The version folders a model folder's policy selects, oldest first; a single-manifest folder is one version. */
export async function servedVersions(dir: string): Promise<{ version?: string; folder: string }[]> {
  if (existsSync(path.join(dir, 'manifest.json'))) return [{ folder: dir }];
  const all = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isDirectory() && versionFolder.test(e.name) && existsSync(path.join(dir, e.name, 'manifest.json')))
    .map((e) => String(Number(e.name)))
    .sort(compareVersions);
  const where = path.join(dir, 'versions.json');
  let policy: { policy?: unknown; count?: unknown; versions?: unknown } = { policy: 'latest', count: 1 };
  if (existsSync(where)) {
    try {
      policy = JSON.parse(await readFile(where, 'utf8'));
    } catch (err) {
      throw new ManifestError(`${where}: not valid JSON: ${(err as Error).message}`);
    }
  }
  let chosen: string[];
  if (policy.policy === 'all') chosen = all;
  else if (policy.policy === 'latest' && Number.isInteger(policy.count ?? 1) && Number(policy.count ?? 1) >= 1)
    chosen = all.slice(-Number(policy.count ?? 1));
  else if (policy.policy === 'specific' && Array.isArray(policy.versions)) {
    const wanted = policy.versions.map(String);
    const missing = wanted.filter((v) => !all.includes(v));
    if (missing.length) throw new ManifestError(`${where}: versions ${missing.join(', ')} have no folder`);
    chosen = all.filter((v) => wanted.includes(v));
  } else {
    throw new ManifestError(
      `${where}: /policy must be {"policy": "latest", "count": n}, {"policy": "specific", "versions": [...]} or {"policy": "all"}`,
    );
  }
  if (chosen.length === 0) throw new ManifestError(`${where}: the policy selects no version`);
  const numbered = (await readdir(dir)).filter((n) => versionFolder.test(n));
  const twice = numbered.filter((n, i) => numbered.findIndex((m) => Number(m) === Number(n)) !== i);
  if (twice.length) throw new ManifestError(`${dir}: version folders ${twice.join(', ')} repeat a version`);
  // folder names like "007" are the version "7"
  const folderOf = new Map(
    (await readdir(dir)).filter((n) => versionFolder.test(n)).map((n) => [String(Number(n)), path.join(dir, n)]),
  );
  return chosen.map((version) => ({ version, folder: folderOf.get(version)! }));
}

/**
 * Resolves a file named by a manifest, relative to the model folder or to an installed npm package, and refuses
 * anything that escapes that base folder.
 */
export function resolveFile(dir: string, file: string, pkg: string | undefined, field: string, where: string): string {
  let base = dir;
  if (pkg !== undefined) {
    if (!new RegExp(npmPackagePattern).test(pkg))
      throw new ManifestError(`${where}: ${field}: '${pkg}' is not an npm package name`);
    // look next to the model folder first, then in the server's own node_modules
    const searched = [dir, packageRoot].flatMap(
      (from) => createRequire(path.resolve(from, 'x.js')).resolve.paths(pkg) ?? [],
    );
    const found = searched.map((p) => path.join(p, pkg)).find((p) => existsSync(path.join(p, 'package.json')));
    if (!found) throw new ManifestError(`${where}: ${field}: npm package '${pkg}' is not installed (run npm ci)`);
    base = found;
  }
  const outside = () =>
    new ManifestError(`${where}: ${field} '${file}' points outside ${pkg ? `package '${pkg}'` : 'the model folder'}`);
  const full = path.resolve(base, file);
  if (!isInside(base, full)) throw outside();
  if (!existsSync(full)) throw new ManifestError(`${where}: ${field}: ${full} does not exist`);
  // and where it really is: a symlink (the file or a folder on the way) must not lead out of the base folder
  if (!isInside(realpathSync(base), realpathSync(full))) throw outside();
  return full;
}

/** True when `file` is `base` or below it. */
function isInside(base: string, file: string): boolean {
  const rel = path.relative(base, file);
  return !rel.startsWith('..') && !path.isAbsolute(rel);
}

/**
 * Reads and validates a folder's `manifest.json`. Throws ManifestError for a file that is not JSON or not a valid
 * manifest, and where the caller knows them, for a `name` other than the model folder's or a `version` other than the
 * version folder's (a version folder's name is the version: the manifest gets it when it does not say).
 */
export async function readManifest(
  dir: string,
  expect: { readonly name?: string; readonly version?: string } = {},
): Promise<{ manifest: Manifest; where: string }> {
  const where = path.join(dir, 'manifest.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(where, 'utf8'));
  } catch (err) {
    throw new ManifestError(`${where}: not valid JSON: ${(err as Error).message}`);
  }
  if (expect.version !== undefined) {
    const declared = (json as { version?: unknown } | null)?.version;
    if (declared !== undefined && declared !== expect.version)
      throw new ManifestError(
        `${where}: /version is '${String(declared)}' but the version folder is '${expect.version}'`,
      );
    json = { ...(json as object), version: expect.version };
  }
  const manifest = parseManifest(json, where);
  if (expect.name !== undefined && manifest.name !== undefined && manifest.name !== expect.name)
    throw new ManifestError(`${where}: /name is '${manifest.name}' but the folder is '${expect.name}'`);
  return { manifest, where };
}

/**
 * A message as clients may read it (readiness, the index and `/v1/models` need no token): the server's folders are
 * named relative to the repository or the package, other absolute paths by their last component.
 */
export function redactPaths(message: string, repository: string): string {
  const roots: [string, string][] = [
    [repository, '<repository>'],
    [packageRoot, '<package>'],
  ];
  let out = message;
  for (const [root, name] of roots)
    out = out
      .split(root + path.sep)
      .join(name + '/')
      .split(root)
      .join(name);
  return out.replace(/(?<![\w<>.])\/(?:[^\s'"`:,()]+\/)+([^\s'"`:,()/]+)/g, '…/$1');
}
