// `vmtier doctor` against fixture sysfs/procfs trees of tiered hosts (test/helpers/host-fixture.ts).
// The vmtier_idle device cannot exist on this machine (no module loading): its ABI answer is
// the one stand-in (`kmodAbi`), named as such; everything else is read from the trees.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runDoctor, formatDoctor, type DoctorReport, type DoctorVm } from '../../src/host/doctor.js';
import { labTwoTierHost, untieredKernelHost, type FixtureTree } from '../helpers/host-fixture.js';

const repoRoot = join(import.meta.dirname, '..', '..', '..');
const ALL_CAPS = '000001ffffffffff';
const ABI_1 = () => 1;

function add(fx: FixtureTree, files: Record<string, string>): void {
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(dirname(join(fx.root, p)), { recursive: true });
    writeFileSync(join(fx.root, p), content);
  }
}

/** The lab host with the module loaded, DAMON vaddr, THP madvise, full capabilities. */
function readyLabHost(t: { after(fn: () => void): void }): FixtureTree {
  const fx = labTwoTierHost();
  t.after(fx.cleanup);
  add(fx, {
    'sys/module/vmtier_idle/refcnt': '0\n',
    'sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds': '0\n',
    'sys/kernel/mm/transparent_hugepage/enabled': 'always [madvise] never\n',
    'proc/sys/kernel/osrelease': '6.12.95+deb12-amd64\n',
    'boot/config-6.12.95+deb12-amd64': 'CONFIG_DAMON=y\nCONFIG_DAMON_VADDR=y\nCONFIG_DAMON_PADDR=y\nCONFIG_DAMON_SYSFS=y\n',
    'proc/self/status': `Name:\tnode\nCapEff:\t${ALL_CAPS}\n`,
  });
  return fx;
}

const byId = (r: DoctorReport, id: string) => {
  const c = r.checks.find((x) => x.id === id);
  assert.ok(c, `no check ${id} in ${r.checks.map((x) => x.id).join(',')}`);
  return c;
};
const opts = (fx: FixtureTree) => ({ sysRoot: fx.sysRoot, procRoot: fx.procRoot, bootRoot: join(fx.root, 'boot'), runDir: join(fx.root, 'run') });

test('lab host: the kernel tiering that fights vmtier is a WARN with the exact command; exit 1', (t) => {
  const fx = readyLabHost(t);
  const r = runDoctor({ ...opts(fx), kmodAbi: ABI_1 });
  assert.equal(byId(r, 'kmod').status, 'PASS');
  assert.match(byId(r, 'kmod').message, /ABI 1/);
  assert.equal(byId(r, 'damon').status, 'PASS');
  assert.match(byId(r, 'damon').message, /vaddr.*config-6\.12/);
  assert.equal(byId(r, 'damon-foreign').status, 'PASS');
  assert.equal(byId(r, 'tracker').status, 'PASS');
  assert.match(byId(r, 'tracker').message, /kmod/);
  assert.equal(byId(r, 'tiers').status, 'PASS');
  assert.match(byId(r, 'tiers').message, /top nodes 0, slow nodes 1 \(memory_tier4=\[0\] memory_tier67=\[1\]\)/);
  const nb = byId(r, 'numa-balancing');
  assert.equal(nb.status, 'WARN');
  assert.match(nb.fix!, /^sysctl -w kernel\.numa_balancing=0 /);
  const dem = byId(r, 'demotion');
  assert.equal(dem.status, 'WARN');
  assert.match(dem.fix!, /^echo false > \/sys\/kernel\/mm\/numa\/demotion_enabled/);
  assert.equal(byId(r, 'thp').status, 'PASS');
  assert.match(byId(r, 'thp').message, /madvise.*2 MiB/);
  assert.equal(byId(r, 'capabilities').status, 'PASS');
  assert.deepEqual(r.summary, { pass: r.checks.length - 2, warn: 2, fail: 0 });
  assert.equal(r.exitCode, 1);
  assert.equal(r.checks.some((c) => c.id === 'libvirt'), false, 'libvirt not probed when not asked');

  // The same host with the kernel's tiering switched off passes everything: exit 0.
  add(fx, { 'proc/sys/kernel/numa_balancing': '1\n', 'sys/kernel/mm/numa/demotion_enabled': 'false\n' });
  const ok = runDoctor({ ...opts(fx), kmodAbi: ABI_1 });
  assert.deepEqual(ok.checks.filter((c) => c.status !== 'PASS'), []);
  assert.equal(ok.exitCode, 0);
  // numa_balancing=3 keeps plain NUMA balancing in the fix.
  add(fx, { 'proc/sys/kernel/numa_balancing': '3\n' });
  assert.match(byId(runDoctor({ ...opts(fx), kmodAbi: ABI_1 }), 'numa-balancing').fix!, /numa_balancing=1 /);
});

test('module: not loaded is a WARN; another ABI is a FAIL; an unopenable device is a WARN; no tracker at all is a FAIL', (t) => {
  const fx = readyLabHost(t);
  const wrongAbi = runDoctor({ ...opts(fx), kmodAbi: () => 2 });
  assert.equal(byId(wrongAbi, 'kmod').status, 'FAIL');
  assert.match(byId(wrongAbi, 'kmod').message, /ABI 2, this vmtier speaks ABI 1/);
  assert.equal(byId(wrongAbi, 'tracker').message, "tracker 'auto' uses damon (vaddr)");
  assert.equal(wrongAbi.exitCode, 2);
  const eacces = runDoctor({ ...opts(fx), kmodAbi: () => { throw Object.assign(new Error('denied'), { code: 'EACCES' }); } });
  assert.equal(byId(eacces, 'kmod').status, 'WARN');
  assert.match(byId(eacces, 'kmod').message, /EACCES/);
  // The real device path under the fixture does not exist: the default probe opens it and gets ENOENT.
  const missingDev = runDoctor({ ...opts(fx), kmodDevice: join(fx.root, 'dev/vmtier_idle') });
  assert.equal(byId(missingDev, 'kmod').status, 'FAIL');
  assert.match(byId(missingDev, 'kmod').message, /does not exist/);

  const bare = untieredKernelHost();
  t.after(bare.cleanup);
  add(bare, { 'proc/self/status': `CapEff:\t${ALL_CAPS}\n` });
  const r = runDoctor(opts(bare));
  assert.equal(byId(r, 'kmod').status, 'WARN');
  assert.match(byId(r, 'kmod').fix!, /modprobe vmtier_idle/);
  assert.equal(byId(r, 'damon').status, 'WARN');
  assert.equal(byId(r, 'tracker').status, 'FAIL');
  assert.equal(r.exitCode, 2);
});

test('DAMON: paddr-only, foreign kdamond threads and directories are reported; vmtier\'s own kdamond is not foreign', (t) => {
  const fx = readyLabHost(t);
  const K = 'sys/kernel/mm/damon/admin/kdamonds';
  add(fx, {
    [`${K}/nr_kdamonds`]: '1\n',
    [`${K}/0/state`]: 'on\n',
    [`${K}/0/pid`]: '75\n',
    [`${K}/0/contexts/0/avail_operations`]: 'paddr\n',
    'proc/75/comm': 'kdamond.0\n',
  });
  const r = runDoctor({ ...opts(fx), kmodAbi: ABI_1 });
  assert.equal(byId(r, 'damon').status, 'WARN');
  assert.match(byId(r, 'damon').message, /"paddr", not vaddr.*avail_operations|"paddr", not vaddr/);
  assert.equal(byId(r, 'damon-foreign').status, 'WARN');
  assert.match(byId(r, 'damon-foreign').message, /kdamond 0 on, thread pid 75/);
  assert.equal(byId(r, 'tracker').status, 'PASS', 'the module still works beside a foreign kdamond');

  add(fx, { [`${K}/0/contexts/0/avail_operations`]: 'vaddr fvaddr paddr\n', 'run/damon-kdamond.json': JSON.stringify({ version: 1, kdamond: 0, kdamondPid: 75 }) });
  const own = runDoctor({ ...opts(fx), kmodAbi: ABI_1 });
  assert.equal(byId(own, 'damon').status, 'PASS');
  assert.match(byId(own, 'damon').message, /from avail_operations/);
  assert.equal(byId(own, 'damon-foreign').status, 'PASS');
});

test('no slow node and missing capabilities are FAILs with the fix', (t) => {
  const fx = readyLabHost(t);
  add(fx, { 'proc/self/status': 'CapEff:\t0000000000200000\n' }); // CAP_SYS_ADMIN only
  const r = runDoctor({ ...opts(fx), kmodAbi: ABI_1, tierOverrides: { '1': 'top' } });
  assert.equal(byId(r, 'tiers').status, 'FAIL');
  assert.match(byId(r, 'tiers').fix!, /daxctl reconfigure-device --mode=system-ram/);
  const caps = byId(r, 'capabilities');
  assert.equal(caps.status, 'FAIL');
  assert.match(caps.message, /CAP_DAC_READ_SEARCH.*CAP_SYS_PTRACE.*CAP_SYS_NICE/);
  assert.doesNotMatch(caps.message, /CAP_SYS_ADMIN/);
  assert.equal(r.exitCode, 2);
});

test('VMs: each running domain that cannot be tiered is a WARN with why; libvirtd down is a FAIL', (t) => {
  const fx = readyLabHost(t);
  add(fx, {
    'sys/devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages': '0\n',
    'sys/devices/system/node/node1/hugepages/hugepages-1048576kB/free_hugepages': '0\n',
    'proc/meminfo': 'MemTotal: 1 kB\nHugepagesize:       2048 kB\n',
  });
  const xml = (name: string, inner: string) => `<domain type='kvm'><name>${name}</name><uuid>00000000-0000-4000-8000-00000000000${name.length}</uuid>
    <memory unit='MiB'>512</memory><vcpu>1</vcpu>${inner}<devices/></domain>`;
  const vms: DoctorVm[] = [
    { name: 'plain', uuid: 'u1', xml: xml('plain', ''), mode: 'tier' },
    { name: 'snp', uuid: 'u2', xml: xml('snp', "<launchSecurity type='sev-snp'/>"), mode: null },
    { name: 'locked', uuid: 'u3', xml: xml('locked', '<memoryBacking><locked/></memoryBacking>'), mode: null },
    { name: 'giant', uuid: 'u4', xml: xml('giant', "<memoryBacking><hugepages><page size='1' unit='GiB'/></hugepages></memoryBacking>"), mode: null },
    { name: 'optout', uuid: 'u5', xml: xml('optout', ''), mode: 'off' },
    { name: 'broken', uuid: 'u6', xml: '<domain>', mode: null },
  ];
  const r = runDoctor({ ...opts(fx), kmodAbi: ABI_1, libvirt: { ok: true, uri: 'qemu:///system', vms } });
  assert.equal(byId(r, 'libvirt').status, 'PASS');
  assert.match(byId(r, 'libvirt').message, /6 running domains/);
  assert.equal(byId(r, 'vm:plain').status, 'PASS');
  for (const [name, why] of [['snp', /launchSecurity type='sev-snp'/], ['locked', /locked/], ['giant', /1 GiB hugetlb.*slow node 1/], ['optout', /mode: off/], ['broken', /cannot be read/]] as const) {
    const c = byId(r, `vm:${name}`);
    assert.equal(c.status, 'WARN', name);
    assert.match(c.message, why);
  }
  const down = runDoctor({ ...opts(fx), kmodAbi: ABI_1, libvirt: { ok: false, uri: 'qemu:///system', error: 'Failed to connect socket' } });
  assert.equal(byId(down, 'libvirt').status, 'FAIL');
  assert.equal(down.exitCode, 2);
  assert.match(formatDoctor(down), /^FAIL  libvirt .*Failed to connect socket\n {23}fix: systemctl start libvirtd/m);
});

test('CLI: vmtier doctor --json on a fixture tree; the exit status follows the worst check', (t) => {
  const fx = readyLabHost(t);
  const run = (...extra: string[]) => spawnSync(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'doctor', '--no-libvirt',
    '--sys-root', fx.sysRoot, '--proc-root', fx.procRoot, '--boot-root', join(fx.root, 'boot'), '--device', join(fx.root, 'dev/vmtier_idle'), ...extra], { encoding: 'utf8' });
  const j = run('--json');
  // The module is "loaded" in the tree but its device is not there: FAIL, exit 2.
  assert.equal(j.status, 2, j.stderr);
  const report = JSON.parse(j.stdout) as DoctorReport;
  assert.equal(report.exitCode, 2);
  assert.equal(report.checks.find((c) => c.id === 'kmod')?.status, 'FAIL');
  assert.equal(report.checks.find((c) => c.id === 'numa-balancing')?.status, 'WARN');
  const text = run();
  assert.equal(text.status, 2);
  assert.match(text.stdout, /^WARN  numa-balancing +kernel\.numa_balancing=2/m);
  assert.match(text.stdout, /6 passed, 2 warnings, 1 failed$/m);
});
