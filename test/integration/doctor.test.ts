// `vmtier doctor` on this machine (read-only): one NUMA node, DAMON paddr only with the
// platform's kdamond running, no module loading (LAB.md), the shared system libvirtd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DoctorReport } from '../../src/host/doctor.js';

const repoRoot = join(import.meta.dirname, '..', '..', '..');

test('this machine: doctor reports what the host really is, and exits 2 (no slow tier, no tracker)', () => {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'doctor', '--json'], { encoding: 'utf8' });
  const report = JSON.parse(r.stdout) as DoctorReport;
  const st = (id: string) => report.checks.find((c) => c.id === id)?.status;
  assert.equal(r.status, report.exitCode);
  assert.equal(report.exitCode, 2);
  // No module can be loaded here.
  assert.equal(existsSync('/sys/module/vmtier_idle'), false);
  assert.equal(st('kmod'), 'WARN');
  // DAMON without vaddr, and the platform's kdamond is foreign: no tracker at all.
  const ops = readFileSync('/sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/avail_operations', 'utf8').trim();
  assert.equal(st('damon'), ops.split(/\s+/).includes('vaddr') ? 'PASS' : 'WARN');
  assert.equal(st('damon-foreign'), 'WARN');
  assert.equal(st('tracker'), 'FAIL');
  // One node, the only tier: nowhere to demote.
  assert.equal(st('tiers'), 'FAIL');
  const nb = Number(readFileSync('/proc/sys/kernel/numa_balancing', 'utf8').trim());
  assert.equal(st('numa-balancing'), (nb & 2) !== 0 ? 'WARN' : 'PASS');
  const thp = /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))![1];
  assert.match(report.checks.find((c) => c.id === 'thp')!.message, new RegExp(`transparent_hugepage=${thp}`));
  // Tests run as root with every capability.
  assert.equal(st('capabilities'), 'PASS');
  // The system libvirtd answers; every running domain gets its own line.
  const virsh = spawnSync('virsh', ['-c', 'qemu:///system', 'list', '--uuid'], { encoding: 'utf8' });
  assert.equal(st('libvirt'), 'PASS');
  const running = virsh.stdout.split('\n').filter((l) => l.trim() !== '').length;
  // Domains of other tests may start or stop between the two listings: compare loosely.
  const vmLines = report.checks.filter((c) => c.id.startsWith('vm:')).length;
  assert.ok(Math.abs(vmLines - running) <= 2, `${vmLines} vm lines, virsh lists ${running}`);
});

test('this machine: libvirtd at a URI that does not answer is a FAIL line, not a crash', () => {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'doctor', '--json', '--uri', 'qemu+unix:///system?socket=/nonexistent/libvirt-sock'], { encoding: 'utf8' });
  const report = JSON.parse(r.stdout) as DoctorReport;
  const lv = report.checks.find((c) => c.id === 'libvirt');
  assert.equal(lv?.status, 'FAIL');
  assert.equal(r.status, 2);
  assert.equal(report.checks.some((c) => c.id.startsWith('vm:')), false);
});
