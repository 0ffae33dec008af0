// Safety gates: encrypted, locked, VFIO-pinned, 1 GiB hugetlb without a free gigantic page on a
// slow node, operator opt-out. Domain XML as libvirt writes it; the guest map is built from
// recorded QEMU monitor answers and maps text (no SEV/TDX or 1 GiB pool exists on this machine).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDomainXml } from '../../src/vm/domain-xml.js';
import { buildGuestNodeMap, type MonitorPort } from '../../src/vm/numa-map.js';
import { parseGpa2hva } from '../../src/vm/monitor-text.js';
import { domainGates, giganticCells, type HostHugepages } from '../../src/vm/tiering-gates.js';
import { readHugepagePools } from '../../src/host/hugepages.js';
import { writeTree } from '../helpers/host-fixture.js';

const GiB = 2 ** 30;

const domain = (memoryBacking: string, extra = '') => `<domain type='kvm'><name>g</name><uuid>6f1d4c3a-1111-4222-8333-944455556666</uuid>
  <memory unit='MiB'>256</memory><vcpu>1</vcpu>${memoryBacking}<cpu><numa>
  <cell id='0' cpus='0' memory='128' unit='MiB'/><cell id='1' memory='128' unit='MiB'/></numa></cpu>${extra}<devices/></domain>`;

const noGiant: HostHugepages = { slowNodes: [1], pools: [{ node: 1, sizeBytes: GiB, total: 0, free: 0 }, { node: 1, sizeBytes: 2 ** 21, total: 64, free: 64 }], defaultBytes: 2 ** 21 };
const oneGiantOnSlow: HostHugepages = { ...noGiant, pools: [{ node: 1, sizeBytes: GiB, total: 1, free: 1 }] };
const giantOnlyOnTop: HostHugepages = { ...noGiant, pools: [{ node: 0, sizeBytes: GiB, total: 4, free: 4 }] };

test('launchSecurity SEV, SEV-SNP and TDX: the whole VM is gated as encrypted memory', () => {
  for (const type of ['sev', 'sev-snp', 'tdx']) {
    const c = parseDomainXml(domain('', `<launchSecurity type='${type}'><policy>0x0003</policy></launchSecurity>`));
    assert.equal(c.launchSecurity, type);
    const g = domainGates(c, null);
    assert.deepEqual(g.map((x) => [x.code, x.cells]), [['ENCRYPTED_MEMORY', null]]);
    assert.match(g[0].reason, new RegExp(`type='${type}'`));
  }
  assert.equal(parseDomainXml(domain('')).launchSecurity, null);
  assert.deepEqual(domainGates(parseDomainXml(domain('')), noGiant), [], 'a plain guest passes every gate');
});

test('<memoryBacking><locked/> is gated; mode off is the operator opt-out', () => {
  const locked = domainGates(parseDomainXml(domain('<memoryBacking><locked/></memoryBacking>')), null);
  assert.deepEqual(locked.map((x) => x.code), ['LOCKED_MEMORY']);
  const plain = parseDomainXml(domain(''));
  assert.deepEqual(domainGates(plain, null, 'off').map((x) => x.code), ['OPERATOR_OPT_OUT']);
  assert.deepEqual(domainGates(plain, null, 'tier'), []);
  assert.deepEqual(domainGates(plain, null, 'observe'), []);
});

test('1 GiB hugetlb: gated unless a slow node has a free gigantic page; nodeset limits it to those cells', () => {
  const all = parseDomainXml(domain("<memoryBacking><hugepages><page size='1' unit='GiB'/></hugepages></memoryBacking>"));
  assert.deepEqual(domainGates(all, noGiant).map((x) => [x.code, x.cells]), [['GIGANTIC_HUGEPAGES', null]]);
  assert.deepEqual(domainGates(all, giantOnlyOnTop).map((x) => x.code), ['GIGANTIC_HUGEPAGES'], 'a free page on the DRAM node does not help demotion');
  assert.deepEqual(domainGates(all, oneGiantOnSlow), []);
  const cell1 = parseDomainXml(domain("<memoryBacking><hugepages><page size='2048' unit='KiB' nodeset='0'/><page size='1048576' unit='KiB' nodeset='1'/></hugepages></memoryBacking>"));
  assert.deepEqual(giganticCells(cell1, 2 ** 21), [1]);
  assert.deepEqual(domainGates(cell1, noGiant).map((x) => [x.code, x.cells]), [['GIGANTIC_HUGEPAGES', [1]]]);
  const twoMiB = parseDomainXml(domain("<memoryBacking><hugepages><page size='2' unit='MiB'/></hugepages></memoryBacking>"));
  assert.deepEqual(domainGates(twoMiB, noGiant), []);
  // <hugepages/> without a size takes the kernel's default huge page size.
  const dflt = parseDomainXml(domain('<memoryBacking><hugepages/></memoryBacking>'));
  assert.deepEqual(domainGates(dflt, noGiant), []);
  assert.deepEqual(domainGates(dflt, { ...noGiant, defaultBytes: GiB }).map((x) => x.code), ['GIGANTIC_HUGEPAGES']);
});

test('hugetlb pools are read per node and size from a sysfs tree', (t) => {
  const H = 'sys/devices/system/node';
  const fx = writeTree({
    [`${H}/node0/hugepages/hugepages-2048kB/nr_hugepages`]: '8\n',
    [`${H}/node0/hugepages/hugepages-2048kB/free_hugepages`]: '3\n',
    [`${H}/node1/hugepages/hugepages-1048576kB/nr_hugepages`]: '2\n',
    [`${H}/node1/hugepages/hugepages-1048576kB/free_hugepages`]: '1\n',
  });
  t.after(fx.cleanup);
  assert.deepEqual(readHugepagePools(fx.sysRoot), [
    { node: 0, sizeBytes: 2 ** 21, total: 8, free: 3 },
    { node: 1, sizeBytes: GiB, total: 2, free: 1 },
  ]);
});

// The guest map the engine tiers from: a gated cell's ranges are not migratable, with the reason.
const ramblock = '              Block Name    PSize              Offset               Used              Total\n' +
  '               ram-node0    4 KiB  0x0000000000000000 0x0000000008000000 0x0000000008000000\n' +
  '               ram-node1    4 KiB  0x0000000008000000 0x0000000008000000 0x0000000008000000\n';
const mtree = 'FlatView #0\n AS "memory", root: system\n Root memory region: system\n' +
  '  0000000000000000-0000000007ffffff (prio 0, ram): ram-node0\n' +
  '  0000000008000000-000000000fffffff (prio 0, ram): ram-node1\n';
const gpa = 'Host virtual address for 0x0 (ram-node0) is 0x7f1000000000\nHost virtual address for 0x8000000 (ram-node1) is 0x7f2000000000';
const maps = '7f1000000000-7f1008000000 rw-p 00000000 00:00 0 \n7f2000000000-7f2008000000 rw-p 00000000 00:00 0 ';
function monitor(): MonitorPort {
  const answers = new Map(gpa.split('\n').map((l) => [parseGpa2hva(l).gpa, l] as const));
  return {
    hmp: async (cmd) => {
      if (cmd === 'info ramblock') return ramblock;
      if (cmd === 'info mtree -f') return mtree;
      const m = /^gpa2hva (0x[0-9a-f]+)$/.exec(cmd);
      return m ? answers.get(Number(m[1])) ?? 'not RAM' : `unknown command: '${cmd}'`;
    },
  };
}
const build = (xml: string, hugepages?: HostHugepages) => buildGuestNodeMap({
  domain: { name: 'g', uuid: 'u', pid: 1 }, config: parseDomainXml(xml), monitor: monitor(),
  proc: { maps: () => maps, smaps: () => '', mountinfo: () => '' }, hugepages,
});

test('guest map: encrypted and locked guests are never movable; a 1 GiB cell only on that cell', async () => {
  for (const xml of [domain('', "<launchSecurity type='sev-snp'/>"), domain('<memoryBacking><locked/></memoryBacking>')]) {
    const m = await build(xml);
    assert.deepEqual(m.nodes.map((n) => n.backing.migratable), [false, false]);
    assert.ok(m.nodes.every((n) => /launchSecurity|locked/.test(n.backing.reason ?? '')), JSON.stringify(m.nodes.map((n) => n.backing.reason)));
  }
  const giant = domain("<memoryBacking><hugepages><page size='1048576' unit='KiB' nodeset='1'/></hugepages></memoryBacking>");
  const gated = await build(giant, noGiant);
  assert.deepEqual(gated.nodes.map((n) => n.backing.migratable), [true, false]);
  assert.match(gated.nodes[1].backing.reason!, /1 GiB hugetlb.*slow node 1 has no free 1 GiB page/);
  const open = await build(giant, oneGiantOnSlow);
  assert.deepEqual(open.nodes.map((n) => n.backing.migratable), [true, true]);
  const plain = await build(domain(''));
  assert.ok(plain.nodes.every((n) => n.backing.migratable && n.backing.reason === undefined));
});
