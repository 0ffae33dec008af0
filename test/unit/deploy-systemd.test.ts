// deploy/systemd/vmtier.service checked by systemd itself (`systemd-analyze verify`, Debian
// package systemd), and the packaging files checked for what the .deb relies on. The full
// install/DKMS/purge cycle runs in a fresh Debian root: scripts/fresh-root-deb.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const repoRoot = join(import.meta.dirname, '..', '..', '..');
const UNIT = readFileSync(join(repoRoot, 'deploy/systemd/vmtier.service'), 'utf8');

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/**
 * `systemd-analyze verify` also requires ExecStart= binaries to exist: /usr/bin/vmtier is
 * pointed at a stub in a temporary directory, every other line is the shipped unit's.
 */
function verify(unitText: string): { status: number | null; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-unit-'));
  try {
    const stub = join(dir, 'vmtier');
    writeFileSync(stub, '#!/bin/sh\nexit 0\n');
    chmodSync(stub, 0o755);
    writeFileSync(join(dir, 'vmtier.service'), unitText.replaceAll('/usr/bin/vmtier', stub));
    const r = spawnSync('systemd-analyze', ['verify', join(dir, 'vmtier.service')], { encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function directive(key: string): string[] {
  return UNIT.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
}

test('systemd-analyze verify accepts the unit with no warning (and does warn on a broken one)', () => {
  assert.ok(have('systemd-analyze'), 'systemd-analyze is missing: install Debian package systemd (scripts/ensure-host.sh)');
  const ok = verify(UNIT);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stderr.trim(), '', 'systemd-analyze printed warnings');
  // The check can fail: an unknown key and a bad value are both reported.
  const bad = verify(UNIT.replace('ProtectClock=yes', 'ProtectClok=yes').replace('Restart=on-failure', 'Restart=sometimes'));
  assert.match(bad.stderr, /Unknown key 'ProtectClok'/);
  assert.match(bad.stderr, /restart specifier, ignoring: sometimes/);
});

test('the unit: journald, Restart=on-failure, after libvirtd, exactly the capabilities vmtier uses', () => {
  assert.deepEqual(directive('Restart'), ['on-failure']);
  assert.ok(directive('After').join(' ').split(/\s+/).includes('libvirtd.service'));
  assert.ok(directive('Wants').join(' ').split(/\s+/).includes('libvirtd.service'));
  assert.deepEqual(directive('StandardOutput'), ['journal']);
  assert.deepEqual(directive('ExecStart'), ['/usr/bin/vmtier serve --config /etc/vmtier/vmtier.yaml']);
  assert.deepEqual(directive('CapabilityBoundingSet')[0].split(/\s+/).sort(), ['CAP_DAC_READ_SEARCH', 'CAP_SYS_ADMIN', 'CAP_SYS_NICE', 'CAP_SYS_PTRACE']);
  // Each capability is explained in a comment above it.
  for (const cap of ['CAP_DAC_READ_SEARCH', 'CAP_SYS_ADMIN', 'CAP_SYS_NICE', 'CAP_SYS_PTRACE']) assert.match(UNIT, new RegExp(`^#\\s+${cap}\\s+\\S`, 'm'));
  // Node's JIT needs W+X pages; /dev/vmtier_idle must stay visible.
  assert.deepEqual(directive('MemoryDenyWriteExecute'), ['no']);
  assert.deepEqual(directive('PrivateDevices'), ['no']);
});

test('systemd-analyze security rates the unit\'s exposure below 4.0 ("OK")', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-unit-'));
  try {
    writeFileSync(join(dir, 'vmtier.service'), UNIT);
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', join(dir, 'vmtier.service')], { encoding: 'utf8' });
    const m = /Overall exposure level for vmtier\.service: (\d+\.\d+)/.exec(r.stdout);
    assert.ok(m, r.stdout + r.stderr);
    assert.ok(Number(m[1]) < 4.0, `exposure ${m[1]}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('packaging files: dkms.conf matches package.json\'s version and autoinstalls; maintainer scripts parse', () => {
  const dkms = readFileSync(join(repoRoot, 'kmod/dkms.conf'), 'utf8');
  const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
  assert.match(dkms, new RegExp(`^PACKAGE_VERSION="${version.replaceAll('.', '\\.')}"$`, 'm'));
  assert.match(dkms, /^AUTOINSTALL="yes"$/m);
  assert.match(dkms, /^BUILT_MODULE_NAME\[0\]="vmtier_idle"$/m);
  // The module name matches kmod/Makefile's obj-m.
  assert.match(readFileSync(join(repoRoot, 'kmod/Makefile'), 'utf8'), /^obj-m := vmtier_idle\.o$/m);
  for (const s of ['postinst', 'prerm', 'postrm']) {
    const r = spawnSync('sh', ['-n', join(repoRoot, 'deploy/debian', s)], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${s}: ${r.stderr}`);
  }
  const postrm = readFileSync(join(repoRoot, 'deploy/debian/postrm'), 'utf8');
  assert.match(postrm, /KEEP_ON_PURGE/);
  for (const s of ['scripts/package-deb.sh', 'scripts/fresh-root-deb.sh']) {
    const r = spawnSync('bash', ['-n', join(repoRoot, s)], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${s}: ${r.stderr}`);
  }
});
