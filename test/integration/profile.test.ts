// Rendered profiles on the real QEMU 7.2 and libvirtd of this machine (TCG, -S: no guest OS runs).
// QEMU: the guest topology QEMU built (HMP `info numa`, QMP `query-memdev`, HMP `info mtree -f`)
// must be the profile's. libvirt: the rendered domain is defined and started, and `dumpxml` keeps
// every part of the topology.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, closeSync, openSync, ftruncateSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { XMLParser } from 'fast-xml-parser';
import {
  checkProfileSpec, loadProfile, renderLibvirtDomain, renderQemuArgs, resolveProfile, type GuestLayout, type ProfileSpec,
} from '../../src/qemu/index.js';
import { hmp, virsh } from '../helpers/domains.js';

const MiB = 2 ** 20;
const PREFIX = 'vmtier-test-e-';
const work = mkdtempSync(join(tmpdir(), 'vmtier-profile-it-'));
const started: ChildProcess[] = [];
const domains: string[] = [];

after(async () => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of domains) {
    await virsh(['destroy', d]).catch(() => undefined);
    await virsh(['undefine', d, '--nvram']).catch(() => virsh(['undefine', d]).catch(() => undefined));
  }
  rmSync(work, { recursive: true, force: true });
});

/** A minimal QMP client: one command at a time, events skipped. */
class Qmp {
  private buf = '';
  private waiters: Array<(msg: Record<string, unknown>) => void> = [];
  constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i).trim();
        this.buf = this.buf.slice(i + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('event' in msg) continue;
        this.waiters.shift()?.(msg);
      }
    });
  }
  static async open(path: string): Promise<Qmp> {
    for (let i = 0; i < 300; i++) {
      if (existsSync(path)) {
        const s = await new Promise<Socket | null>((res) => {
          const c = connect(path);
          c.once('connect', () => res(c));
          c.once('error', () => res(null));
        });
        if (s) {
          const q = new Qmp(s);
          await q.next(); // greeting
          await q.cmd('qmp_capabilities');
          return q;
        }
      }
      await sleep(100);
    }
    throw new Error(`QMP socket ${path} never answered`);
  }
  private next(): Promise<Record<string, unknown>> {
    return new Promise((res) => this.waiters.push(res));
  }
  async cmd(execute: string, args?: Record<string, unknown>): Promise<unknown> {
    const p = this.next();
    this.sock.write(`${JSON.stringify(args ? { execute, arguments: args } : { execute })}\n`);
    const r = await p;
    if ('error' in r) throw new Error(`${execute}: ${JSON.stringify(r.error)}`);
    return r.return;
  }
  hmp(line: string): Promise<string> {
    return this.cmd('human-monitor-command', { 'command-line': line }) as Promise<string>;
  }
  close(): void {
    this.sock.destroy();
  }
}

async function launch(layout: GuestLayout, tag: string): Promise<{ qmp: Qmp; proc: ChildProcess; stderr: () => string }> {
  const sock = join(work, `${tag}.qmp`);
  const args = ['-accel', 'tcg', '-S', '-nodefaults', '-display', 'none', '-qmp', `unix:${sock},server=on,wait=off`, ...renderQemuArgs(layout)];
  const proc = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  started.push(proc);
  let err = '';
  proc.stderr?.on('data', (d) => { err += String(d); });
  const exited = new Promise<never>((_, rej) => proc.once('exit', (code) => rej(new Error(`qemu exited ${code}: ${err}`))));
  const qmp = await Promise.race([Qmp.open(sock), exited]);
  return { qmp, proc, stderr: () => err };
}

async function quit(q: { qmp: Qmp; proc: ChildProcess }): Promise<void> {
  const gone = new Promise((r) => q.proc.once('exit', r));
  await q.qmp.cmd('quit').catch(() => undefined);
  q.qmp.close();
  await gone;
}

interface MtreeRange { start: number; end: number; kind: string; name: string; offset: number }

/** The flat view of the system memory region (what CPUs see) in `info mtree -f`, RAM-like ranges only. */
function ramRanges(mtree: string): MtreeRange[] {
  // Flat views are numbered in no stable order; the one rooted at "memory" is the CPUs' view.
  const view = mtree.split(/^FlatView #\d+$/m).find((v) => /^ Root memory region: memory$/m.test(v)) ?? '';
  const out: MtreeRange[] = [];
  for (const m of view.matchAll(/^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, (ram|nv-ram)\): (\S+)(?: @([0-9a-f]+))?/gm)) {
    out.push({ start: parseInt(m[1], 16), end: parseInt(m[2], 16) + 1, kind: m[3], name: m[4], offset: m[5] ? parseInt(m[5], 16) : 0 });
  }
  return out;
}

/** What QEMU maps of an NVDIMM: its size less the label area, aligned down to the backend's alignment. */
function nvdimmMapped(d: GuestLayout['nvdimms'][number]): number {
  return Math.floor((d.sizeBytes - d.labelSizeBytes) / d.backend.alignBytes) * d.backend.alignBytes;
}

async function assertQemuMatches(layout: GuestLayout, tag: string): Promise<void> {
  const q = await launch(layout, tag);
  try {
    // info numa: node count, CPUs, boot RAM + plugged NVDIMM per node.
    const numa = await q.qmp.hmp('info numa');
    assert.match(numa, new RegExp(`^${layout.nodes.length} nodes`, 'm'));
    for (const n of layout.nodes) {
      const cpus = n.cpus ? Array.from({ length: n.cpus.end - n.cpus.start }, (_, i) => n.cpus!.start + i).join(' ') : '';
      assert.match(numa, new RegExp(`^node ${n.node} cpus:${cpus ? ` ${cpus}` : ''}\\s*$`, 'm'), `${tag} node ${n.node} cpus\n${numa}`);
      const plugged = layout.nvdimms.filter((d) => d.node === n.node).reduce((a, d) => a + nvdimmMapped(d), 0);
      assert.match(numa, new RegExp(`^node ${n.node} size: ${(n.sizeBytes + plugged) / MiB} MB$`, 'm'), `${tag} node ${n.node} size\n${numa}`);
      assert.match(numa, new RegExp(`^node ${n.node} plugged: ${plugged / MiB} MB$`, 'm'), `${tag} node ${n.node} plugged\n${numa}`);
    }
    // query-memdev: one backend per node and per NVDIMM with the profile's size, sharing, binding.
    const memdevs = (await q.qmp.cmd('query-memdev')) as Array<{ id: string; size: number; share: boolean; prealloc: boolean; policy: string; 'host-nodes': number[] }>;
    const byId = new Map(memdevs.map((m) => [m.id, m]));
    const expected = [
      ...layout.nodes.map((n) => ({ id: `ram-node${n.node}`, size: n.sizeBytes, b: n.backend })),
      ...layout.nvdimms.map((d) => ({ id: `mem${d.id}`, size: d.sizeBytes, b: d.backend })),
    ];
    assert.equal(memdevs.length, expected.length, JSON.stringify(memdevs));
    for (const e of expected) {
      const m = byId.get(e.id);
      assert.ok(m, `${tag}: memdev ${e.id} missing`);
      assert.equal(m.size, e.size, `${tag} ${e.id} size`);
      assert.equal(m.share, e.b.share, `${tag} ${e.id} share`);
      assert.equal(m.prealloc, e.b.prealloc, `${tag} ${e.id} prealloc`);
      assert.deepEqual(m['host-nodes'], e.b.hostNodes, `${tag} ${e.id} host-nodes`);
      assert.equal(m.policy, e.b.policy ?? 'default', `${tag} ${e.id} policy`);
    }
    // info mtree -f: every node's ramblock is mapped whole into guest physical memory.
    const ranges = ramRanges(await q.qmp.hmp('info mtree -f'));
    for (const e of expected) {
      const mine = ranges.filter((r) => r.name === e.id);
      assert.ok(mine.length > 0, `${tag}: ${e.id} not mapped`);
      const top = Math.max(...mine.map((r) => r.offset + (r.end - r.start)));
      const nv = layout.nvdimms.find((d) => `mem${d.id}` === e.id);
      assert.equal(top, nv ? nvdimmMapped(nv) : e.size, `${tag}: ${e.id} mapped size`);
      if (nv) assert.ok(mine.every((r) => r.kind === 'nv-ram'), `${tag}: ${e.id} is nv-ram`);
    }
  } finally {
    await quit(q);
  }
}

test('QEMU builds lab-tiered exactly as the profile says', async () => {
  const layout = resolveProfile(loadProfile('lab-tiered').spec, { vars: { labDir: work } });
  await assertQemuMatches(layout, 'lab-tiered');
});

test('QEMU builds lab-three-tier: two CPU-less slow nodes and three NVDIMMs', async () => {
  const layout = resolveProfile(loadProfile('lab-three-tier').spec, { vars: { labDir: work } });
  await assertQemuMatches(layout, 'lab-three-tier');
});

/** Every backend kind this host has, bound to host node 0 (the only one here), two DRAM nodes, an HMAT cache. */
function hostSpec(): ProfileSpec {
  return checkProfileSpec({
    name: 'it-mixed',
    guest: 'exposed',
    vcpus: 2,
    memory: '640M',
    dram: { size: '256M', nodes: 2, backend: { type: 'memfd', share: true, hostNodes: [0], prealloc: true }, hmat: { latencyNs: 90, bandwidth: '20G' } },
    tiers: [
      { name: 'cxl', kind: 'cxl', share: 1, backend: { type: 'file', path: `${work}`, hostNodes: [0], policy: 'preferred' }, distance: 22, hmat: { latencyNs: 180, bandwidth: '10G', cache: { size: '8M', line: 64 } } },
      { name: 'pmem', kind: 'pmem', share: 2, backend: { type: 'ram', hostNodes: [0], policy: 'interleave' }, distance: 28, hmat: { latencyNs: 300, bandwidth: '5G', initiator: 1 } },
    ],
  });
}

test('QEMU builds a mixed profile: memfd/file/ram backends bound to host node 0, two DRAM nodes, an HMAT cache, --memory/--dram-ratio', async () => {
  const layout = resolveProfile(hostSpec(), { memory: '768M', dramRatio: 0.5 });
  assert.deepEqual(layout.nodes.map((n) => n.sizeBytes / MiB), [192, 192, 128, 256]);
  await assertQemuMatches(layout, 'mixed');
});

test('QEMU refuses what the host cannot do, so the check is real: host node 1 does not exist here', async () => {
  const s = hostSpec();
  s.dram.backend.hostNodes = [1];
  const layout = resolveProfile(s);
  await assert.rejects(launch(layout, 'bad'), /host-nodes|node/i);
});

const xml = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', isArray: (name) => ['cell', 'sibling', 'latency', 'bandwidth', 'memnode', 'memory'].includes(name) });

test('libvirt: the rendered domain is defined, starts, and dumpxml keeps the topology', async () => {
  const spec = checkProfileSpec({
    name: 'it-libvirt',
    guest: 'exposed',
    vcpus: 2,
    memory: '384M',
    maxMemory: '1G',
    slots: 2,
    dram: { size: '256M', backend: { type: 'memfd', share: true, hostNodes: [0] }, hmat: { latencyNs: 80, bandwidth: '20G' } },
    tiers: [
      { name: 'pmem', kind: 'pmem', size: '32M', backend: { type: 'memfd', share: true }, distance: 28, hmat: { latencyNs: 300, bandwidth: '5G' },
        nvdimm: { size: '66M', backend: { type: 'file', path: '${dir}/pmem.img', align: '2M' } } },
      { name: 'cxl', kind: 'cxl', size: '96M', backend: { type: 'memfd', share: true, hostNodes: [0] }, distance: 20,
        hmat: { latencyNs: 170, bandwidth: '10G', cache: { size: '8M', level: 1, associativity: 'direct', policy: 'write-back', line: 64 } } },
    ],
  });
  const layout = resolveProfile(spec, { vars: { dir: work } });
  // libvirt stats the NVDIMM file before starting (QEMU alone would create it).
  const fd = openSync(join(work, 'pmem.img'), 'w');
  ftruncateSync(fd, 66 * MiB);
  closeSync(fd);
  const name = `${PREFIX}profile-${process.pid}`;
  const file = join(work, 'domain.xml');
  writeFileSync(file, renderLibvirtDomain(layout, { name }));
  domains.push(name);
  await virsh(['define', file]);
  await virsh(['start', '--paused', name]);

  const d = xml.parse(await virsh(['dumpxml', name])).domain;
  const cells = d.cpu.numa.cell as Array<Record<string, any>>;
  assert.deepEqual(cells.map((c) => [c.id, c.cpus ?? null, Number(c.memory) * 1024, c.memAccess ?? null]), layout.nodes.map((n) => [
    String(n.node), n.cpus ? `${n.cpus.start}-${n.cpus.end - 1}` : null, n.sizeBytes, 'shared',
  ]));
  for (const c of cells) {
    for (const s of c.distances.sibling) {
      const a = Number(c.id), b = Number(s.id);
      const want = a === b ? 10 : layout.distances.find((x) => x.src === Math.min(a, b) && x.dst === Math.max(a, b))!.value;
      assert.equal(Number(s.value), want, `distance ${a}->${b}`);
    }
  }
  const ic = d.cpu.numa.interconnects;
  assert.deepEqual(ic.latency.map((x: Record<string, string>) => [Number(x.target), Number(x.value)]), layout.nodes.map((n) => [n.node, n.hmat!.latencyNs]));
  assert.deepEqual(ic.bandwidth.map((x: Record<string, string>) => [Number(x.target), Number(x.value) * 1024]), layout.nodes.map((n) => [n.node, n.hmat!.bandwidthBytesPerSec]));
  assert.deepEqual([cells[2].cache?.level, cells[2].cache?.associativity, cells[2].cache?.policy, Number(cells[2].cache?.size?.value) * 1024], ['1', 'direct', 'writeback', 8 * MiB]);
  assert.deepEqual(d.numatune.memnode.map((m: Record<string, string>) => [m.cellid, m.mode, m.nodeset]), [['0', 'strict', '0'], ['2', 'strict', '0']]);
  assert.equal(d.memoryBacking.source.type, 'memfd');
  const nv = (d.devices.memory as Array<Record<string, any>>).filter((m) => m.model === 'nvdimm');
  assert.equal(nv.length, 1);
  assert.equal(nv[0].source.path, join(work, 'pmem.img'));
  assert.equal(Number(nv[0].target.node), 1);
  assert.equal(Number(nv[0].target.size['#text']) * 1024, 66 * MiB);

  // The running QEMU has the same guest nodes.
  const numa = await hmp(name, 'info numa');
  assert.match(numa, /^3 nodes/m);
  assert.match(numa, /^node 0 cpus: 0 1\s*$/m);
  assert.match(numa, /^node 1 cpus:\s*$/m);
  assert.match(numa, /^node 2 cpus:\s*$/m);
  assert.match(numa, /^node 2 size: 96 MB$/m);
  assert.match(numa, /^node 1 plugged: 64 MB$/m);

  await virsh(['destroy', name]);
  await virsh(['undefine', name]);
  domains.splice(domains.indexOf(name), 1);
  const left = await virsh(['list', '--all', '--name']);
  assert.ok(!left.split('\n').includes(name));
});
