import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../../src/config.js';

/** Where the numbers came from: enough to tell two result files' machines and software apart. */
export interface MachineInfo {
  readonly hostname: string;
  /** `model name` from /proc/cpuinfo. */
  readonly cpuModel: string;
  /** Vector extensions onnxruntime's CPU kernels can use (avx2, avx512*, amx*, ...). */
  readonly cpuVectorFlags: string[];
  /** `os.availableParallelism()`: the cores the server splits its threads over. */
  readonly cores: number;
  readonly memoryGiB: number;
  /** 1-minute load average when the bench started: well above 0 means something else was running. */
  readonly loadAverageAtStart: number;
  readonly os: string;
  readonly node: string;
  readonly onnxruntimeNode: string;
  readonly sharp: string;
  readonly autocannon: string;
  /** The checked-out commit, with `-dirty` when the working tree has changes. */
  readonly gitCommit: string;
}

/** Describes this machine and the installed runtime versions. */
export function describeMachine(): MachineInfo {
  const cpuinfo = tryRead('/proc/cpuinfo');
  const field = (name: string) => cpuinfo.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm'))?.[1].trim();
  return {
    hostname: os.hostname(),
    cpuModel: field('model name') ?? os.cpus()[0]?.model ?? 'unknown',
    cpuVectorFlags: (field('flags') ?? '').split(/\s+/).filter((f) => /^(avx|amx|fma)/.test(f)),
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAverageAtStart: os.loadavg()[0],
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    onnxruntimeNode: packageVersion('onnxruntime-node'),
    sharp: packageVersion('sharp'),
    autocannon: packageVersion('autocannon'),
    gitCommit: gitCommit(),
  };
}

function tryRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Installed version from node_modules (package `exports` maps may hide package.json from require). */
function packageVersion(name: string): string {
  const json = tryRead(path.join(packageRoot, 'node_modules', name, 'package.json'));
  return json ? (JSON.parse(json) as { version: string }).version : 'not installed';
}

function gitCommit(): string {
  const git = (...args: string[]) =>
    execFileSync('git', args, { cwd: packageRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    return git('rev-parse', '--short', 'HEAD') + (git('status', '--porcelain') ? '-dirty' : '');
  } catch {
    return 'unknown';
  }
}

/** A process's resident memory now, in MiB (from `ps`). */
export function rssMib(pid: number): number {
  return (
    Number(
      execFileSync('ps', ['-o', 'rss=', '-p', String(pid)])
        .toString()
        .trim(),
    ) / 1024
  );
}
