/**
 * src/vm/domain-xml.ts against libvirt's own test data (test/fixtures/libvirt-corpus/, origin in
 * its README): for every domain XML there, what the parser says must agree with the QEMU command
 * line libvirt generated for it — guest RAM (-m), per-node sizes (-object memory-backend-*,size= or
 * -numa node,mem=), backend type, huge page backing, host nodes and policy, share, memory devices
 * and VFIO devices. The expected values are read from the .args text, never written here.
 * Then the same files, damaged at seeded random places: INVALID_XML or a sane result, never a
 * crash, NaN or hang.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VmtierError } from '../../src/errors.js';
import { parseDomainXml, type DomainConfig } from '../../src/vm/domain-xml.js';
import { parseNodeset } from '../../src/vm/domain-values.js';
import { rng } from '../helpers/rng.js';

const CORPUS = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fixtures', 'libvirt-corpus');
const MiB = 2 ** 20;
/** libvirt's test host (tests/testutilsqemu.c) has host NUMA nodes 0-3; newer libvirt clips node sets to them. */
const TEST_HOST_NODES = [0, 1, 2, 3];

type Props = Record<string, unknown>;

/** What a libvirt .args file hands QEMU, as far as memory and device assignment go. */
interface QemuArgs {
  /** -m size in bytes (-m N = N MiB, -m size=Nk). */
  initialBytes: number;
  machineMemoryBackend: string | null;
  objects: Map<string, Props>;
  numaNodes: Array<{ nodeid: number; memdev: string | null; memBytes: number | null }>;
  /** -device lines with a memdev, in command-line order. */
  memoryDevices: Props[];
  vfio: string[];
}

/** "a=1,b=2,b=3" → { a: '1', b: '2,3' } (libvirt's old repeated host-nodes= form). */
function keyValues(text: string): Props {
  const out: Record<string, string> = {};
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq);
    out[k] = out[k] === undefined ? part.slice(eq + 1) : `${out[k]},${part.slice(eq + 1)}`;
  }
  return out;
}

function parseArgs(text: string): QemuArgs {
  const words = text.split(' \\\n').map((l) => l.trim());
  const res: QemuArgs = { initialBytes: Number.NaN, machineMemoryBackend: null, objects: new Map(), numaNodes: [], memoryDevices: [], vfio: [] };
  for (const w of words) {
    const sp = w.indexOf(' ');
    if (sp < 0) continue;
    const opt = w.slice(0, sp);
    let val = w.slice(sp + 1);
    if (val.startsWith("'") && val.endsWith("'")) val = val.slice(1, -1);
    const props: Props = val.startsWith('{') ? JSON.parse(val) as Props : keyValues(val.includes(',') || val.includes('=') ? val.replace(/^([a-z-]+),/, 'qom-type=$1,') : val);
    if (opt === '-m') {
      const m = /^size=(\d+)k/.exec(val) ?? null;
      res.initialBytes = m ? Number(m[1]) * 1024 : Number(/^(\d+)/.exec(val)![1]) * MiB;
    } else if (opt === '-machine') {
      res.machineMemoryBackend = (keyValues(val)['memory-backend'] as string | undefined) ?? null;
    } else if (opt === '-object' && String(props['qom-type']).startsWith('memory-backend-')) {
      res.objects.set(String(props.id), props);
    } else if (opt === '-numa' && val.startsWith('node,')) {
      const kv = keyValues(val);
      res.numaNodes.push({ nodeid: Number(kv.nodeid), memdev: (kv.memdev as string) ?? null, memBytes: kv.mem === undefined ? null : Number(kv.mem) * MiB });
    } else if (opt === '-device' && val.startsWith('{')) {
      if (props.memdev !== undefined) res.memoryDevices.push(props);
      if (props.driver === 'vfio-pci') {
        res.vfio.push(props.host !== undefined ? String(props.host) : `mdev:${String(props.sysfsdev).split('/').pop()}`);
      }
    }
  }
  return res;
}

/** host-nodes as JSON array or old "1-2,5,7" text. */
function hostNodesOf(p: Props): number[] | null {
  const v = p['host-nodes'];
  if (v === undefined) return null;
  return Array.isArray(v) ? (v as number[]) : parseNodeset(String(v), 'host-nodes');
}

/** The huge page size a backend object uses, from its mem-path or memfd hugetlb size; null = none. */
function hugepageOf(p: Props): number | null {
  if (p.hugetlb === true || p.hugetlb === 'on') return Number(p.hugetlbsize ?? 2 * MiB);
  const path = typeof p['mem-path'] === 'string' ? p['mem-path'] : '';
  const m = /\/dev\/hugepages(\d+)([MG])\//.exec(path);
  return m ? Number(m[1]) * (m[2] === 'G' ? 1024 : 1) * MiB : null;
}

const bool = (v: unknown): boolean | null => (v === undefined ? null : v === true || v === 'on' || v === 'yes');

interface Pair {
  name: string;
  xml: string;
  argsFile: string;
  latest: boolean;
}

function corpus(): Pair[] {
  const files = readdirSync(CORPUS);
  const pairs: Pair[] = [];
  for (const x of files.filter((f) => f.endsWith('.xml'))) {
    const base = x.slice(0, -4);
    for (const a of files.filter((f) => f.endsWith('.args') && (f === `${base}.args` || f.startsWith(`${base}.`) && /^\.[a-z0-9_]+-latest\.args$/.test(f.slice(base.length))))) {
      pairs.push({ name: `${base} (${a})`, xml: readFileSync(join(CORPUS, x), 'utf8'), argsFile: readFileSync(join(CORPUS, a), 'utf8'), latest: a.endsWith('-latest.args') });
    }
  }
  return pairs;
}

const pairs = corpus();

test('the corpus holds at least 20 libvirt domains with their command lines (40+ files)', () => {
  assert.ok(pairs.length >= 20, `${pairs.length} pairs`);
  assert.ok(readdirSync(CORPUS).filter((f) => f.endsWith('.xml') || f.endsWith('.args')).length >= 40);
});

function checkPair(p: Pair, c: DomainConfig): void {
  const q = parseArgs(p.argsFile);
  const clip = (nodes: number[] | null) => (nodes === null ? null : p.latest ? nodes.filter((n) => TEST_HOST_NODES.includes(n)) : nodes);
  assert.equal(c.memoryBytes, q.initialBytes, 'guest RAM (-m)');
  assert.equal(c.cells.length, c.cellBackings.length);
  if (q.numaNodes.length > 0) {
    assert.equal(c.implicitNuma, false);
    assert.deepEqual(c.cells.map((x) => x.id), q.numaNodes.map((n) => n.nodeid).sort((a, b) => a - b), 'guest nodes');
  }
  // Every guest node: its backend object (or the old -numa mem=, or the machine's memory-backend).
  c.cells.forEach((cell, i) => {
    const b = c.cellBackings[i]!;
    const numaNode = q.numaNodes.find((n) => n.nodeid === cell.id);
    const objId = numaNode ? numaNode.memdev : q.machineMemoryBackend;
    if (numaNode?.memBytes != null) {
      assert.equal(cell.memoryBytes, numaNode.memBytes, `node ${cell.id} size (-numa mem=)`);
      return;
    }
    if (objId === null) {
      assert.equal(c.cells.length, 1, 'no backend object only for a one-node guest');
      return;
    }
    const o = q.objects.get(objId!);
    assert.ok(o, `backend ${objId} in the args`);
    assert.equal(cell.memoryBytes, Number(o.size), `node ${cell.id} size (${objId})`);
    assert.equal(b.backend, o['qom-type'], `node ${cell.id} backend type`);
    const huge = b.hugepageBytes === 'default' ? 2 * MiB : b.hugepageBytes; // libvirt's test host default: 2 MiB
    assert.equal(huge, hugepageOf(o), `node ${cell.id} huge pages`);
    if (numaNode) {
      assert.deepEqual(clip(b.hostNodes), hostNodesOf(o), `node ${cell.id} host-nodes`);
      assert.equal(b.policy, o.policy ?? null, `node ${cell.id} policy`);
    }
    if (o.share !== undefined) assert.equal(b.shared, bool(o.share), `node ${cell.id} share`);
  });
  // Memory devices, in order.
  assert.equal(c.memoryDevices.length, q.memoryDevices.length, 'memory devices');
  c.memoryDevices.forEach((d, i) => {
    const dev = q.memoryDevices[i]!;
    const o = q.objects.get(String(dev.memdev))!;
    assert.ok(o, `device backend ${String(dev.memdev)}`);
    assert.equal(d.sizeBytes, Number(o.size), `device ${i} size`);
    assert.equal(d.node, dev.node === undefined ? null : Number(dev.node), `device ${i} node`);
    if (d.hostNodes !== null) assert.deepEqual(clip(d.hostNodes), hostNodesOf(o), `device ${i} host-nodes`);
    if (d.pageBytes !== null) assert.equal(d.pageBytes, hugepageOf(o), `device ${i} page size`);
    if (d.sourcePath !== null) assert.equal(d.sourcePath, o['mem-path'], `device ${i} path`);
  });
  assert.deepEqual([...c.pciPassthrough].sort(), [...q.vfio].sort(), 'VFIO devices');
}

for (const p of pairs) {
  test(`libvirt corpus: ${p.name}`, () => {
    checkPair(p, parseDomainXml(p.xml));
  });
}


const GARBAGE = ['', '-1', 'x', '0x', '1e9', 'NaN', ' 7 ', '99999999999999999999', '4-2', '^0', ',', '0-', '&amp;', '0x1ff'];

test('damaged corpus files: INVALID_XML or a sane result, never a crash, NaN or hang', () => {
  const r = rng(17);
  let invalid = 0;
  let parsed = 0;
  const t0 = Date.now();
  for (let round = 0; round < 40; round++) {
    for (const p of pairs) {
      let xml = p.xml;
      const kind = Math.floor(r() * 4);
      if (kind === 0) xml = xml.slice(0, Math.floor(r() * xml.length));
      else if (kind === 1) {
        // Replace one attribute value or element text with garbage.
        const spots = [...xml.matchAll(/='[^']*'|>[^<>\s][^<>]*</g)];
        const s = spots[Math.floor(r() * spots.length)]!;
        const g = GARBAGE[Math.floor(r() * GARBAGE.length)]!;
        const rep = s[0].startsWith('=') ? `='${g}'` : `>${g}<`;
        xml = xml.slice(0, s.index) + rep + xml.slice(s.index! + s[0].length);
      } else if (kind === 2) {
        const at = Math.floor(r() * xml.length);
        xml = xml.slice(0, at) + xml.slice(at + 1 + Math.floor(r() * 20));
      } else {
        // Drop one whole element.
        const els = [...xml.matchAll(/<(\w+)[^>]*\/>|<(\w+)[^>]*>[^<]*<\/\2>/g)];
        const e = els[Math.floor(r() * els.length)]!;
        xml = xml.slice(0, e.index) + xml.slice(e.index! + e[0].length);
      }
      try {
        const c = parseDomainXml(xml);
        parsed++;
        for (const n of [c.memoryBytes, ...c.cells.map((x) => x.memoryBytes), ...c.memoryDevices.map((d) => d.sizeBytes)]) {
          assert.ok(Number.isSafeInteger(n) && n >= 0, `size ${n} from ${p.name}`);
        }
        for (const d of c.memoryDevices) assert.ok(d.node === null || Number.isSafeInteger(d.node), `device node ${d.node}`);
        for (const a of c.pciPassthrough) assert.match(a, /^([0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]|mdev:.+)$/);
      } catch (e) {
        assert.ok(e instanceof VmtierError && e.code === 'INVALID_XML', `${p.name}: ${(e as Error).stack}`);
        invalid++;
      }
    }
  }
  assert.ok(invalid > 0 && parsed > 0, `invalid ${invalid}, parsed ${parsed}`);
  assert.ok(Date.now() - t0 < 20_000, 'parsing damaged files took too long');
});
