// Tiered guest profiles: loading, validation errors that name the field, size arithmetic with
// overrides, host checks against fixture sysfs trees, and the QEMU / libvirt renderings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { isVmtierError } from '../../src/errors.js';
import { readHostTopology } from '../../src/host/topology.js';
import {
  checkLayoutForHost, checkProfileSpec, listProfiles, loadProfile, parseProfileText, parseSize, qemuSize,
  renderLabTopology, renderLibvirt, renderLibvirtDomain, renderProfile, renderQemuArgs, renderQemuCommandLine,
  resolveProfile, shellQuote, type ProfileSpec,
} from '../../src/qemu/index.js';
import { labTwoTierHost, threeTierHost } from '../helpers/host-fixture.js';
import { LAB_TOPOLOGIES, labMachine } from '../../lab/topology.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** A small valid exposed spec to break one field at a time. */
function base(): ProfileSpec {
  return {
    name: 'unit',
    guest: 'exposed',
    vcpus: 2,
    memory: '4G',
    dram: { ratio: 0.25, backend: { type: 'memfd', share: true }, hmat: { latencyNs: 80, bandwidth: '20G' } },
    tiers: [{ name: 'slow', backend: { type: 'memfd', share: true }, distance: 28, hmat: { latencyNs: 300, bandwidth: '5G' } }],
  };
}

function fieldError(fn: () => unknown, field: string, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isVmtierError(e, 'INVALID_PROFILE'), `expected INVALID_PROFILE, got ${String(e)}`);
    assert.equal(e.details?.field, field, e.message);
    assert.ok(e.message.startsWith(`${field}: `), e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

const spec = (mut: (s: ProfileSpec & Record<string, unknown>) => void): ProfileSpec => {
  const s = base() as ProfileSpec & Record<string, unknown>;
  mut(s);
  return s;
};
const resolve = (s: unknown, o = {}) => resolveProfile(checkProfileSpec(s), o);

test('sizes: parse QEMU spellings, print the shortest exact one', () => {
  assert.equal(parseSize('2G', 'x'), 2 * GiB);
  assert.equal(parseSize('1026M', 'x'), 1026 * MiB);
  assert.equal(parseSize('128K', 'x'), 131072);
  assert.equal(parseSize('1.5G', 'x'), 1.5 * GiB);
  assert.equal(parseSize('4GiB', 'x'), 4 * GiB);
  assert.equal(parseSize(4096, 'x'), 4096);
  assert.equal(qemuSize(2 * GiB), '2G');
  assert.equal(qemuSize(1026 * MiB), '1026M');
  assert.equal(qemuSize(1.5 * GiB), '1536M');
  assert.equal(qemuSize(4097), '4097');
  fieldError(() => parseSize('2 gigs', 'memory'), 'memory', /not a size/);
  fieldError(() => parseSize('0.3K', 'memory'), 'memory', /whole number/);
});

test('shell quoting keeps plain words bare and quotes the rest', () => {
  assert.equal(shellQuote('-numa'), '-numa');
  assert.equal(shellQuote('memory-backend-file,id=a,mem-path=/x/y.img'), 'memory-backend-file,id=a,mem-path=/x/y.img');
  assert.equal(shellQuote('a b'), "'a b'");
  assert.equal(shellQuote("it's"), "'it'\\''s'");
  assert.equal(shellQuote(''), "''");
  assert.equal(renderQemuCommandLine(['-m', '2G', 'x;y']), "qemu-system-x86_64 -m 2G 'x;y'");
});

test('every shipped profile loads, resolves and adds up', () => {
  const all = listProfiles();
  const names = all.map((p) => p.spec.name);
  for (const n of ['cxl-expander', 'lab-gigantic', 'lab-three-tier', 'lab-tiered', 'seed-dram-pmem', 'transparent-tiered']) assert.ok(names.includes(n), n);
  for (const { spec } of all) {
    const l = resolveProfile(spec, { vars: { labDir: '/tmp/lab' } });
    assert.equal(l.nodes.reduce((a, n) => a + n.sizeBytes, 0), l.memoryBytes, spec.name);
    if (spec.guest === 'exposed') {
      assert.ok(l.nodes.filter((n) => n.role === 'slow').every((n) => n.cpus === null), `${spec.name}: slow nodes are CPU-less`);
    } else {
      assert.equal(l.nodes.length, 1);
    }
  }
});

test('lab-tiered renders the topology verified in the lab (LAB.md) plus its devdax spare', () => {
  const t = renderLabTopology('lab-tiered', { labDir: '/run/lab' });
  assert.deepEqual(t.args, [
    '-machine', 'pc,nvdimm=on,hmat=on',
    '-m', '2080M,slots=2,maxmem=4G',
    '-smp', '2',
    '-object', 'memory-backend-ram,id=ram-node0,size=2G',
    '-numa', 'node,nodeid=0,cpus=0-1,memdev=ram-node0,initiator=0',
    '-object', 'memory-backend-ram,id=ram-node1,size=32M',
    '-numa', 'node,nodeid=1,memdev=ram-node1,initiator=0',
    '-numa', 'dist,src=0,dst=1,val=28',
    '-numa', 'hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-latency,latency=80',
    '-numa', 'hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G',
    '-numa', 'hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=300',
    '-numa', 'hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=5G',
    '-object', 'memory-backend-file,id=memnvdimm0,size=1026M,mem-path=/run/lab/nvdimm-pmem.img,share=on,align=2M',
    '-device', 'nvdimm,id=nvdimm0,memdev=memnvdimm0,label-size=128K,node=1',
    '-object', 'memory-backend-file,id=memnvdimm1,size=66M,mem-path=/run/lab/nvdimm-devdax.img,share=on,align=2M',
    '-device', 'nvdimm,id=nvdimm1,memdev=memnvdimm1,label-size=128K,node=1',
  ]);
  assert.deepEqual(t.files, [
    { path: '/run/lab/nvdimm-pmem.img', sizeBytes: 1026 * MiB },
    { path: '/run/lab/nvdimm-devdax.img', sizeBytes: 66 * MiB },
  ]);
  assert.deepEqual(t.layout.nvdimms.map((d) => [d.node, d.guestUse]), [[1, 'kmem'], [1, 'devdax']]);
});

test('lab-three-tier: two CPU-less slow nodes with distinct HMAT figures and a full distance matrix', () => {
  const { layout, args } = renderLabTopology('lab-three-tier', { labDir: '/l' });
  assert.deepEqual(layout.nodes.map((n) => [n.node, n.tier, n.cpus === null, n.hmat?.latencyNs]), [
    [0, 'dram', false, 80], [1, 'cxl', true, 170], [2, 'pmem', true, 300],
  ]);
  assert.deepEqual(layout.distances, [{ src: 0, dst: 1, value: 20 }, { src: 0, dst: 2, value: 28 }, { src: 1, dst: 2, value: 28 }]);
  assert.ok(args.includes('hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-bandwidth,bandwidth=5G'));
  assert.deepEqual(layout.nvdimms.map((d) => [d.id, d.node, d.guestUse]), [['nvdimm0', 1, 'kmem'], ['nvdimm1', 2, 'kmem'], ['nvdimm2', 1, 'devdax']]);
});

test('every lab topology renders from its profile; gigantic is tiered with a 4 GiB DRAM node (room for a 1 GiB page)', () => {
  for (const topology of LAB_TOPOLOGIES) {
    const m = labMachine(topology, '/l');
    assert.ok(m.nodes.length >= 2, topology);
    assert.ok(m.nvdimms.some((d) => d.role === 'devdax'), `${topology}: a devdax spare`);
  }
  const tiered = renderLabTopology('lab-tiered', { labDir: '/l' }).layout;
  const gigantic = renderLabTopology('lab-gigantic', { labDir: '/l' }).layout;
  assert.deepEqual(gigantic.nodes.map((n) => n.sizeBytes), [4 * GiB, 32 * MiB]);
  // Apart from node 0's size (and the machine's -m), the same host as lab-tiered.
  const rest = (l: typeof tiered) => ({ nodes: l.nodes.map((n) => [n.node, n.role, n.cpus, n.hmat]), distances: l.distances, nvdimms: l.nvdimms.map((d) => [d.node, d.sizeBytes, d.guestUse]) });
  assert.deepEqual(rest(gigantic), rest(tiered));
});

test('overrides: --memory and --dram-ratio resize DRAM and the share tiers', () => {
  const { spec } = loadProfile('cxl-expander');
  const l = resolveProfile(spec, { memory: '64G', dramRatio: 0.25 });
  assert.deepEqual(l.nodes.map((n) => n.sizeBytes), [16 * GiB, 48 * GiB]);
  const args = renderQemuArgs(l);
  assert.ok(args.includes('memory-backend-memfd,id=ram-node0,size=16G,share=on,host-nodes=0,policy=bind'));
  assert.ok(args.includes('memory-backend-memfd,id=ram-node1,size=48G,share=on,host-nodes=1,policy=bind'));
  assert.equal(args[args.indexOf('-m') + 1], '64G');
  // A ratio that does not land on the 2 MiB granule is rounded down; the slow tier takes the rest.
  const odd = resolveProfile(spec, { memory: '1G', dramRatio: 0.3 });
  assert.deepEqual(odd.nodes.map((n) => n.sizeBytes), [306 * MiB, 718 * MiB]);
  // Two share tiers split what DRAM leaves by weight.
  const two = resolve(spec0((s) => { s.tiers.push({ name: 'pmem', share: 3, backend: { type: 'memfd' }, hmat: { latencyNs: 400, bandwidth: '2G' } }); }), { memory: '8G' });
  assert.deepEqual(two.nodes.map((n) => n.sizeBytes), [2 * GiB, 1.5 * GiB, 4.5 * GiB]);
});
function spec0(mut: (s: ProfileSpec) => void): ProfileSpec {
  const s = base();
  mut(s);
  return s;
}

test('transparent: one guest node over every tier\'s host nodes', () => {
  const { spec } = loadProfile('transparent-tiered');
  const l = resolveProfile(spec, { memory: '16G' });
  assert.equal(l.nodes.length, 1);
  assert.deepEqual(l.nodes[0].cpus, { start: 0, end: 4 });
  assert.equal(l.dramBytes, 4 * GiB);
  const args = renderQemuArgs(l);
  assert.deepEqual(args.filter((_, i) => args[i - 1] === '-object'), ['memory-backend-memfd,id=ram-node0,size=16G,share=on,host-nodes=0-1,policy=bind']);
  assert.ok(!args.some((a) => a.startsWith('dist') || a.startsWith('hmat')));
  const lv = renderLibvirt(l);
  assert.match(lv.fragments.numatune ?? '', /<memnode cellid='0' mode='strict' nodeset='0-1'\/>/);
});

test('validation errors name the field', () => {
  fieldError(() => checkProfileSpec(spec((s) => { (s.tiers[0] as Record<string, unknown>).sise = '1G'; })), 'tiers[0].sise', /unknown field/);
  fieldError(() => checkProfileSpec(spec((s) => { s.vcpus = 0; })), 'vcpus');
  fieldError(() => checkProfileSpec(spec((s) => { s.guest = 'hidden' as 'exposed'; })), 'guest');
  fieldError(() => checkProfileSpec([]), 'profile');
  // Sizes not multiples of the alignment.
  fieldError(() => resolve(spec((s) => { s.memory = undefined; s.dram = { ...s.dram, ratio: undefined, size: '1G' }; s.tiers[0].size = '3M'; s.tiers[0].backend = { type: 'devdax', path: '/dev/dax0.0', align: '2M' }; })), 'tiers[0].size', /not a multiple of the alignment 2 MiB/);
  const aligned = resolve(spec((s) => { s.tiers[0].size = '1G'; s.tiers[0].backend = { type: 'devdax', path: '/dev/dax0.0', align: '1G' }; s.memory = '2G'; s.dram.ratio = undefined; s.dram.size = '1G'; }));
  assert.deepEqual(aligned.nodes.map((n) => n.sizeBytes), [GiB, GiB]);
  assert.ok(renderQemuArgs(aligned).includes('memory-backend-file,id=ram-node1,size=1G,mem-path=/dev/dax0.0,share=on,align=1G'));
  fieldError(() => resolve(spec((s) => { s.maxMemory = '8G'; s.slots = 1; s.tiers[0].nvdimm = { size: '1025M', backend: { type: 'file', path: '/x', align: '2M' } }; })), 'tiers[0].nvdimm.size', /alignment 2 MiB/);
  fieldError(() => resolve(spec((s) => { s.tiers[0].backend = { type: 'devdax', path: '/dev/dax0.0', align: '4M' }; })), 'tiers[0].backend.align', /2M or 1G/);
  fieldError(() => resolve(spec((s) => { s.dram.backend = { type: 'hugetlbfs', path: '/dev/hugepages', hugepageSize: '1G' }; s.memory = '3G'; s.dram.ratio = undefined; s.dram.size = '1536M'; })), 'dram.size', /not a multiple of the alignment 1 GiB/);
  // devdax paths.
  fieldError(() => resolve(spec((s) => { s.tiers[0].backend = { type: 'devdax' }; })), 'tiers[0].backend.path', /needs a path/);
  fieldError(() => resolve(spec((s) => { s.tiers[0].backend = { type: 'devdax', path: '/dev/pmem0' }; })), 'tiers[0].backend.path', /not a device-dax path/);
  fieldError(() => resolve(spec((s) => { s.tiers[0].backend = { type: 'devdax', path: '/dev/dax0.0', hostNodes: [1] }; })), 'tiers[0].backend.hostNodes');
  // Tiers that do not add up.
  fieldError(() => resolve(spec((s) => { s.dram.ratio = undefined; s.dram.size = '2G'; s.tiers[0].size = '1G'; })), 'tiers', /= 3 GiB, but memory is 4 GiB/);
  fieldError(() => resolve(spec((s) => { s.dram.ratio = 1; })), 'tiers', /leave nothing/);
  fieldError(() => resolve(spec((s) => { s.memory = undefined; })), 'memory', /required/);
  fieldError(() => resolve(base(), { dramRatio: 1.5 }), 'dramRatio');
  fieldError(() => resolve(base(), { memory: 'lots' }), 'memory (override)');
  // HMAT without figures or with a CPU-less initiator.
  fieldError(() => resolve(spec((s) => { s.tiers[0].hmat = undefined; })), 'tiers[0].hmat', /missing/);
  fieldError(() => resolve(spec((s) => { s.dram.hmat = undefined; })), 'dram.hmat', /missing/);
  fieldError(() => resolve(spec((s) => { s.tiers.push({ name: 'far', backend: { type: 'memfd' }, size: '64M', hmat: { latencyNs: 500, bandwidth: '1G', initiator: 1 } }); s.memory = '4160M'; s.dram.ratio = undefined; s.dram.size = '1G'; })), 'tiers[1].hmat.initiator', /guest node 1 has no CPUs/);
  fieldError(() => resolve(spec((s) => { s.tiers[0].hmat = { latencyNs: 300, bandwidth: '5G', initiator: 9 }; })), 'tiers[0].hmat.initiator', /does not exist/);
  // Transparent guests have no guest topology to describe.
  fieldError(() => resolve(spec((s) => { s.guest = 'transparent'; s.dram.hmat = undefined; s.dram.backend.hostNodes = [0]; s.tiers[0].backend.hostNodes = [1]; })), 'tiers[0].hmat');
  fieldError(() => resolve(spec((s) => { s.guest = 'transparent'; s.dram.hmat = undefined; s.tiers[0].hmat = undefined; s.tiers[0].distance = undefined; s.dram.backend.hostNodes = [0]; })), 'tiers[0].backend.hostNodes');
  // NVDIMMs need room.
  fieldError(() => resolve(spec((s) => { s.tiers[0].nvdimm = { size: '1G', backend: { type: 'file', path: '/x' } }; })), 'maxMemory', /required with NVDIMMs/);
  fieldError(() => resolve(spec((s) => { s.maxMemory = '4G'; s.slots = 1; s.tiers[0].nvdimm = { size: '1G', backend: { type: 'file', path: '/x' } }; })), 'maxMemory', /less than memory \+ NVDIMMs = 5 GiB/);
  fieldError(() => resolve(spec((s) => { s.maxMemory = '8G'; s.slots = 1; s.tiers[0].nvdimm = { size: '1G', backend: { type: 'ram' } }; })), 'tiers[0].nvdimm.backend.type');
  fieldError(() => resolve(spec((s) => { (s as Record<string, unknown>).nvdimms = [{ tier: 'nope', size: '2M', backend: { type: 'file', path: '/x' } }]; s.maxMemory = '8G'; s.slots = 2; })), 'nvdimms[0].tier');
  // Paths with variables.
  fieldError(() => resolve(spec((s) => { s.maxMemory = '8G'; s.slots = 1; s.tiers[0].nvdimm = { size: '1G', backend: { type: 'file', path: '${labDir}/a.img' } }; })), 'tiers[0].nvdimm.backend.path', /vars\.labDir/);
});
test('YAML: syntax errors carry the line; the name must match the file', () => {
  assert.throws(() => parseProfileText('name: x\nvcpus: [1,\n', 'bad.yaml'), (e: unknown) => isVmtierError(e, 'INVALID_PROFILE') && /bad\.yaml: not valid YAML at line \d+/.test(e.message));
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-profiles-'));
  const prev = process.env.VMTIER_PROFILES_DIR;
  try {
    process.env.VMTIER_PROFILES_DIR = dir;
    writeFileSync(join(dir, 'other.yaml'), 'name: unit\nguest: exposed\nvcpus: 1\nmemory: 1G\ndram: { size: 1G, backend: { type: ram } }\ntiers: []\n');
    fieldError(() => loadProfile('other'), 'name', /differs from the file name/);
    assert.throws(() => loadProfile('missing'), (e: unknown) => isVmtierError(e, 'NOT_FOUND'));
    assert.throws(() => loadProfile('../etc'), (e: unknown) => isVmtierError(e));
  } finally {
    if (prev === undefined) delete process.env.VMTIER_PROFILES_DIR;
    else process.env.VMTIER_PROFILES_DIR = prev;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('host check: host nodes, devdax mode, size and presence (fixture sysfs trees)', () => {
  const two = labTwoTierHost();
  const three = threeTierHost();
  const fs = mkdtempSync(join(tmpdir(), 'vmtier-devroot-'));
  try {
    mkdirSync(join(fs, 'dev'));
    // A character device standing in for /dev/dax1.0 (this machine has no dax devices).
    symlinkSync('/dev/null', join(fs, 'dev/dax1.0'));
    symlinkSync('/dev/null', join(fs, 'dev/dax0.0'));
    writeFileSync(join(fs, 'dev/dax2.0'), '');
    const hostTwo = readHostTopology({ sysRoot: two.sysRoot, procRoot: two.procRoot });
    const hostThree = readHostTopology({ sysRoot: three.sysRoot, procRoot: three.procRoot });

    const cxl = resolveProfile(loadProfile('cxl-expander').spec);
    checkLayoutForHost(cxl, { host: hostTwo, fsRoot: fs });
    const far = resolveProfile(loadProfile('cxl-expander').spec);
    far.nodes[1].backend.hostNodes = [5];
    fieldError(() => checkLayoutForHost(far, { host: hostTwo, fsRoot: fs }), 'tiers[0].backend.hostNodes', /host node 5 does not exist \(this host has nodes 0, 1\)/);

    const seed = loadProfile('seed-dram-pmem').spec;
    checkLayoutForHost(resolveProfile(seed), { host: hostThree, fsRoot: fs });
    fieldError(() => checkLayoutForHost(resolveProfile(seed, { memory: '32G' }), { host: hostThree, fsRoot: fs }), 'tiers[0].backend.path', /dax1\.0 has 16 GiB, the profile maps 24 GiB/);
    const onKmem = structuredClone(seed);
    onKmem.tiers[0].backend.path = '/dev/dax0.0';
    fieldError(() => checkLayoutForHost(resolveProfile(onKmem), { host: hostTwo, fsRoot: fs }), 'tiers[0].backend.path', /onlined as system RAM of host node 1/);
    const missing = structuredClone(seed);
    missing.tiers[0].backend.path = '/dev/dax7.0';
    fieldError(() => checkLayoutForHost(resolveProfile(missing), { host: hostThree, fsRoot: fs }), 'tiers[0].backend.path', /does not exist/);
    const notChar = structuredClone(seed);
    notChar.tiers[0].backend.path = '/dev/dax2.0';
    fieldError(() => checkLayoutForHost(resolveProfile(notChar), { host: hostThree, fsRoot: fs }), 'tiers[0].backend.path', /not a character device/);
    const noDir = structuredClone(seed);
    noDir.dram.backend.path = '/srv/ram/guest';
    fieldError(() => checkLayoutForHost(resolveProfile(noDir), { host: hostThree, fsRoot: fs }), 'dram.backend.path', /neither \/srv\/ram\/guest nor its folder exists/);
  } finally {
    two.cleanup();
    three.cleanup();
    rmSync(fs, { recursive: true, force: true });
  }
});

const xml = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', isArray: (name) => ['cell', 'sibling', 'latency', 'bandwidth', 'memnode', 'memory', 'page'].includes(name) });

test('libvirt: CPU-less cells, distances, interconnects, numatune and nvdimm devices', () => {
  const l = resolveProfile(loadProfile('lab-tiered').spec, { vars: { labDir: '/var/lib/lab' } });
  const doc = xml.parse(renderLibvirtDomain(l, { name: 'vmtier-test-e-unit' }));
  const d = doc.domain;
  assert.equal(d.name, 'vmtier-test-e-unit');
  assert.deepEqual([Number(d.maxMemory['#text']) * 1024, d.maxMemory.slots], [4 * GiB, '2']);
  const cells = d.cpu.numa.cell;
  assert.equal(cells.length, 2);
  assert.equal(cells[0].cpus, '0-1');
  assert.equal(cells[1].cpus, undefined, 'node 1 is CPU-less');
  assert.equal(Number(cells[0].memory) * 1024, 2 * GiB);
  assert.equal(Number(cells[1].memory) * 1024, 32 * MiB);
  assert.deepEqual(cells[1].distances.sibling.map((s: { id: string; value: string }) => [s.id, s.value]), [['0', '28'], ['1', '10']]);
  const ic = d.cpu.numa.interconnects;
  assert.deepEqual(ic.latency.map((x: Record<string, string>) => [x.initiator, x.target, x.value]), [['0', '0', '80'], ['0', '1', '300']]);
  assert.deepEqual(ic.bandwidth.map((x: Record<string, string>) => [x.target, Number(x.value) * 1024]), [['0', 20 * GiB], ['1', 5 * GiB]]);
  const nv = d.devices.memory;
  assert.equal(nv.length, 2);
  assert.equal(nv[0].model, 'nvdimm');
  assert.equal(nv[0].source.path, '/var/lib/lab/nvdimm-pmem.img');
  assert.equal(nv[0].target.node, 1);
  assert.equal(Number(nv[0].target.size['#text']) * 1024, 1026 * MiB);
  // <memory> counts the NVDIMMs; the cells only boot RAM.
  assert.equal(Number(d.memory[0]['#text']) * 1024, (2080 + 1026 + 66) * MiB);

  const cxl = renderLibvirt(resolveProfile(loadProfile('cxl-expander').spec));
  const frag = xml.parse(`<r>${cxl.fragments.numatune}${cxl.fragments.memoryBacking}</r>`).r;
  assert.deepEqual(frag.numatune.memnode.map((m: Record<string, string>) => [m.cellid, m.mode, m.nodeset]), [['0', 'strict', '0'], ['1', 'strict', '1']]);
  assert.equal(frag.memoryBacking.source.type, 'memfd');
  assert.deepEqual(cxl.warnings, []);
});

test('libvirt: what it cannot express is a warning, not silence', () => {
  const r = renderLibvirt(resolveProfile(loadProfile('seed-dram-pmem').spec));
  assert.ok(r.warnings.some((w) => /^tiers\[0\]\.backend\.path: libvirt cannot back a NUMA cell with \/dev\/dax1\.0/.test(w)), r.warnings.join('\n'));
  assert.ok(r.warnings.some((w) => /^dram\.backend\.path: .*memory_backing_dir/.test(w)), r.warnings.join('\n'));
});

test('hugepages and HMAT caches render for QEMU and libvirt', () => {
  const s = base();
  s.dram.backend = { type: 'memfd', hugepageSize: '2M', share: true };
  s.tiers[0].hmat = { latencyNs: 300, bandwidth: '5G', cache: { size: '16M', level: 1, associativity: 'direct', policy: 'write-back', line: 64 } };
  const r = renderProfile(s);
  assert.ok(r.qemuArgs.includes('memory-backend-memfd,id=ram-node0,size=1G,share=on,hugetlb=on,hugetlbsize=2M'));
  assert.ok(r.qemuArgs.includes('hmat-cache,node-id=1,size=16M,level=1,associativity=direct,policy=write-back,line=64'));
  const d = xml.parse(r.libvirtXml).domain;
  assert.deepEqual(d.memoryBacking.hugepages.page.map((p: Record<string, string>) => [p.size, p.nodeset]), [['2048', '0']]);
  assert.equal(d.cpu.numa.cell[1].cache.level, '1');
  assert.equal(d.cpu.numa.cell[1].cache.policy, 'writeback');
  assert.equal(d.cpu.numa.cell[0].memAccess, 'shared');
});
