// DamonTracker on THIS machine's real DAMON sysfs, read-only: a platform kdamond (paddr)
// runs here, so the tracker must refuse with TRACKER_BUSY before writing anything. The io
// passed in refuses every write, so a bug could not disturb the platform kdamond either.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DamonTracker } from '../../src/scan/damon.js';
import { DAMON_SYSFS_ROOT, nodeSysfsIo, type SysfsIo } from '../../src/scan/damon-sysfs.js';
import { isVmtierError, type VmtierError } from '../../src/errors.js';

const hasDamon = existsSync(`${DAMON_SYSFS_ROOT}/kdamonds/nr_kdamonds`);

test('refuses TRACKER_BUSY on this machine (platform kdamond running) without a single write', { skip: !hasDamon && 'no DAMON sysfs on this kernel' }, async () => {
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
      return isVmtierError(e, 'TRACKER_BUSY');
    });
    assert.deepEqual(attempted, []);
    // This kernel offers only paddr: the refusal says so as well.
    const details = err!.details as { vaddr: boolean | null; running: { kdamond: number; pid: number }[] };
    assert.equal(details.vaddr, false);
    assert.ok(details.running.length >= 1);
    assert.ok(details.running[0]!.pid > 0);
    assert.deepEqual(readdirSync(runDir), [], 'no ownership state was claimed');
    await t.close();
  } finally {
    child.kill();
    rmSync(runDir, { recursive: true, force: true });
  }
});
