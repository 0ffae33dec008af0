// `vmtier profile list|render|validate` as a user runs it: the real bin/vmtier.js in a child process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { XMLParser } from 'fast-xml-parser';

const BIN = fileURLToPath(new URL('../../../bin/vmtier.js', import.meta.url));

function vmtier(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('profile list: a table and JSON of the shipped profiles', () => {
  const t = vmtier('profile', 'list');
  assert.equal(t.status, 0, t.stderr);
  assert.match(t.stdout, /^name\s+guest\s+vcpus\s+memory\s+tiers\s+description$/m);
  assert.match(t.stdout, /^lab-tiered\s+exposed\s+2\s+2080M\s+dram\+pmem\s/m);
  const j = vmtier('profile', 'list', '--json');
  const names = (JSON.parse(j.stdout) as Array<{ name: string }>).map((p) => p.name);
  assert.ok(names.includes('transparent-tiered') && names.includes('seed-dram-pmem'));
});

test('profile render: QEMU line with overrides, libvirt XML, JSON', () => {
  const q = vmtier('profile', 'render', 'cxl-expander', '--memory', '64G', '--dram-ratio', '0.25');
  assert.equal(q.status, 0, q.stderr);
  assert.match(q.stdout, /^qemu-system-x86_64 -machine q35,hmat=on -m 64G -smp 8 -object memory-backend-memfd,id=ram-node0,size=16G,share=on,host-nodes=0,policy=bind /);
  const x = vmtier('profile', 'render', 'lab-three-tier', '--var', 'labDir=/srv/lab', '--format', 'libvirt', '--domain-name', 'vm7');
  assert.equal(x.status, 0, x.stderr);
  const d = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' }).parse(x.stdout).domain;
  assert.equal(d.name, 'vm7');
  assert.deepEqual(d.cpu.numa.cell.map((c: Record<string, string>) => c.cpus ?? null), ['0-1', null, null]);
  const seed = vmtier('profile', 'render', 'seed-dram-pmem', '--format', 'libvirt');
  assert.equal(seed.status, 0);
  assert.match(seed.stderr, /^warning: tiers\[0\]\.backend\.path: libvirt cannot back a NUMA cell with \/dev\/dax1\.0/m);
  const j = JSON.parse(vmtier('profile', 'render', 'transparent-tiered', '--json').stdout);
  assert.equal(j.layout.nodes.length, 1);
  assert.ok(j.qemuArgs.includes('memory-backend-memfd,id=ram-node0,size=8G,share=on,host-nodes=0-1,policy=bind'));
});

test('profile render/validate: mistakes print CODE: message and exit 1', () => {
  const cases: Array<[string[], RegExp]> = [
    [['profile', 'render', 'lab-tiered'], /^INVALID_PROFILE: tiers\[0\]\.nvdimm\.backend\.path: unknown variable \$\{labDir\}/],
    [['profile', 'render', 'cxl-expander', '--memory', '1G', '--dram-ratio', '1'], /^INVALID_PROFILE: tiers: DRAM 1 GiB and sized tiers 0 B leave nothing/],
    [['profile', 'render', 'cxl-expander', '--dram-ratio', 'half'], /^INVALID_INPUT: --dram-ratio/],
    [['profile', 'render', 'nope'], /^NOT_FOUND: no profile named "nope"/],
    [['profile', 'render', '/nonexistent/p.yaml'], /^NOT_FOUND: profile file \/nonexistent\/p\.yaml: ENOENT/],
    // This machine has one NUMA node: the CXL profile's host node 1 does not exist here.
    [['profile', 'validate', 'cxl-expander', '--check-host'], /^INVALID_PROFILE: tiers\[0\]\.backend\.hostNodes: host node 1 does not exist/],
  ];
  for (const [args, err] of cases) {
    const r = vmtier(...args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, err);
    assert.equal(r.stdout, '');
  }
  const ok = vmtier('profile', 'validate', 'lab-tiered', '--var', 'labDir=/tmp', '--check-host');
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^node 1 pmem: 32 MiB \+ nvdimm 1026 MiB \(kmem\) \+ nvdimm 66 MiB \(devdax\), no CPUs, ram 300 ns 5 GiB\/s$/m);
});
