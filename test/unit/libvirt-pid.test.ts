import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { looksLikeQemu, qemuPid, qemuRunDir, readPidFile, verifyQemuPid } from '../../src/libvirt/pid.js';

test('QEMU is recognised by exe or comm, other programs are not', () => {
  assert.equal(looksLikeQemu('/usr/bin/qemu-system-x86_64', 'CPU 0/TCG'), true);
  assert.equal(looksLikeQemu('/usr/bin/qemu-system-x86_64 (deleted)', 'x'), true);
  assert.equal(looksLikeQemu('/usr/libexec/qemu-kvm', 'qemu-kvm'), true);
  assert.equal(looksLikeQemu('/usr/bin/sleep', 'sleep'), false);
  assert.equal(looksLikeQemu('/usr/bin/node', 'node'), false);
});

test('a pid file pointing at a non-QEMU process (this test runner) is PID_UNTRUSTED', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-pid-'));
  try {
    writeFileSync(join(dir, 'vm.pid'), `${process.pid}\n`);
    assert.equal(readPidFile(dir, 'vm'), process.pid);
    assert.throws(() => qemuPid(dir, 'vm', '11111111-2222-3333-4444-555555555555'), (e: { code: string; message: string }) =>
      e.code === 'PID_UNTRUSTED' && /not a QEMU/.test(e.message));
    writeFileSync(join(dir, 'junk.pid'), 'hello');
    assert.throws(() => readPidFile(dir, 'junk'), { code: 'PID_UNTRUSTED' });
    assert.throws(() => readPidFile(dir, 'missing'), { code: 'PID_UNTRUSTED' });
    // A pid that does not exist (pid_max is far below this).
    assert.throws(() => verifyQemuPid(2 ** 30, 'x'), { code: 'PID_UNTRUSTED' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('run dir follows the URI', () => {
  assert.equal(qemuRunDir('qemu:///system'), '/run/libvirt/qemu');
  assert.match(qemuRunDir('qemu:///session'), /libvirt\/qemu\/run$/);
});
