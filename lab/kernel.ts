/**
 * The lab's kernel: Debian bookworm-backports' linux-image-amd64 (6.12 at the time of writing),
 * installed through apt by scripts/ensure-lab.sh, which prints the resolved version.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { VmtierError } from '../src/errors.js';
import { repoRoot } from './paths.js';

export interface LabKernel {
  version: string;
  vmlinuz: string;
  modulesDir: string;
}

let cached: LabKernel | null = null;

/** Runs ensure-lab.sh once per process (fast when everything is installed). */
export function ensureLabKernel(): LabKernel {
  if (cached) return cached;
  const r = spawnSync('bash', [join(repoRoot, 'scripts', 'ensure-lab.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) {
    throw new VmtierError('LAB_ERROR', `scripts/ensure-lab.sh failed (${r.status ?? r.signal})`, { stdout: r.stdout });
  }
  const version = r.stdout.trim().split('\n').pop() ?? '';
  const k: LabKernel = { version, vmlinuz: `/boot/vmlinuz-${version}`, modulesDir: `/lib/modules/${version}` };
  if (!version || !existsSync(k.vmlinuz) || !existsSync(join(k.modulesDir, 'modules.dep'))) {
    throw new VmtierError('LAB_ERROR', `lab kernel "${version}" is not installed completely (${k.vmlinuz}, ${k.modulesDir})`);
  }
  cached = k;
  return k;
}
