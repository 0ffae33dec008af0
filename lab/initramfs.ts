/**
 * The lab's initramfs: static busybox, lab/guest/init.sh as /init, the four modules the 9p root
 * needs (netfs, 9pnet, 9pnet_virtio, 9p) and the NVDIMM/dax/kmem ones, decompressed because
 * busybox insmod cannot read .ko.xz. Cached in .cache/lab/ keyed by kernel version, init.sh's
 * content and the module list.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VmtierError } from '../src/errors.js';
import type { LabKernel } from './kernel.js';
import { guestScriptDir, labCacheDir } from './paths.js';

const ROOT_MODULES = ['netfs', '9pnet', '9pnet_virtio', '9p'] as const;
/**
 * The tiers' modules, in load order (dax is built in). Loading them here rather
 * than by modprobe in the chroot saves ~7 s of boot under TCG: no xz in the guest, and none of
 * the `ndctl load-keys` that Debian's modprobe.d runs for libnvdimm.
 */
const TIER_MODULES = ['libnvdimm', 'nfit', 'nd_btt', 'nd_pmem', 'dax_pmem', 'device_dax', 'kmem'] as const;

export function ensureInitramfs(kernel: LabKernel): string {
  const init = readFileSync(join(guestScriptDir, 'init.sh'));
  const key = createHash('sha256').update(kernel.version).update(init).update(TIER_MODULES.join(' ')).digest('hex').slice(0, 12);
  const out = join(labCacheDir, `initramfs-${kernel.version}-${key}.cpio.gz`);
  if (existsSync(out)) return out;

  mkdirSync(labCacheDir, { recursive: true });
  const work = mkdtempSync(join(labCacheDir, 'initramfs-build-'));
  try {
    for (const d of ['bin', 'modules', 'proc', 'sys', 'dev', 'newroot']) mkdirSync(join(work, d), { recursive: true });
    copyFileSync('/bin/busybox', join(work, 'bin', 'busybox'));
    chmodSync(join(work, 'bin', 'busybox'), 0o755);
    writeFileSync(join(work, 'init'), init, { mode: 0o755 });
    for (const m of [...ROOT_MODULES, ...TIER_MODULES]) {
      const path = execFileSync('modinfo', ['-k', kernel.version, '-n', m], { encoding: 'utf8' }).trim();
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
