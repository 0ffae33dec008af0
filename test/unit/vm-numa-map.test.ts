/**
 * Guest node → HVA on text captured from QEMU 7.2 on this machine (test/fixtures/domains/
 * pcihole.*: a 3.5 GiB + 512 MiB two-cell domain whose node 0 spans the PCI hole), plus
 * synthetic /proc text for the backings this machine cannot produce (hugetlbfs, devdax).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDomainXml } from '../../src/vm/domain-xml.js';
import { classifyBacking, coveringMappings, fsTypeOf, parseMaps } from '../../src/vm/maps.js';
import { parseFlatView, parseGpa2hva, parseRamblocks } from '../../src/vm/monitor-text.js';
import { buildGuestNodeMap, guestNodeMapJson, type MonitorPort } from '../../src/vm/numa-map.js';
import { FIXTURE_DIR } from '../helpers/domains.js';

const fx = (f: string) => readFileSync(join(FIXTURE_DIR, f), 'utf8');
const MiB = 2 ** 20;

/** Replays captured monitor answers; gpa2hva answers come from the captured set only. */
function replayMonitor(ramblock: string, mtree: string, gpa2hva: string): MonitorPort & { asked: string[] } {
  const answers = new Map<number, string>();
  for (const line of gpa2hva.split('\n').filter(Boolean)) answers.set(parseGpa2hva(line).gpa, line);
  const asked: string[] = [];
  return {
    asked,
    hmp: async (cmd) => {
      asked.push(cmd);
      if (cmd === 'info ramblock') return ramblock;
      if (cmd === 'info mtree -f') return mtree;
      const m = /^gpa2hva (0x[0-9a-f]+)$/.exec(cmd);
      if (m) return answers.get(Number(m[1])) ?? `Memory at address ${m[1]} is not RAM`;
      return `unknown command: '${cmd}'`;
    },
  };
}

const procFrom = (maps: string, extra: { smaps?: string; mountinfo?: string } = {}) => ({
  maps: () => maps,
  smaps: () => extra.smaps ?? '',
  mountinfo: () => extra.mountinfo ?? '',
});

test('info ramblock: QEMU 7.2 format has no HVA column', () => {
  const b = parseRamblocks(fx('pcihole.ramblock.txt'));
  assert.deepEqual(b.map((x) => [x.name, x.usedBytes, x.hva]), [
    ['ram-node0', 3584 * MiB, null], ['ram-node1', 512 * MiB, null], ['pc.bios', 256 * 1024, null], ['pc.rom', 128 * 1024, null],
  ]);
  assert.equal(b[0]!.pageSizeBytes, 4096);
});

test('info ramblock: newer format with HVA and RO columns', () => {
  const b = parseRamblocks(fx('newer-qemu.ramblock.txt'));
  assert.deepEqual(b.map((x) => [x.name, x.pageSizeBytes, x.hva, x.readOnly]), [
    ['ram-node0', 4096, 0x7f7b97e00000, false], ['ram-node1', 2 * MiB, 0x7f7b77c00000, false],
    ['pc.bios', 4096, 0x7f7cc8e00000, true], ['pc.rom', 4096, 0x7f7cc8c00000, true],
  ]);
  assert.throws(() => parseRamblocks('error: no such command'), { code: 'MONITOR_ERROR' });
});

test('info mtree -f: the system flat view, node 0 split around the PCI hole with its offset', () => {
  const flat = parseFlatView(fx('pcihole.mtree.txt'));
  const node0 = flat.filter((r) => r.name === 'ram-node0');
  assert.equal(node0.length, 6);
  const high = node0.at(-1)!;
  assert.deepEqual(high, { start: 0x100000000, end: 0x120000000, kind: 'ram', name: 'ram-node0', offset: 0xc0000000 });
  assert.deepEqual(flat.find((r) => r.name === 'ram-node1'), { start: 0x120000000, end: 0x140000000, kind: 'ram', name: 'ram-node1', offset: 0 });
  assert.throws(() => parseFlatView('FlatView #0\n AS "I/O", root: io\n'), { code: 'MONITOR_ERROR' });
});

test('pci-hole domain: node 0 is ONE HVA range although it has two GPA ranges; every piece was asked', async () => {
  const config = parseDomainXml(fx('pci-hole.xml'));
  const mon = replayMonitor(fx('pcihole.ramblock.txt'), fx('pcihole.mtree.txt'), fx('pcihole.gpa2hva.txt'));
  const map = await buildGuestNodeMap({ domain: { name: 'p', uuid: 'u', pid: 1 }, config, monitor: mon, proc: procFrom(fx('pcihole.maps.txt')) });
  assert.deepEqual(map.nodes.map((n) => [n.node, n.cpus, n.sizeBytes, n.backing.kind, n.backing.id, n.hva]), [
    [0, '0', 3584 * MiB, 'anonymous', 'ram-node0', [{ start: 0x7f7b97e00000, end: 0x7f7b97e00000 + 3584 * MiB }]],
    [1, null, 512 * MiB, 'anonymous', 'ram-node1', [{ start: 0x7f7b77c00000, end: 0x7f7b77c00000 + 512 * MiB }]],
  ]);
  assert.ok(mon.asked.includes('gpa2hva 0x100000000'), 'the piece above 4 GiB is resolved too');
  const json = JSON.stringify(guestNodeMapJson(map));
  assert.match(json, /"hva":\[\{"start":"0x7f7b97e00000","end":"0x7f7c77e00000"\}\]/);
});

test('the newer QEMU HVA column is used without gpa2hva', async () => {
  const config = parseDomainXml(fx('pci-hole.xml'));
  const mon = replayMonitor(fx('newer-qemu.ramblock.txt'), '', '');
  const map = await buildGuestNodeMap({ domain: { name: 'p', uuid: 'u', pid: 1 }, config, monitor: mon, proc: procFrom(fx('pcihole.maps.txt')) });
  assert.equal(map.nodes[1]!.hva[0]!.start, 0x7f7b77c00000);
  assert.deepEqual(mon.asked, ['info ramblock']);
});

test('monitor and kernel disagree → HVA_MISMATCH', async () => {
  const config = parseDomainXml(fx('pci-hole.xml'));
  // gpa2hva of the high piece moved by 2 MiB: the two GPA ranges no longer agree on one block base.
  const lying = fx('pcihole.gpa2hva.txt').replace('0x7f7c57e00000', '0x7f7c58000000');
  await assert.rejects(buildGuestNodeMap({ domain: { name: 'p', uuid: 'u', pid: 1 }, config,
    monitor: replayMonitor(fx('pcihole.ramblock.txt'), fx('pcihole.mtree.txt'), lying), proc: procFrom(fx('pcihole.maps.txt')) }), { code: 'HVA_MISMATCH' });
  // The node-1 mapping cut in half in maps: the range is not inside one mapping.
  const maps = fx('pcihole.maps.txt').replace(/^7f7b77c00000-7f7b97c00000 /m, '7f7b77c00000-7f7b87c00000 ');
  await assert.rejects(buildGuestNodeMap({ domain: { name: 'p', uuid: 'u', pid: 1 }, config,
    monitor: replayMonitor(fx('pcihole.ramblock.txt'), fx('pcihole.mtree.txt'), fx('pcihole.gpa2hva.txt')), proc: procFrom(maps) }), { code: 'HVA_MISMATCH' });
});

test('a VMA split inside one object still counts as one mapping; a different object does not', () => {
  const maps = parseMaps([
    '7f0000000000-7f0000200000 rw-s 00000000 00:01 1049 /memfd:memory-backend-memfd (deleted)',
    '7f0000200000-7f0000400000 rw-s 00200000 00:01 1049 /memfd:memory-backend-memfd (deleted)',
    '7f0000400000-7f0000600000 rw-s 00000000 00:01 1050 /memfd:memory-backend-memfd (deleted)',
  ].join('\n'));
  assert.equal(coveringMappings(maps, { start: 0x7f0000000000, end: 0x7f0000400000 }).length, 2);
  assert.throws(() => coveringMappings(maps, { start: 0x7f0000000000, end: 0x7f0000600000 }), { code: 'HVA_MISMATCH' });
  assert.throws(() => coveringMappings(maps, { start: 0x7e0000000000, end: 0x7e0000001000 }), { code: 'HVA_MISMATCH' });
});

test('backing classification: memfd, hugetlb memfd, file on tmpfs, hugetlbfs file, devdax, anonymous', () => {
  const mountinfo = [
    '22 1 0:20 / / rw,relatime - ext4 /dev/vda rw',
    '30 22 0:25 / /dev/shm rw - tmpfs tmpfs rw',
    '31 22 0:26 / /dev/hugepages rw - hugetlbfs hugetlbfs rw,pagesize=2M',
  ].join('\n');
  const smaps = '7f0000000000-7f0000400000 rw-s 00000000 00:0f 77 /memfd:memory-backend-memfd (deleted)\nSize: 4096 kB\nKernelPageSize: 2048 kB\n';
  const ctx = { mountinfo: () => mountinfo, smaps: () => smaps };
  const [memfdHuge, memfd, shm, huge, dax, anon, disk] = parseMaps([
    '7f0000000000-7f0000400000 rw-s 00000000 00:0f 77 /memfd:memory-backend-memfd (deleted)',
    '7f1000000000-7f1000400000 rw-s 00000000 00:01 78 /memfd:memory-backend-memfd (deleted)',
    '7f2000000000-7f2000400000 rw-s 00000000 00:19 5 /dev/shm/vm-node1',
    '7f3000000000-7f3000400000 rw-s 00000000 00:1a 6 /dev/hugepages/libvirt/qemu/1-vm/qemu_back_mem._objects_ram-node0.abc (deleted)',
    '7f4000000000-7f4000400000 rw-s 00000000 00:06 7 /dev/dax0.0',
    '7f5000000000-7f5000400000 rw-p 00000000 00:00 0 ',
    '7f6000000000-7f6000400000 rw-s 00000000 fd:00 9 /var/lib/libvirt/qemu/ram/1-vm/ram-node0',
  ].join('\n'));
  assert.deepEqual(classifyBacking(memfdHuge!, 'ram-node0', ctx), { kind: 'hugetlbfs', path: null, id: 'ram-node0', migratable: true });
  assert.deepEqual(classifyBacking(memfd!, 'ram-node1', ctx), { kind: 'memfd', path: null, id: 'ram-node1', migratable: true });
  assert.deepEqual(classifyBacking(shm!, 'n', ctx), { kind: 'file', path: '/dev/shm/vm-node1', id: 'n', migratable: true });
  assert.equal(classifyBacking(huge!, 'n', ctx).kind, 'hugetlbfs');
  assert.equal(classifyBacking(huge!, 'n', ctx).path, '/dev/hugepages/libvirt/qemu/1-vm/qemu_back_mem._objects_ram-node0.abc');
  const d = classifyBacking(dax!, 'memnvdimm0', ctx);
  assert.equal(d.kind, 'devdax');
  assert.equal(d.migratable, false);
  assert.match(d.reason ?? '', /move_pages/);
  assert.equal(classifyBacking(anon!, 'pc.ram', ctx).kind, 'anonymous');
  assert.deepEqual(classifyBacking(disk!, 'n', ctx), { kind: 'file', path: '/var/lib/libvirt/qemu/ram/1-vm/ram-node0', id: 'n', migratable: true });
  assert.equal(fsTypeOf('/dev/shmx/a', mountinfo), 'ext4');
  const [zero, anonHuge] = parseMaps('7f7000000000-7f7000400000 rw-s 00000000 00:01 5 /dev/zero (deleted)\n7f8000000000-7f8000400000 rw-s 00000000 00:0f 6 /anon_hugepage (deleted)');
  assert.equal(classifyBacking(zero!, 'n', ctx).kind, 'anonymous');
  assert.equal(classifyBacking(anonHuge!, 'n', ctx).kind, 'hugetlbfs');
});

test('gpa2hva: an answer without an address is MONITOR_ERROR', () => {
  assert.deepEqual(parseGpa2hva('Host virtual address for 0x10000000 (ram-node1) is 0x7f7403ffe000\r\n'), { gpa: 0x10000000, block: 'ram-node1', hva: 0x7f7403ffe000 });
  assert.throws(() => parseGpa2hva('Memory at address 0xfec00000 is not RAM'), { code: 'MONITOR_ERROR' });
});

test('legacy layout: several cells inside one pc.ram block are sliced in node order', async () => {
  const xml = `<domain><name>old</name><memory unit='MiB'>256</memory><vcpu>1</vcpu><cpu><numa>
    <cell id='0' cpus='0' memory='192' unit='MiB'/><cell id='1' memory='64' unit='MiB'/></numa></cpu></domain>`;
  const ramblock = '              Block Name    PSize              Offset               Used              Total\n' +
    '                  pc.ram    4 KiB  0x0000000000000000 0x0000000010000000 0x0000000010000000\n';
  const mtree = 'FlatView #0\n AS "memory", root: system\n Root memory region: system\n' +
    '  0000000000000000-000000000fffffff (prio 0, ram): pc.ram\n';
  const mon = replayMonitor(ramblock, mtree, 'Host virtual address for 0x0 (pc.ram) is 0x7f0000000000\n');
  const maps = '7f0000000000-7f0010000000 rw-p 00000000 00:00 0 \n';
  const map = await buildGuestNodeMap({ domain: { name: 'old', uuid: 'u', pid: 1 }, config: parseDomainXml(xml), monitor: mon, proc: procFrom(maps) });
  assert.deepEqual(map.nodes.map((n) => n.hva[0]), [{ start: 0x7f0000000000, end: 0x7f000c000000 }, { start: 0x7f000c000000, end: 0x7f0010000000 }]);
});

test('legacy layout from libvirt\'s cpu-numa1: cells of 109550 KiB reach QEMU as 107 MiB each, so the split falls at 107 MiB', async () => {
  // test/fixtures/libvirt-corpus/cpu-numa1.{xml,args}: "-m 214 -numa node,nodeid=0,cpus=0-7,mem=107 -numa node,...,mem=107".
  const xml = readFileSync(join(FIXTURE_DIR, '..', 'libvirt-corpus', 'cpu-numa1.xml'), 'utf8');
  const ramblock = '              Block Name    PSize              Offset               Used              Total\n' +
    '                  pc.ram    4 KiB  0x0000000000000000 0x000000000d600000 0x000000000d600000\n';
  const mtree = 'FlatView #0\n AS "memory", root: system\n Root memory region: system\n' +
    '  0000000000000000-000000000d5fffff (prio 0, ram): pc.ram\n';
  const mon = replayMonitor(ramblock, mtree, 'Host virtual address for 0x0 (pc.ram) is 0x7f0000000000\n');
  const maps = '7f0000000000-7f000d600000 rw-p 00000000 00:00 0 \n';
  const map = await buildGuestNodeMap({ domain: { name: 'QEMUGuest1', uuid: 'u', pid: 1 }, config: parseDomainXml(xml), monitor: mon, proc: procFrom(maps) });
  assert.deepEqual(map.nodes.map((n) => n.hva[0]), [{ start: 0x7f0000000000, end: 0x7f0006b00000 }, { start: 0x7f0006b00000, end: 0x7f000d600000 }]);
});

test('PCI passthrough (VFIO pins guest RAM): every backing is reported not migratable, with the device named', async () => {
  const base = (devices: string) => `<domain><name>v</name><memory unit='MiB'>256</memory><vcpu>1</vcpu><cpu><numa>
    <cell id='0' cpus='0' memory='128' unit='MiB'/><cell id='1' memory='128' unit='MiB'/></numa></cpu>
    <devices>${devices}</devices></domain>`;
  const ramblock = '              Block Name    PSize              Offset               Used              Total\n' +
    '               ram-node0    4 KiB  0x0000000000000000 0x0000000008000000 0x0000000008000000\n' +
    '               ram-node1    4 KiB  0x0000000008000000 0x0000000008000000 0x0000000008000000\n';
  const mtree = 'FlatView #0\n AS "memory", root: system\n Root memory region: system\n' +
    '  0000000000000000-0000000007ffffff (prio 0, ram): ram-node0\n' +
    '  0000000008000000-000000000fffffff (prio 0, ram): ram-node1\n';
  const gpa = 'Host virtual address for 0x0 (ram-node0) is 0x7f1000000000\nHost virtual address for 0x8000000 (ram-node1) is 0x7f2000000000';
  const maps = '7f1000000000-7f1008000000 rw-p 00000000 00:00 0 \n7f2000000000-7f2008000000 rw-p 00000000 00:00 0 ';
  const build = (xml: string) => buildGuestNodeMap({ domain: { name: 'v', uuid: 'u', pid: 1 }, config: parseDomainXml(xml), monitor: replayMonitor(ramblock, mtree, gpa), proc: procFrom(maps) });
  const hostdev = `<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x41' slot='0x00' function='0x1'/></source></hostdev>
    <hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0xbeef'/></source></hostdev>`;
  assert.deepEqual(parseDomainXml(base(hostdev)).pciPassthrough, ['0000:41:00.1'], 'a USB hostdev pins nothing');
  const vf = `<interface type='hostdev' managed='yes'><source><address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x2'/></source></interface>`;
  assert.deepEqual(parseDomainXml(base(vf)).pciPassthrough, ['0000:03:10.2'], 'an SR-IOV VF as <interface type=hostdev>');
  const pinned = await build(base(hostdev));
  for (const n of pinned.nodes) {
    assert.equal(n.backing.migratable, false);
    assert.match(n.backing.reason!, /VFIO device assignment \(0000:41:00\.1\)/);
  }
  const free = await build(base(''));
  assert.ok(free.nodes.every((n) => n.backing.migratable && n.backing.reason === undefined), 'no passthrough: migratable');
});

test('memory devices: dimm and a devdax NVDIMM listed on their node; JSON carries devices and the reason only then', async () => {
  const xml = `<domain><name>m</name><memory unit='MiB'>256</memory><vcpu>1</vcpu><cpu><numa>
    <cell id='0' cpus='0' memory='128' unit='MiB'/><cell id='1' memory='128' unit='MiB'/></numa></cpu>
    <devices><memory model='dimm'><target><size unit='MiB'>128</size><node>1</node></target><alias name='dimm0'/></memory>
    <memory model='nvdimm'><source><path>/dev/dax0.0</path></source><target><size unit='MiB'>64</size><node>1</node></target><alias name='nvdimm1'/></memory>
    </devices></domain>`;
  const ramblock = '              Block Name    PSize              Offset               Used              Total\n' +
    '              memnvdimm1    2 MiB  0x0000000018000000 0x0000000004000000 0x0000000004000000\n' +
    '               ram-node0    4 KiB  0x0000000000000000 0x0000000008000000 0x0000000008000000\n' +
    '               ram-node1    4 KiB  0x0000000008000000 0x0000000008000000 0x0000000008000000\n' +
    '                memdimm0    4 KiB  0x0000000010000000 0x0000000008000000 0x0000000008000000\n';
  const mtree = 'FlatView #0\n AS "memory", root: system\n Root memory region: system\n' +
    '  0000000000000000-0000000007ffffff (prio 0, ram): ram-node0\n' +
    '  0000000008000000-000000000fffffff (prio 0, ram): ram-node1\n' +
    '  0000000100000000-0000000107ffffff (prio 0, ram): memdimm0\n' +
    '  0000000108000000-000000010bffffff (prio 0, nv-ram): memnvdimm1\n';
  const gpa = ['Host virtual address for 0x0 (ram-node0) is 0x7f1000000000', 'Host virtual address for 0x8000000 (ram-node1) is 0x7f2000000000',
    'Host virtual address for 0x100000000 (memdimm0) is 0x7f3000000000', 'Host virtual address for 0x108000000 (memnvdimm1) is 0x7f4000000000'].join('\n');
  const maps = ['7f1000000000-7f1008000000 rw-p 00000000 00:00 0 ', '7f2000000000-7f2008000000 rw-p 00000000 00:00 0 ',
    '7f3000000000-7f3008000000 rw-p 00000000 00:00 0 ', '7f4000000000-7f4004000000 rw-s 00000000 00:06 7 /dev/dax0.0'].join('\n');
  const map = await buildGuestNodeMap({ domain: { name: 'm', uuid: 'u', pid: 1 }, config: parseDomainXml(xml), monitor: replayMonitor(ramblock, mtree, gpa), proc: procFrom(maps) });
  assert.equal(map.nodes[0]!.devices, undefined);
  assert.deepEqual(map.nodes[1]!.hva, [{ start: 0x7f2000000000, end: 0x7f2008000000 }], 'devices are not part of the cell range');
  const [dimm, nv] = map.nodes[1]!.devices!;
  assert.deepEqual(dimm, { model: 'dimm', sizeBytes: 128 * MiB, backing: { kind: 'anonymous', path: null, id: 'memdimm0', migratable: true }, hva: [{ start: 0x7f3000000000, end: 0x7f3008000000 }] });
  assert.equal(nv!.backing.kind, 'devdax');
  assert.equal(nv!.backing.migratable, false);
  const json = guestNodeMapJson(map) as { nodes: Array<Record<string, unknown>> };
  assert.deepEqual(Object.keys(json.nodes[0]!), ['node', 'cpus', 'sizeBytes', 'backing', 'hva']);
  const devs = json.nodes[1]!.devices as Array<{ backing: Record<string, unknown>; hva: unknown }>;
  assert.deepEqual(Object.keys(devs[1]!.backing), ['kind', 'path', 'id', 'migratable', 'reason']);
  assert.deepEqual(devs[1]!.hva, [{ start: '0x7f4000000000', end: '0x7f4004000000' }]);
});
