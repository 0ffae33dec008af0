/**
 * Host-built C programs the guest runs over the shared root: the workload (lab/workload.c) and
 * the C move_pages loop of bench/migrate. Built with gcc into .cache/lab/bin/, rebuilt when the
 * source changes.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { VmtierError } from '../src/errors.js';
import { labBinDir, repoRoot } from './paths.js';

/** The JSON line the workload prints first: ground truth for tests. */
export interface WorkloadLayout {
  pid: number;
  /** Start of the footprint mapping (2 MiB aligned). */
  base: number;
  bytes: number;
  pageSize: number;
  thp: boolean;
  /** Hot ranges [start, end) in the current phase (addresses as numbers). */
  hot: Array<{ start: number; end: number }>;
  node: number | null;
}

/** Compiles `source` (relative to the repository) to .cache/lab/bin/<name> if missing or older. */
export function ensureLabBinary(name: string, source: string, extraFlags: string[] = []): string {
  const src = join(repoRoot, source);
  const out = join(labBinDir, name);
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  mkdirSync(labBinDir, { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', tmp, src, ...extraFlags], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new VmtierError('LAB_ERROR', `gcc ${source} failed:\n${stderr}`, undefined, { cause: e });
  }
  renameSync(tmp, out);
  return out;
}

export function ensureWorkload(): string {
  return ensureLabBinary('workload', 'lab/workload.c');
}
