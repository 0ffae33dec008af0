// The lab harness itself: `npm run lab -- <command>` passes output and exit status back; a
// session keeps stdout and stderr apart, runs as root in the repository over a read-only root
// with writable tmpfs, runs commands side by side and kills them; a boot that fails is a
// LAB_ERROR naming saved logs, never a silent skip.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LabSession } from '../../lab/index.js';
import { labCacheDir, repoRoot } from '../../lab/paths.js';
import { isVmtierError } from '../../src/errors.js';

describe('lab harness', { timeout: 900_000 }, () => {
  let lab: LabSession;
  before(async () => {
    lab = await LabSession.start({ topology: 'tiered' });
  });
  after(async () => {
    await lab?.close();
  });

  test('stdout, stderr and exit status come back apart; root, in the repository, with env', async () => {
    const r = await lab.run('echo "out $FOO"; echo err >&2; echo "$(id -u) $(pwd)"; exit 7', { env: { FOO: "it's a b" } });
    assert.equal(r.status, 7);
    assert.equal(r.stdout, `out it's a b\n0 ${repoRoot}\n`);
    assert.equal(r.stderr, 'err\n');
    const argv = await lab.run(['printf', '%s|', 'a b', '$HOME', "'q'"]);
    assert.equal(argv.stdout, "a b|$HOME|'q'|");
  });

  test('the shared root is read-only, the writable places are tmpfs', async () => {
    const r = await lab.run(`touch ${repoRoot}/lab-write-probe 2>&1; echo "rc=$?"; touch /tmp/x /root/x /var/tmp/x /run/x && echo ok`);
    assert.match(r.stdout, /Read-only file system/);
    assert.match(r.stdout, /^rc=1$/m);
    assert.match(r.stdout, /^ok$/m);
    assert.equal(existsSync(join(repoRoot, 'lab-write-probe')), false);
  });

  test('commands run side by side; kill ends a whole process group; a timeout is an error', async () => {
    const sleeper = lab.start('sleep 600 & sleep 600; echo never');
    const quick = await lab.run('echo quick');
    assert.equal(quick.stdout, 'quick\n');
    sleeper.kill();
    const killed = await sleeper.wait();
    assert.equal(killed.status, 137);
    assert.equal(killed.stdout, '');
    const left = await lab.run('pgrep -f "sleep 60[0]" || true');
    assert.equal(left.stdout, '', 'sleep processes left behind');
    await assert.rejects(lab.run('sleep 600', { timeoutMs: 1_000 }), (e) => isVmtierError(e, 'LAB_ERROR') && /timed out/.test(e.message));
  });

  test('npm run lab -- <command> prints the output and exits with the command status', () => {
    const r = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'lab.mjs'), 'echo hello from $(uname -r); exit 5'], {
      cwd: repoRoot, encoding: 'utf8', timeout: 300_000,
    });
    assert.equal(r.status, 5, r.stderr);
    assert.match(r.stdout, /^hello from 6\.\d+\.\d+/m);
  });

  test('a boot that fails is LAB_ERROR naming the saved serial log', async () => {
    // No init in the initramfs: the kernel panics, QEMU stops (-no-reboot, panic=-1).
    let err: unknown;
    try {
      const s = await LabSession.start({ append: ['rdinit=/no-such-init'], bootTimeoutMs: 120_000 });
      await s.close();
    } catch (e) {
      err = e;
    }
    assert.ok(isVmtierError(err, 'LAB_ERROR'), String(err));
    const logs = String(err.details?.logs);
    assert.ok(logs.startsWith(join(labCacheDir, 'failures')), logs);
    assert.ok(err.message.includes(logs));
    assert.match(readFileSync(join(logs, 'console.log'), 'utf8'), /Kernel panic/);
    assert.match(readFileSync(join(logs, 'reason.txt'), 'utf8'), /QEMU exited during boot/);
    rmSync(logs, { recursive: true, force: true });
  });
});
