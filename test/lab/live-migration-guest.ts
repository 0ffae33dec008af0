// Runs INSIDE the lab guest (node dist/test/lab/live-migration-guest.js), driven by
// test/lab/live-migration.test.ts: two private libvirtds (test/helpers/libvirtd.ts), a small
// two-cell TCG domain started on A, a vmtier Engine on each side (replay tracker), a real
// `virsh migrate --live` A → B whose destination definition binds both guest cells to the slow host
// node 1, then where every present page of the domain sits on B right after B's first (seed) round.
// Prints one JSON line; the host test asserts on it, this file decides nothing.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { Engine } from '../../src/daemon/engine.js';
import { HotUnits } from '../../src/daemon/hot-units.js';
import { PageMap } from '../../src/daemon/page-map.js';
import { readHostTopology } from '../../src/host/topology.js';
import { queryPageNodes } from '../../src/sys/syscalls.js';
import { normalizePolicy } from '../../src/policy/schema.js';
import type { Trace } from '../../src/scan/trace.js';
import { writePolicy } from '../../src/vm/policy-source.js';
import { startDomain, virsh } from '../helpers/domains.js';
import { startMigrationSide, writeGuestMemory, type MigrationSide as Side } from '../helpers/migration.js';
import { describeError } from './guest-error.js';

const run = promisify(execFile);
const PAGE = 4096;
const MiB = 2 ** 20;
/** Guest memory written on the source (cell 1), so pre-copy sends real pages; its first half is hot. */
const DIRTY_BYTES = 16 * MiB;
const HOT_BYTES = 8 * MiB;
const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'vmtier-labmig-'));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const side = (name: string): Promise<Side> => startMigrationSide(name, dir, logger);

function domainXml(name: string): string {
  return `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <cpu><numa>
    <cell id='0' cpus='0' memory='32' unit='MiB'/>
    <cell id='1' memory='32' unit='MiB' memAccess='shared'/>
  </numa></cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

async function until<T>(ms: number, what: string, f: () => T | null | undefined | false): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await sleep(50);
  }
}

async function main(): Promise<Record<string, unknown>> {
  const t0 = Date.now();
  const src = await side('source');
  const dst = await side('destination');
  const cleanup: Array<() => Promise<void>> = [];
  try {
    const name = `vmtier-test-labmig-${Math.random().toString(36).slice(2, 7)}`;
    const d = await startDomain('', 'vmtier-test-labmig-', { uri: src.daemon.uri, xml: domainXml(name) });
    cleanup.push(async () => {
      for (const s of [src, dst]) await virsh(['destroy', d.name], s.daemon.uri).catch(() => undefined);
    });
    const mapA = await src.inventory.numaMap(d.uuid);
    const pmA = PageMap.fromNumaMap(mapA);
    // Random bytes into guest cell 1 (SeaBIOS never touches it): present, non-zero pages to send.
    const cell1 = mapA.nodes.find((n) => n.node === 1)!.hva[0]!;
    writeGuestMemory(mapA.domain.pid, cell1, DIRTY_BYTES);
    // Hot: every page of the first HOT_BYTES of that region (whole 2 MiB units when it is aligned).
    const first = pmA.segments.find((s) => s.start <= cell1.start && cell1.start < s.start + s.pages * PAGE)!;
    const firstPage = first.firstPage + (cell1.start - first.start) / PAGE;
    const hot = Array.from({ length: HOT_BYTES / PAGE }, (_, i) => firstPage + i);
    const counts = new Uint8Array(pmA.totalPages);
    for (const p of hot) counts[p] = 2;
    const expected = Buffer.from(new HotUnits(pmA).hotBits(counts, 1)).toString('base64');

    const policy = normalizePolicy({
      mode: 'tier',
      scan: { intervalMs: 100, scansPerRound: 2, autoTune: false },
      thresholds: { coldConfirmRounds: 1000 },
      migration: { maxMBps: 2000 },
    });
    await writePolicy(src.inventory, src.store, d.uuid, policy, Date.now());

    const trace = (hotPages: readonly number[]): Trace => ({
      epochs: 1, pages: pmA.totalPages, accessed: [Uint32Array.from(hotPages)], known: new Uint8Array(pmA.totalPages).fill(1), vms: [],
    });
    const engine = (s: Side, hotPages: readonly number[]): Engine => {
      const e = new Engine({
        inventory: s.inventory,
        store: s.store,
        logger,
        readHost: () => readHostTopology(),
        manage: (x) => x.name === d.name,
        tracker: 'replay',
        trackerOptions: { replay: { trace: trace(hotPages), loop: true, paced: true } },
        hotMapEveryRounds: 1,
        resyncMs: 300,
        idleMs: 50,
        backoff: { baseMs: 200, maxMs: 1000 },
      });
      s.engine = e;
      cleanup.push(() => e.stop());
      return e;
    };
    const eA = engine(src, hot);
    await eA.start();
    await until(120_000, 'the source wrote its hot map', () => {
      const s = eA.vm(d.uuid);
      return s?.hotMap?.map === expected && s.rounds >= 2 ? s : null;
    });
    // B learns nothing by itself (empty trace): what it places first came from the map.
    const eB = engine(dst, []);
    await eB.start();

    // The destination definition: both guest cells bound to host node 1 (QEMU backend host-nodes=1,policy=bind).
    const migratable = await virsh(['dumpxml', '--migratable', d.name], src.daemon.uri);
    const destXml = migratable.replace('</vcpu>', `</vcpu>\n  <numatune><memnode cellid='0' mode='strict' nodeset='1'/><memnode cellid='1' mode='strict' nodeset='1'/></numatune>`);
    if (destXml === migratable) throw new Error('no </vcpu> in the migratable XML');
    const destPath = join(dir, 'dest.xml');
    writeFileSync(destPath, destXml);
    const tm = Date.now();
    await run('virsh', ['-q', '-c', src.daemon.uri, 'migrate', '--live', d.name, dst.daemon.uri, '--migrateuri', 'tcp://127.0.0.1', '--xml', destPath], { timeout: 300_000 });
    const migrateMs = Date.now() - tm;

    const seeded = await until(120_000, 'the destination seeded from the hot map', () => {
      const s = eB.vm(d.uuid);
      return s?.seed ? s : null;
    });
    const seedMs = Date.now() - tm - migrateMs;
    // Placement on B, every page of the domain's guest RAM (move_pages query).
    const mapB = await dst.inventory.numaMap(d.uuid);
    const pmB = PageMap.fromNumaMap(mapB);
    const hotPagesB = new HotUnits(pmB).pagesOf(new Uint8Array(Buffer.from(seeded.seed!.map, 'base64')));
    const isHot = new Uint8Array(pmB.totalPages);
    for (const p of hotPagesB) isHot[p] = 1;
    const all = Array.from({ length: pmB.totalPages }, (_, p) => pmB.addrOf(p));
    const where = queryPageNodes(mapB.domain.pid, all);
    const tally = { hot: { pages: 0, node0: 0, node1: 0, absent: 0 }, cold: { pages: 0, node0: 0, node1: 0, absent: 0 } };
    where.forEach((n, p) => {
      const t = isHot[p] ? tally.hot : tally.cold;
      t.pages++;
      if (n === 0) t.node0++;
      else if (n === 1) t.node1++;
      else t.absent++;
    });
    const xmlB = await virsh(['dumpxml', d.name], dst.daemon.uri);
    return {
      ok: true,
      expectedMap: expected,
      seed: seeded.seed,
      roundsAtRead: eB.vm(d.uuid)?.rounds ?? null,
      hotPagesInMap: hotPagesB.length,
      tally,
      numatuneOnB: /<numatune>[\s\S]*?<\/numatune>/.exec(xmlB)?.[0] ?? null,
      migrateMs,
      seedMs,
      totalMs: Date.now() - t0,
    };
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    for (const s of [src, dst]) {
      await s.inventory.close().catch(() => undefined);
      s.store.close();
      await s.daemon.cleanup().catch(() => undefined);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  (r) => {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    process.exit(0);
  },
  (e: unknown) => {
    process.stdout.write(`${JSON.stringify({ ok: false, error: describeError(e) })}\n`);
    process.exit(1);
  },
);
