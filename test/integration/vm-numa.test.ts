/**
 * Guest NUMA → HVA on real TCG domains of this machine's libvirtd + QEMU 7.2. Every answer
 * of vmtier's binding is checked against independent sources: `virsh qemu-monitor-command
 * --hmp gpa2hva` at GPAs fixed by the pc machine's memory layout, /proc/<pid>/maps and
 * /proc/<pid>/smaps read by the test itself.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLibvirtInventory, type LibvirtInventory } from '../../src/vm/libvirt-inventory.js';
import type { GuestNodeMap } from '../../src/vm/types.js';
import { destroyDomains, fixtureXml, hmp, startDomain, virsh, type TestDomain } from '../helpers/domains.js';

const PREFIX = 'vmtier-test-a-';
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const repoRoot = join(import.meta.dirname, '..', '..', '..');

let inv: LibvirtInventory;
const doms: Record<string, TestDomain> = {};

before(async () => {
  await destroyDomains(PREFIX);
  inv = createLibvirtInventory({ events: false });
  for (const f of ['two-cells-memfd.xml', 'file-backed.xml', 'pci-hole.xml', 'no-numa.xml']) doms[f] = await startDomain(f, PREFIX);
});

after(async () => {
  await destroyDomains(PREFIX);
  await inv?.close();
});

/** The independent answer: virsh → HMP gpa2hva. */
async function virshGpa2hva(name: string, gpa: number): Promise<number> {
  const out = await hmp(name, `gpa2hva 0x${gpa.toString(16)}`);
  const m = /is 0x([0-9a-f]+)/.exec(out);
  assert.ok(m, `gpa2hva answered: ${out}`);
  return Number.parseInt(m[1]!, 16);
}

/** The one /proc/<pid>/maps line containing [start, end), parsed by the test. */
function mapsLine(pid: number, start: number, end: number): { start: number; end: number; path: string } {
  const hits = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter(Boolean).map((l) => {
    const [range, , , , , ...rest] = l.split(/\s+/);
    const [s, e] = range!.split('-').map((x) => Number.parseInt(x, 16));
    return { start: s!, end: e!, path: rest.join(' ') };
  }).filter((m) => m.start <= start && end <= m.end);
  assert.equal(hits.length, 1, `exactly one mapping holds 0x${start.toString(16)}-0x${end.toString(16)}`);
  return hits[0]!;
}

function rssPagesOf(pid: number, vmaStart: number): number {
  const lines = readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n');
  const at = lines.findIndex((l) => l.startsWith(`${vmaStart.toString(16)}-`));
  assert.ok(at >= 0);
  const rss = lines.slice(at + 1).find((l) => l.startsWith('Rss:'))!;
  return Number(/(\d+) kB/.exec(rss)![1]) / 4;
}

async function checkAgainstProc(d: TestDomain, map: GuestNodeMap, expectGpa: Array<{ node: number; gpa: number; offset: number }>) {
  assert.equal(map.domain.pid, d.pid);
  assert.equal(map.domain.uuid, d.uuid);
  for (const { node, gpa, offset } of expectGpa) {
    const n = map.nodes.find((x) => x.node === node)!;
    assert.equal(n.hva.length, 1, 'one ramblock = one HVA range');
    assert.equal(await virshGpa2hva(d.name, gpa), n.hva[0]!.start + offset, `node ${node} gpa 0x${gpa.toString(16)}`);
  }
  for (const n of map.nodes) for (const r of n.hva) mapsLine(d.pid, r.start, r.end);
}

describe('guest NUMA → HVA on real domains', () => {
  test('two cells (one CPU-less), memfd shared: HVAs match virsh gpa2hva and maps; CLI JSON shape is exact', async () => {
    const d = doms['two-cells-memfd.xml']!;
    const map = await inv.numaMap(d.name);
    assert.deepEqual(map.nodes.map((n) => [n.node, n.cpus, n.sizeBytes, n.backing.kind, n.backing.id, n.backing.migratable]), [
      [0, '0-1', 256 * MiB, 'memfd', 'ram-node0', true],
      [1, null, 128 * MiB, 'memfd', 'ram-node1', true],
    ]);
    // pc layout: node 0 at GPA 0, node 1 right after it.
    await checkAgainstProc(d, map, [
      { node: 0, gpa: 0, offset: 0 }, { node: 0, gpa: 0x100000, offset: 0x100000 },
      { node: 1, gpa: 256 * MiB, offset: 0 }, { node: 1, gpa: 384 * MiB - 4096, offset: 128 * MiB - 4096 },
    ]);
    for (const n of map.nodes) assert.match(mapsLine(d.pid, n.hva[0]!.start, n.hva[0]!.end).path, /^\/memfd:/);

    const cli = spawnSync(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'numa', d.uuid, '--json'], { encoding: 'utf8' });
    assert.equal(cli.status, 0, cli.stderr);
    const json = JSON.parse(cli.stdout);
    assert.deepEqual(Object.keys(json), ['domain', 'nodes']);
    assert.deepEqual(json.domain, { name: d.name, uuid: d.uuid, pid: d.pid });
    assert.deepEqual(Object.keys(json.nodes[0]), ['node', 'cpus', 'sizeBytes', 'backing', 'hva']);
    assert.deepEqual(json.nodes[1].backing, { kind: 'memfd', path: null, id: 'ram-node1', migratable: true });
    assert.deepEqual(json.nodes[1].hva, [{ start: `0x${map.nodes[1]!.hva[0]!.start.toString(16)}`, end: `0x${map.nodes[1]!.hva[0]!.end.toString(16)}` }]);
    assert.match(json.nodes[0].hva[0].end, /^0x[0-9a-f]+$/);
  });

  test('file backing (memory_backing_dir): kind file with the path QEMU mapped', async () => {
    const d = doms['file-backed.xml']!;
    const map = await inv.numaMap(d.uuid);
    await checkAgainstProc(d, map, [{ node: 0, gpa: 0, offset: 0 }, { node: 1, gpa: 128 * MiB, offset: 0 }]);
    for (const n of map.nodes) {
      assert.equal(n.backing.kind, 'file');
      const line = mapsLine(d.pid, n.hva[0]!.start, n.hva[0]!.end);
      assert.equal(line.path.replace(/ \(deleted\)$/, ''), n.backing.path);
      // libvirt names the directory <id>-<name cut to 20 characters>.
      assert.match(n.backing.path!, new RegExp(`^/var/lib/libvirt/qemu/ram/\\d+-${d.name.slice(0, 20)}/ram-node${n.node}$`));
    }
    assert.equal(map.nodes[1]!.sizeBytes, 64 * MiB);
  });

  test('4 GiB domain: node 0 spans the PCI hole and is still ONE HVA range; node 1 sits above 4 GiB', async () => {
    const d = doms['pci-hole.xml']!;
    const map = await inv.numaMap(d.uuid);
    assert.deepEqual(map.nodes.map((n) => [n.node, n.sizeBytes, n.backing.kind]), [[0, 3584 * MiB, 'anonymous'], [1, 512 * MiB, 'anonymous']]);
    // i440fx with >= 3.5 GiB: 3 GiB below the hole, the rest from 4 GiB on; node 1 follows node 0's tail.
    await checkAgainstProc(d, map, [
      { node: 0, gpa: 0, offset: 0 },
      { node: 0, gpa: 3 * GiB - 4096, offset: 3 * GiB - 4096 },
      { node: 0, gpa: 4 * GiB, offset: 3 * GiB },
      { node: 0, gpa: 4.5 * GiB - 4096, offset: 3584 * MiB - 4096 },
      { node: 1, gpa: 4.5 * GiB, offset: 0 },
      { node: 1, gpa: 5 * GiB - 4096, offset: 512 * MiB - 4096 },
    ]);
  });

  test('domain without <numa>: one implicit node on pc.ram with every vCPU', async () => {
    const d = doms['no-numa.xml']!;
    const map = await inv.numaMap(d.uuid);
    assert.deepEqual(map.nodes.map((n) => [n.node, n.cpus, n.sizeBytes, n.backing.id]), [[0, '0-1', 256 * MiB, 'pc.ram']]);
    await checkAgainstProc(d, map, [{ node: 0, gpa: 0, offset: 0 }, { node: 0, gpa: 255 * MiB, offset: 255 * MiB }]);
  });

  test('memory devices: a dimm and a file-backed NVDIMM on node 1 are listed with their own ranges and backing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmtier-nvdimm-'));
    const nv = join(dir, 'nvdimm.img');
    writeFileSync(nv, '');
    spawnSync('truncate', ['-s', '130M', nv]);
    const name = `${PREFIX}memdev-${Math.random().toString(36).slice(2, 7)}`;
    let d: TestDomain | undefined;
    try {
      d = await startDomain('memory-devices.xml', PREFIX, { xml: fixtureXml('memory-devices.xml', name).replace('@NVDIMM_PATH@', nv) });
      const map = await inv.numaMap(d.uuid);
      assert.equal(map.nodes[0]!.devices, undefined);
      const [dimm, nvdimm] = map.nodes[1]!.devices!;
      assert.deepEqual([dimm!.model, dimm!.sizeBytes, dimm!.backing.kind, dimm!.backing.id], ['dimm', 128 * MiB, 'memfd', 'memdimm0']);
      assert.deepEqual([nvdimm!.model, nvdimm!.backing.kind, nvdimm!.backing.path], ['nvdimm', 'file', nv]);
      // Independent: the GPA base libvirt assigned each device (live XML) resolved by virsh gpa2hva.
      const bases = [...(await virsh(['dumpxml', d.name])).matchAll(/<address type='dimm' slot='\d+' base='(0x[0-9a-f]+)'/g)].map((m) => Number(m[1]));
      assert.equal(bases.length, 2);
      assert.equal(await virshGpa2hva(d.name, bases[0]!), dimm!.hva[0]!.start);
      assert.equal(await virshGpa2hva(d.name, bases[1]!), nvdimm!.hva[0]!.start);
      for (const dev of [dimm!, nvdimm!]) mapsLine(d.pid, dev.hva[0]!.start, dev.hva[0]!.end);
      assert.equal(mapsLine(d.pid, nvdimm!.hva[0]!.start, nvdimm!.hva[0]!.end).path, nv);
    } finally {
      await d?.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('placement: every page of every node counted; resident pages agree with smaps Rss', async () => {
    const d = doms['two-cells-memfd.xml']!;
    const map = await inv.numaMap(d.uuid);
    const p = await inv.placement(d.uuid);
    for (const n of p.nodes) {
      const size = map.nodes.find((x) => x.node === n.node)!.sizeBytes;
      assert.equal(n.totalPages, size / 4096);
      const resident = Object.values(n.pagesByHostNode).reduce((a, b) => a + b, 0);
      const errs = Object.values(n.errors).reduce((a, b) => a + b, 0);
      assert.equal(resident + n.notPresentPages + errs, n.totalPages);
      assert.deepEqual(Object.keys(n.pagesByHostNode).filter((k) => k !== '0'), [], 'this machine has only host node 0');
      const rss = rssPagesOf(d.pid, map.nodes.find((x) => x.node === n.node)!.hva[0]!.start);
      // The guest (SeaBIOS) is idle but alive: allow a few pages touched between the two readings.
      assert.ok(Math.abs(resident - rss) <= 32, `node ${n.node}: move_pages resident ${resident} vs Rss ${rss}`);
    }
    assert.ok(Object.values(p.nodes[0]!.pagesByHostNode).reduce((a, b) => a + b, 0) > 0, 'the BIOS touched low memory of node 0');
  });

  test('pid file pointing at a non-QEMU process, or at another domain\'s QEMU, is PID_UNTRUSTED', async () => {
    const d = doms['two-cells-memfd.xml']!;
    const other = doms['no-numa.xml']!;
    const dir = mkdtempSync(join(tmpdir(), 'vmtier-run-'));
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    const fake = createLibvirtInventory({ events: false, runDir: dir });
    try {
      writeFileSync(join(dir, `${d.name}.pid`), `${sleeper.pid}\n`);
      await assert.rejects(fake.pid(d.uuid), (e: { code: string; message: string }) => e.code === 'PID_UNTRUSTED' && /not a QEMU/.test(e.message));
      await assert.rejects(fake.numaMap(d.uuid), { code: 'PID_UNTRUSTED' });
      writeFileSync(join(dir, `${d.name}.pid`), `${other.pid}\n`);
      await assert.rejects(fake.pid(d.uuid), (e: { code: string; message: string }) => e.code === 'PID_UNTRUSTED' && e.message.includes(other.uuid));
      // The real run dir is trusted.
      assert.equal(await inv.pid(d.uuid), d.pid);
    } finally {
      sleeper.kill();
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('unknown VM is VM_NOT_FOUND (library and CLI)', async () => {
    await assert.rejects(inv.numaMap(`${PREFIX}does-not-exist`), { code: 'VM_NOT_FOUND' });
    await assert.rejects(inv.resolve('00000000-0000-0000-0000-000000000000'), { code: 'VM_NOT_FOUND' });
    const cli = spawnSync(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'placement', `${PREFIX}does-not-exist`], { encoding: 'utf8' });
    assert.equal(cli.status, 1);
    assert.match(cli.stderr, /^VM_NOT_FOUND: /);
  });
});
