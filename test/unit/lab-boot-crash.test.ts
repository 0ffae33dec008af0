// The lab boots once more only when the guest kernel itself crashed while booting (a TCG flake),
// never when a boot fails by design or configuration: those must stay LAB_ERRORs at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kernelCrashDuringBoot } from '../../lab/session.js';

test('a kernel crash in the serial log is recognised; a missing init or a setup failure is not', () => {
  // Tail of a real lab console (6.12 under TCG, this machine).
  const crashed = [
    '[    1.523712] ---[ end trace 0000000000000000 ]---',
    '[    1.523712] RIP: 0010:enqueue_timer+0xa5/0x100',
    '[    1.523712] Kernel panic - not syncing: Fatal exception in interrupt',
  ].join('\n');
  assert.equal(kernelCrashDuringBoot(crashed), 'Kernel panic - not syncing: Fatal exception in interrupt');
  assert.match(kernelCrashDuringBoot('[    2.1] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n') ?? '', /^Oops: int3/);
  assert.match(kernelCrashDuringBoot('[    0.9] BUG: kernel NULL pointer dereference, address: 0000000000000008\n') ?? '', /^BUG: kernel NULL/);
  assert.equal(kernelCrashDuringBoot('[    1.2] Kernel panic - not syncing: No working init found.  Try passing init= option to kernel.\n'), null);
  assert.equal(kernelCrashDuringBoot('LAB-INIT-FAILED: mount host root over 9p\n'), null);
  assert.equal(kernelCrashDuringBoot(''), null);
});
