/**
 * The lab's kernels, both Debian's and both installed through apt by scripts/ensure-lab.sh, which
 * prints the resolved version last:
 * - '6.12' (default): bookworm-backports' linux-image-amd64 (6.12.x at the time of writing);
 * - '6.1': bookworm's own linux-image-amd64 (6.1.x; `ensure-lab.sh --kernel 6.1`). It has memory
 *   tiers and HMAT but no DAMON and no CONFIG_PAGE_IDLE_FLAG: tests that need those say so.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { VmtierError } from '../src/errors.js';
import { repoRoot } from './paths.js';

export const LAB_KERNELS = ['6.12', '6.1'] as const;
export type LabKernelName = (typeof LAB_KERNELS)[number];

export interface LabKernel {
  name: LabKernelName;
  version: string;
  vmlinuz: string;
  modulesDir: string;
}

const cached = new Map<LabKernelName, LabKernel>();

/** Runs ensure-lab.sh once per process and kernel (fast when everything is installed). */
export function ensureLabKernel(name: LabKernelName = '6.12'): LabKernel {
  if (!LAB_KERNELS.includes(name)) throw new VmtierError('INVALID_INPUT', `unknown lab kernel "${String(name)}" (${LAB_KERNELS.join(', ')})`);
  const hit = cached.get(name);
  if (hit) return hit;
  const args = [join(repoRoot, 'scripts', 'ensure-lab.sh'), ...(name === '6.12' ? [] : ['--kernel', name])];
  const r = spawnSync('bash', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) {
    throw new VmtierError('LAB_ERROR', `scripts/ensure-lab.sh ${args.slice(1).join(' ')} failed (${r.status ?? r.signal})`, { stdout: r.stdout });
  }
  const version = r.stdout.trim().split('\n').pop() ?? '';
  // "6.1" must not accept 6.12's "6.12.95+deb12-amd64": the series is followed by "." or "-".
  if (!version.startsWith(`${name}.`) && !version.startsWith(`${name}-`)) {
    throw new VmtierError('LAB_ERROR', `scripts/ensure-lab.sh ${args.slice(1).join(' ')} printed "${version}", not a ${name} kernel`);
  }
  const k: LabKernel = { name, version, vmlinuz: `/boot/vmlinuz-${version}`, modulesDir: `/lib/modules/${version}` };
  if (!existsSync(k.vmlinuz) || !existsSync(join(k.modulesDir, 'modules.dep'))) {
    throw new VmtierError('LAB_ERROR', `lab kernel "${version}" is not installed completely (${k.vmlinuz}, ${k.modulesDir})`);
  }
  cached.set(name, k);
  return k;
}
