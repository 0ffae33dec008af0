// DamonTracker on THIS machine's real DAMON sysfs, read-only: where a kdamond that vmtier did
// not create exists (the development machine runs a platform kdamond, paddr), the tracker must
// refuse with TRACKER_BUSY before writing anything. The io passed in refuses every write, so a
// bug could not disturb that kdamond either. A host without a foreign kdamond cannot show the
// refusal read-only: there the test says so and skips (the fake-sysfs tests cover the logic).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DamonTracker } from '../../src/scan/damon.js';
import { DAMON_SYSFS_ROOT, nodeSysfsIo, type SysfsIo } from '../../src/scan/damon-sysfs.js';
import { isVmtierError, type VmtierError } from '../../src/errors.js';

const hasDamon = existsSync(`${DAMON_SYSFS_ROOT}/kdamonds/nr_kdamonds`);
// Read independently of src/scan: kdamond directories in sysfs, and kdamond threads (DAMON_RECLAIM
// and the like run without sysfs directories).
const foreignDirs = hasDamon ? Number(readFileSync(`${DAMON_SYSFS_ROOT}/kdamonds/nr_kdamonds`, 'utf8').trim()) : 0;
const foreignThreads = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((pid) => {
  try { return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('kdamond'); } catch { return false; }
});
function vaddrOffered(): boolean | null {
  try {
    return readFileSync(`${DAMON_SYSFS_ROOT}/kdamonds/0/contexts/0/avail_operations`, 'utf8').split(/\s+/).includes('vaddr');
  } catch {
    return null;
  }
}
const skip = !hasDamon ? 'no DAMON sysfs on this kernel'
  : foreignDirs === 0 && foreignThreads.length === 0 ? 'no kdamond that vmtier did not create runs on this host'
  : false;

test('refuses TRACKER_BUSY where a foreign kdamond exists, without a single write', { skip }, async () => {
  const attempted: string[] = [];
  const readOnly: SysfsIo = {
    read: nodeSysfsIo.read,
    list: nodeSysfsIo.list,
    exists: nodeSysfsIo.exists,
    write: async (p) => {
      attempted.push(p);
      throw Object.assign(new Error(`write refused by the test: ${p}`), { code: 'EPERM', errno: -1 });
    },
  };
  const runDir = mkdtempSync(join(tmpdir(), 'vmtier-damon-refusal-'));
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  try {
    const t = new DamonTracker({ io: readOnly, runDir, exitHook: false });
    let err: VmtierError | undefined;
    await assert.rejects(t.track(child.pid!, [{ start: 0x10000000, end: 0x10100000 }]), (e) => {
      err = e as VmtierError;
      // Foreign directories that are off on a kernel without vaddr: unavailable is the first reason.
      return isVmtierError(e, 'TRACKER_BUSY') || (vaddrOffered() === false && isVmtierError(e, 'TRACKER_UNAVAILABLE'));
    });
    assert.deepEqual(attempted, []);
    // The refusal names what runs, and whether this kernel offers vaddr, as sysfs says.
    const details = err!.details as { vaddr?: boolean | null; running?: { kdamond: number; pid: number }[]; threads?: number[]; nrKdamonds?: number };
    if (err!.code === 'TRACKER_UNAVAILABLE') {
      assert.ok(!(err!.details as { operations: string[] }).operations.includes('vaddr'));
    } else if (foreignDirs > 0) {
      const v = vaddrOffered();
      if (v !== null && details.vaddr !== undefined && details.vaddr !== null) assert.equal(details.vaddr, v);
      assert.ok((details.running?.length ?? 0) >= 1 || (details.threads?.length ?? 0) >= 1 || details.nrKdamonds === foreignDirs, JSON.stringify(details));
    } else {
      assert.deepEqual([...(details.threads ?? [])].map(String).sort(), [...foreignThreads].sort());
    }
    assert.deepEqual(readdirSync(runDir), [], 'no ownership state was claimed');
    await t.close();
  } finally {
    child.kill();
    rmSync(runDir, { recursive: true, force: true });
  }
});
