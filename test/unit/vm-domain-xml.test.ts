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
    { model: 'dimm', alias: 'dimm0', node: 1, sizeBytes: 512 * MiB, sourcePath: null, access: null },
    { model: 'nvdimm', alias: 'nvdimm0', node: 1, sizeBytes: 2 ** 30, sourcePath: '/dev/dax0.0', access: 'shared' },
  ]);
});

test('libvirt scaled units: KB is 1000, k and KiB are 1024, default KiB', () => {
  assert.equal(scaledBytes('1', 'KB', 'x'), 1000);
  assert.equal(scaledBytes('1', 'k', 'x'), 1024);
  assert.equal(scaledBytes('3', undefined, 'x'), 3072);
  assert.equal(scaledBytes('2', 'GiB', 'x'), 2 ** 31);
  assert.throws(() => scaledBytes('-1', 'KiB', 'x'), { code: 'INVALID_XML' });
});
