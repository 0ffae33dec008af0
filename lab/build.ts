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
  /** 0 at start, 1 after --phase-after (the hot set moved). */
  phase: number;
  /** Start of the footprint mapping (2 MiB aligned). */
  base: number;
  bytes: number;
  pageSize: number;
  thp: boolean;
  /** Hot ranges [start, end) in the current phase (addresses as numbers). */
  hot: Array<{ start: number; end: number }>;
  node: number | null;
  /** Pages held by a pipe (--vmsplice), if any. */
  pinned?: { start: number; end: number };
}

function hexAddr(v: unknown, what: string): number {
  if (typeof v !== 'string' || !/^0x[0-9a-f]+$/.test(v)) throw new VmtierError('INVALID_INPUT', `workload layout: bad ${what} ${String(v)}`);
  return Number.parseInt(v.slice(2), 16);
}

/** Parses one layout line of the workload (addresses arrive as lowercase hex strings). */
export function parseWorkloadLayout(line: string): WorkloadLayout {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new VmtierError('INVALID_INPUT', `workload layout is not JSON: ${line.slice(0, 200)}`);
  }
  const range = (r: unknown, what: string) => {
    const o = r as { start?: unknown; end?: unknown };
    return { start: hexAddr(o?.start, `${what}.start`), end: hexAddr(o?.end, `${what}.end`) };
  };
  return {
    pid: Number(j.pid),
    phase: Number(j.phase),
    base: hexAddr(j.base, 'base'),
    bytes: Number(j.bytes),
    pageSize: Number(j.pageSize),
    thp: j.thp === true,
    hot: (Array.isArray(j.hot) ? j.hot : []).map((r, i) => range(r, `hot[${i}]`)),
    node: typeof j.node === 'number' ? j.node : null,
    ...(j.pinned ? { pinned: range(j.pinned, 'pinned') } : {}),
  };
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
