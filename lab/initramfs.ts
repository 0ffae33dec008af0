/**
 * The lab's initramfs: static busybox, lab/guest/init.sh as /init, the modules the 9p root
 * needs (virtio_pci, 9pnet_virtio and 9p with their dependencies: netfs on 6.12; fscache, netfs
 * and the virtio modules on 6.1)
 * and the NVDIMM/dax/kmem ones, decompressed because busybox insmod cannot read .ko.xz. The load
 * order (dependencies first, from modinfo) is written to /modules/root.order and
 * /modules/tier.order for init.sh. Cached in .cache/lab/ keyed by kernel version, init.sh's
 * content and the module lists.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VmtierError } from '../src/errors.js';
import type { LabKernel } from './kernel.js';
import { guestScriptDir, labCacheDir } from './paths.js';

/** virtio_pci is built into 6.12 (skipped there) and a module on 6.1. */
const ROOT_MODULES = ['virtio_pci', '9pnet', '9pnet_virtio', '9p'] as const;
/**
 * The tiers' modules, in load order (dax is built in). Loading them here rather
 * than by modprobe in the chroot saves ~7 s of boot under TCG: no xz in the guest, and none of
 * the `ndctl load-keys` that Debian's modprobe.d runs for libnvdimm.
 */
const TIER_MODULES = ['libnvdimm', 'nfit', 'nd_btt', 'nd_pmem', 'dax_pmem', 'device_dax', 'kmem'] as const;

/** Path of a loadable module of `version`, or null when it is built in. */
function modulePath(version: string, name: string): string | null {
  const path = execFileSync('modinfo', ['-k', version, '-n', name], { encoding: 'utf8' }).trim();
  return /\.ko(\.xz)?$/.test(path) ? path : null;
}

/** `names` and their loadable dependencies, each after what it depends on; `loaded` is skipped. */
export function moduleLoadOrder(version: string, names: readonly string[], loaded: ReadonlySet<string> = new Set()): string[] {
  const order: string[] = [];
  const seen = new Set<string>(loaded);
  const visit = (name: string, depth: number): void => {
    const n = name.replace(/-/g, '_');
    if (seen.has(n)) return;
    if (depth > 32) throw new VmtierError('LAB_ERROR', `module dependency loop at ${n}`);
    seen.add(n);
    if (!modulePath(version, n)) return; // built in
    const deps = execFileSync('modinfo', ['-k', version, '-F', 'depends', n], { encoding: 'utf8' }).trim();
    for (const d of deps.split(',').filter(Boolean)) visit(d, depth + 1);
    order.push(n);
  };
  for (const n of names) visit(n, 0);
  return order;
}

export function ensureInitramfs(kernel: LabKernel): string {
  const init = readFileSync(join(guestScriptDir, 'init.sh'));
  const key = createHash('sha256').update(kernel.version).update(init).update(ROOT_MODULES.join(' ')).update(TIER_MODULES.join(' ')).digest('hex').slice(0, 12);
  const out = join(labCacheDir, `initramfs-${kernel.version}-${key}.cpio.gz`);
  if (existsSync(out)) return out;

  mkdirSync(labCacheDir, { recursive: true });
  const work = mkdtempSync(join(labCacheDir, 'initramfs-build-'));
  try {
    for (const d of ['bin', 'modules', 'proc', 'sys', 'dev', 'newroot']) mkdirSync(join(work, d), { recursive: true });
    copyFileSync('/bin/busybox', join(work, 'bin', 'busybox'));
    chmodSync(join(work, 'bin', 'busybox'), 0o755);
    writeFileSync(join(work, 'init'), init, { mode: 0o755 });
    const rootOrder = moduleLoadOrder(kernel.version, ROOT_MODULES);
    const tierOrder = moduleLoadOrder(kernel.version, TIER_MODULES, new Set(rootOrder));
    writeFileSync(join(work, 'modules', 'root.order'), rootOrder.join('\n') + '\n');
    writeFileSync(join(work, 'modules', 'tier.order'), tierOrder.join('\n') + '\n');
    for (const m of [...rootOrder, ...tierOrder]) {
      const path = modulePath(kernel.version, m)!;
      const ko = path.endsWith('.xz') ? execFileSync('xz', ['-dc', path]) : readFileSync(path);
      writeFileSync(join(work, 'modules', `${m}.ko`), ko);
    }
    const tmp = `${out}.tmp-${process.pid}`;
    execFileSync('sh', ['-c', `cd "$1" && find . | cpio -o -H newc --quiet | gzip -1 > "$2"`, 'sh', work, tmp]);
    renameSync(tmp, out);
    return out;
  } catch (e) {
    throw new VmtierError('LAB_ERROR', `building the lab initramfs failed: ${(e as Error).message}`, undefined, { cause: e });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
