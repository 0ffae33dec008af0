import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDomainXml, scaledBytes } from '../../src/vm/domain-xml.js';
import { FIXTURE_DIR } from '../helpers/domains.js';

const fixture = (f: string) => readFileSync(join(FIXTURE_DIR, f), 'utf8');
const MiB = 2 ** 20;

test('two cells, one CPU-less, memfd shared backing', () => {
  const c = parseDomainXml(fixture('two-cells-memfd.xml'));
  assert.equal(c.name, 'vmtier-test-a-twocells');
  assert.equal(c.implicitNuma, false);
  assert.equal(c.memoryBytes, 384 * MiB);
  assert.deepEqual(c.cells, [
    { id: 0, cpus: '0-1', memoryBytes: 256 * MiB, memAccess: null, discard: null },
    { id: 1, cpus: null, memoryBytes: 128 * MiB, memAccess: 'shared', discard: null },
  ]);
  assert.equal(c.memoryBacking.sourceType, 'memfd');
  assert.equal(c.memoryBacking.accessMode, 'shared');
  assert.equal(c.memoryBacking.hugepages, null);
});

test('KiB cell sizes, discard, file backing', () => {
  const c = parseDomainXml(fixture('file-backed.xml'));
  assert.equal(c.cells[1]!.memoryBytes, 64 * MiB);
  assert.equal(c.cells[1]!.discard, true);
  assert.equal(c.memoryBacking.sourceType, 'file');
});

test('a domain without <numa> is one implicit node with every vCPU and all memory', () => {
  const c = parseDomainXml(fixture('no-numa.xml'));
  assert.equal(c.implicitNuma, true);
  assert.deepEqual(c.cells, [{ id: 0, cpus: '0-1', memoryBytes: 256 * MiB, memAccess: null, discard: null }]);
  assert.equal(c.memoryBacking.sourceType, null);
});

test('malformed XML is INVALID_XML with a position, not a crash', () => {
  assert.throws(() => parseDomainXml(fixture('malformed.xml')), (e: { code: string; details: { line: number } }) => {
    assert.equal(e.code, 'INVALID_XML');
    assert.equal(typeof e.details.line, 'number');
    return true;
  });
  for (const bad of ['', '   ', '<notadomain/>', '<domain><memory>lots</memory></domain>',
    "<domain><name>x</name><memory unit='parsecs'>1</memory></domain>",
    "<domain><name>x</name><cpu><numa><cell id='0' memory='1' memAccess='maybe'/></numa></cpu></domain>",
    "<domain><name>x</name><cpu><numa><cell id='0' memory='1'/><cell id='0' memory='1'/></numa></cpu></domain>"]) {
    assert.throws(() => parseDomainXml(bad), { code: 'INVALID_XML' }, bad);
  }
});

test('hugepages, numatune memnodes, dimm and nvdimm devices, unordered cells', () => {
  const xml = `<domain type='kvm' id='7'>
    <name>big</name><uuid>0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0</uuid>
    <memory unit='GiB'>6</memory><vcpu placement='static'>4</vcpu>
    <memoryBacking><hugepages><page size='2' unit='M' nodeset='0'/><page size='1048576' nodeset='1'/></hugepages><locked/></memoryBacking>
    <numatune><memory mode='strict' nodeset='0-1'/><memnode cellid='0' mode='strict' nodeset='0'/><memnode cellid='1' mode='preferred' nodeset='1'/></numatune>
    <cpu><numa>
      <cell id='1' memory='2' unit='GiB' memAccess='private'/>
      <cell id='0' cpus='0-3' memory='4194304'/>
    </numa></cpu>
    <devices>
      <memory model='dimm'><target><size unit='MiB'>512</size><node>1</node></target><alias name='dimm0'/></memory>
      <memory model='nvdimm' access='shared'><source><path>/dev/dax0.0</path></source><target><size unit='GiB'>1</size><node>1</node></target><alias name='nvdimm0'/></memory>
    </devices></domain>`;
  const c = parseDomainXml(xml);
  assert.equal(c.uuid, '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0');
  assert.equal(c.id, 7);
  assert.equal(c.vcpus, 4);
  assert.deepEqual(c.cells.map((x) => [x.id, x.cpus, x.memoryBytes, x.memAccess]), [[0, '0-3', 4 * 2 ** 30, null], [1, null, 2 * 2 ** 30, 'private']]);
  assert.deepEqual(c.memoryBacking.hugepages, [{ sizeBytes: 2 * MiB, nodeset: '0' }, { sizeBytes: 2 ** 30, nodeset: '1' }]);
  assert.equal(c.memoryBacking.locked, true);
  assert.deepEqual(c.numatune.memory, { mode: 'strict', nodeset: '0-1', placement: null });
  assert.deepEqual(c.numatune.memnodes, [{ cellid: 0, mode: 'strict', nodeset: '0' }, { cellid: 1, mode: 'preferred', nodeset: '1' }]);
  assert.deepEqual(c.memoryDevices, [
    { model: 'dimm', alias: 'dimm0', node: 1, sizeBytes: 512 * MiB, declaredBytes: 512 * MiB, sourcePath: null, hostNodes: null, pageBytes: null, access: null },
    { model: 'nvdimm', alias: 'nvdimm0', node: 1, sizeBytes: 2 ** 30, declaredBytes: 2 ** 30, sourcePath: '/dev/dax0.0', hostNodes: null, pageBytes: null, access: 'shared' },
  ]);
  assert.equal(c.memoryBytes, 6 * 2 ** 30, 'RAM from the cells; the devices come on top');
  assert.deepEqual(c.cellBackings.map((b) => [b.backend, b.hugepageBytes, b.hostNodes, b.policy]), [
    ['memory-backend-file', 2 * MiB, [0], 'bind'], ['memory-backend-file', 2 ** 30, [1], 'preferred'],
  ]);
});

test('libvirt scaled units: KB is 1000, k and KiB are 1024, default KiB', () => {
  assert.equal(scaledBytes('1', 'KB', 'x'), 1000);
  assert.equal(scaledBytes('1', 'k', 'x'), 1024);
  assert.equal(scaledBytes('3', undefined, 'x'), 3072);
  assert.equal(scaledBytes('2', 'GiB', 'x'), 2 ** 31);
  assert.throws(() => scaledBytes('-1', 'KiB', 'x'), { code: 'INVALID_XML' });
});

const dom = (body: string, devices = '') =>
  `<domain type='kvm'><name>t</name><memory unit='MiB'>1024</memory><vcpu>2</vcpu>${body}<devices>${devices}</devices></domain>`;

test('RAM comes from the <numa> cells, not <memory> (libvirt ignores <memory> when cells exist)', () => {
  const cells = "<cpu><numa><cell id='0' cpus='0-1' memory='768' unit='MiB'/><cell id='1' memory='512' unit='MiB'/></numa></cpu>";
  assert.equal(parseDomainXml(dom(cells)).memoryBytes, 1280 * MiB);
  const small = "<cpu><numa><cell id='0' cpus='0-1' memory='256' unit='MiB'/></numa></cpu>";
  assert.equal(parseDomainXml(dom(small)).memoryBytes, 256 * MiB);
});

test('without <numa>, memory devices are not counted twice: the implicit node is <memory> minus the devices', () => {
  const c = parseDomainXml(dom('', "<memory model='dimm'><target><size unit='MiB'>256</size></target></memory>"));
  assert.equal(c.implicitNuma, true);
  assert.equal(c.cells[0]!.memoryBytes, 768 * MiB);
  assert.equal(c.memoryBytes, 768 * MiB);
  assert.equal(c.memoryDevices[0]!.sizeBytes, 256 * MiB);
  assert.throws(() => parseDomainXml(dom('', "<memory model='dimm'><target><size unit='MiB'>1024</size></target></memory>")), { code: 'INVALID_XML' });
});

test('cell sizes are rounded up to 1 MiB as libvirt rounds them (256 MiB on ppc64)', () => {
  const c = parseDomainXml(dom("<cpu><numa><cell id='0' cpus='0' memory='109550'/><cell id='1' cpus='1' memory='1025'/></numa></cpu>"));
  assert.deepEqual(c.cells.map((x) => x.memoryBytes), [107 * MiB, 2 * MiB]);
  const ppc = parseDomainXml(dom("<os><type arch='ppc64'>hvm</type></os><cpu><numa><cell id='0' cpus='0-1' memory='300' unit='MiB'/></numa></cpu>"));
  assert.equal(ppc.cells[0]!.memoryBytes, 512 * MiB);
});

test('a <page> of 4 KiB is ordinary memory, not huge pages', () => {
  const c = parseDomainXml(dom("<memoryBacking><hugepages><page size='4' unit='KiB'/></hugepages></memoryBacking>"));
  assert.equal(c.memoryBacking.hugepages, null);
  assert.equal(c.cellBackings[0]!.hugepageBytes, null);
  assert.equal(c.cellBackings[0]!.backend, 'memory-backend-ram');
  // Per cell: 4 KiB for cell 0, 2 MiB for the rest.
  const m = parseDomainXml(dom("<memoryBacking><hugepages><page size='4' unit='KiB' nodeset='0'/><page size='2048'/></hugepages></memoryBacking>" +
    "<cpu><numa><cell id='0' cpus='0' memory='512' unit='MiB'/><cell id='1' cpus='1' memory='512' unit='MiB'/></numa></cpu>"));
  assert.deepEqual(m.cellBackings.map((b) => b.hugepageBytes), [null, 2 * MiB]);
  assert.deepEqual(m.memoryBacking.hugepages, [{ sizeBytes: 2 * MiB, nodeset: null }]);
});

test('PCI addresses are normalised: hex, decimal and octal spellings of one device are one address', () => {
  const hd = (a: string) => `<hostdev mode='subsystem' type='pci'><source><address ${a}/></source></hostdev>`;
  const c = parseDomainXml(dom('', hd("domain='0x0021' bus='0xde' slot='0x1f' function='0x1'") + hd("domain='33' bus='222' slot='31' function='1'") +
    hd("domain='041' bus='0336' slot='037' function='1'")));
  assert.deepEqual(c.pciPassthrough, ['0021:de:1f.1']);
  assert.throws(() => parseDomainXml(dom('', hd("domain='0' bus='0' slot='32' function='0'"))), { code: 'INVALID_XML' });
  assert.throws(() => parseDomainXml(dom('', hd("domain='0' bus='zz' slot='1' function='0'"))), { code: 'INVALID_XML' });
});

test('an unassigned hostdev is not passthrough; an mdev vfio-pci device is; capabilities hostdevs are not', () => {
  const c = parseDomainXml(dom('', "<hostdev mode='subsystem' type='pci'><source><address domain='0' bus='3' slot='0' function='0'/></source><address type='unassigned'/></hostdev>" +
    "<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source><address uuid='53764D0E-85A0-42B4-AF5C-2046B460B1DC'/></source></hostdev>" +
    "<hostdev mode='capabilities' type='storage'><source><block>/dev/sdf1</block></source></hostdev>"));
  assert.deepEqual(c.pciPassthrough, ['mdev:53764d0e-85a0-42b4-af5c-2046b460b1dc']);
});

test('a non-numeric or empty <node> is INVALID_XML, not NaN or node 0', () => {
  const cells = "<cpu><numa><cell id='0' cpus='0-1' memory='1024' unit='MiB'/></numa></cpu>";
  for (const n of ['<node>one</node>', '<node></node>', '<node/>', '<node>-1</node>', '<node>1.5</node>', '<node>7</node>']) {
    assert.throws(() => parseDomainXml(dom(cells, `<memory model='dimm'><target><size unit='MiB'>128</size>${n}</target></memory>`)), { code: 'INVALID_XML' }, n);
  }
  const ok = parseDomainXml(dom(cells, "<memory model='dimm'><target><size unit='MiB'>128</size><node> 0 </node></target></memory>"));
  assert.equal(ok.memoryDevices[0]!.node, 0);
});

test('node sets: ranges, exclusions, and errors', () => {
  const c = parseDomainXml(dom("<numatune><memory mode='interleave' nodeset='0-3,^2,7'/></numatune>"));
  assert.deepEqual([c.cellBackings[0]!.hostNodes, c.cellBackings[0]!.policy], [[0, 1, 3, 7], 'interleave']);
  for (const bad of ['', '3-1', 'a', '0,,1', '^0', '1-', '0-99999']) {
    assert.throws(() => parseDomainXml(dom(`<numatune><memory mode='strict' nodeset='${bad}'/></numatune>`)), { code: 'INVALID_XML' }, bad);
  }
});
