/**
 * A real live migration between two libvirt daemons on this machine, with a vmtier engine on each
 * side. The daemons are private unprivileged ("session") libvirtds (test/helpers/libvirtd.ts) with
 * different host_uuid values in their libvirtd.conf (libvirt refuses a migration between daemons
 * reporting the same host UUID); `virsh migrate --live` drives it, QEMU's migration stream runs over
 * tcp://127.0.0.1. The system libvirtd is not involved.
 *
 * Proven here: the source pauses its scans while the migration runs (no round completes between
 * libvirt's first MIGRATION_ITERATION event and the domain leaving); the hot-unit map the source
 * wrote into the domain's metadata arrives with the domain; the destination's first round asks the
 * mover to place exactly those units' pages in DRAM, and they are on node 0 afterwards. A migration
 * cancelled midway (`virsh domjobabort`) resumes the scans on the source.
 *
 * Stand-ins, named: the access counts come from the replay tracker (neither kernel tracker can run
 * on QEMU here), and this machine has ONE NUMA node, so "placed in DRAM" is move_pages to node 0,
 * where the pages already are; that the hot units leave a slow node on the destination needs a
 * two-node host (the lab), not proven here.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { Engine } from '../../src/daemon/engine.js';
import { HotUnits } from '../../src/daemon/hot-units.js';
import { PageMap } from '../../src/daemon/page-map.js';
import type { VmEngineStatus } from '../../src/daemon/status.js';
import { readHostTopology } from '../../src/host/topology.js';
import { queryPageNodes } from '../../src/sys/syscalls.js';
import { normalizePolicy } from '../../src/policy/schema.js';
import type { Trace } from '../../src/scan/trace.js';
import type { LibvirtInventory } from '../../src/vm/libvirt-inventory.js';
import { writePolicy } from '../../src/vm/policy-source.js';
import { HOTMAP_NS, parseHotMapElement } from '../../src/vm/vm-metadata.js';
import { startDomain, virsh, type TestDomain } from '../helpers/domains.js';
import { startMigrationSide, writeGuestMemory, type MigrationSide as Side } from '../helpers/migration.js';
import { until } from '../helpers/api-client.js';

const run = promisify(execFile);
const PREFIX = 'vmtier-test-opmig-';
const PAGE = 4096;
const dir = mkdtempSync(join(tmpdir(), 'vmtier-livemig-'));
const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });

let src: Side;
let dst: Side;
const domains: Array<{ d: TestDomain; uris: string[] }> = [];

const side = (name: string): Promise<Side> => startMigrationSide(name, dir, logger);

before(async () => {
  src = await side('source');
  dst = await side('destination');
});

after(async () => {
  for (const s of [src, dst]) await s?.engine?.stop();
  for (const { d, uris } of domains) for (const uri of uris) await virsh(['destroy', d.name], uri).catch(() => undefined);
  for (const s of [src, dst]) {
    await s?.inventory.close();
    s?.store.close();
    await s?.daemon.cleanup();
  }
  rmSync(dir, { recursive: true, force: true });
});

function trace(pages: number, hot: readonly number[]): Trace {
  return { epochs: 1, pages, accessed: [Uint32Array.from([...hot].sort((a, b) => a - b))], known: new Uint8Array(pages).fill(1), vms: [] };
}

function startEngine(s: Side, domainName: string, pages: number, hot: readonly number[]): Engine {
  const e = new Engine({
    inventory: s.inventory,
    store: s.store,
    logger,
    readHost: () => readHostTopology(),
    manage: (x) => x.name === domainName,
    tracker: 'replay',
    trackerOptions: { replay: { trace: trace(pages, hot), loop: true, paced: true } },
    // One node here: "slow" is node 0 too (see the header).
    targetNodes: { slow: 0 },
    hotMapEveryRounds: 1,
    resyncMs: 300,
    idleMs: 50,
    backoff: { baseMs: 200, maxMs: 1000 },
  });
  s.engine = e;
  return e;
}

/** Writes random bytes into guest memory (guest node 1, which SeaBIOS never touches) so pre-copy has data to send. */
async function dirty(inv: LibvirtInventory, uuid: string, bytes: number): Promise<void> {
  const map = await inv.numaMap(uuid);
  writeGuestMemory(map.domain.pid, map.nodes.find((n) => n.node === 1)!.hva[0]!, bytes);
}

/** Samples a VM's status every 10 ms (what the source did during the migration). */
function sampler(e: Engine, uuid: string): { samples: VmEngineStatus[]; stop: () => void } {
  const samples: VmEngineStatus[] = [];
  const t = setInterval(() => {
    const s = e.vm(uuid);
    if (s) samples.push(s);
  }, 10);
  return { samples, stop: () => clearInterval(t) };
}

function migrate(name: string, from: Side, to: Side, bandwidthMiB: number) {
  return run('virsh', ['-q', '-c', from.daemon.uri, 'migrate', '--live', name, to.daemon.uri, '--migrateuri', 'tcp://127.0.0.1', '--bandwidth', String(bandwidthMiB)]);
}

test('live migration: the source pauses scans, the hot map travels in the metadata, the destination places those units first; a cancelled migration resumes scans', async () => {
  const d = await startDomain('two-cells-memfd.xml', PREFIX, { uri: src.daemon.uri });
  domains.push({ d, uris: [src.daemon.uri, dst.daemon.uri] });
  await new Promise((r) => setTimeout(r, 1500));

  // The hot set: every other page that SeaBIOS made resident (really present in QEMU).
  const mapA = await src.inventory.numaMap(d.uuid);
  const pmA = PageMap.fromNumaMap(mapA);
  const resident: number[] = [];
  for (const s of pmA.segments) {
    const st = queryPageNodes(mapA.domain.pid, Array.from({ length: s.pages }, (_, i) => s.start + i * PAGE));
    st.forEach((v, i) => v >= 0 && resident.push(s.firstPage + i));
  }
  const hot = resident.filter((_, i) => i % 2 === 0).slice(0, 400);
  assert.ok(hot.length >= 32, `resident guest pages to call hot (${hot.length})`);
  const counts = new Uint8Array(pmA.totalPages);
  for (const p of hot) counts[p] = 2;
  const expected = Buffer.from(new HotUnits(pmA).hotBits(counts, 1)).toString('base64');
  assert.ok(/[^A]/.test(expected), 'some unit is hot');

  // The policy travels too: PUT on the source (metadata + the source's history).
  const policy = normalizePolicy({
    mode: 'tier',
    scan: { intervalMs: 50, scansPerRound: 2, autoTune: false },
    thresholds: { coldConfirmRounds: 1000 },
    migration: { maxMBps: 2000 },
  });
  await writePolicy(src.inventory, src.store, d.uuid, policy, Date.now());
  await dirty(src.inventory, d.uuid, 48 << 20);

  const eA = startEngine(src, d.name, pmA.totalPages, hot);
  await eA.start();
  const published = await until(20_000, 'the source wrote its hot map', () => {
    const s = eA.vm(d.uuid);
    return s?.hotMap?.map === expected && s.rounds >= 2 ? s : null;
  });
  assert.equal(published.hotMap!.error, null);
  assert.equal(published.policySource, 'metadata');
  // The destination learns nothing by itself (empty trace): whatever it places first came from the map.
  const eB = startEngine(dst, d.name, pmA.totalPages, []);
  await eB.start();

  // Migrate A → B, about 3 s of pre-copy at 16 MiB/s.
  const watchA = sampler(eA, d.uuid);
  const t0 = Date.now();
  await migrate(d.name, src, dst, 16);
  const migrateMs = Date.now() - t0;
  watchA.stop();
  const paused = watchA.samples.filter((s) => s.migration.state === 'paused');
  assert.ok(paused.length > 0, 'the source saw the migration start');
  const first = paused[0]!;
  assert.equal(first.migration.pauses, 1);
  // The pause comes from the migration job (seen at a round boundary) or from libvirt's first
  // MIGRATION_ITERATION event, whichever is first; the pass events keep arriving while paused.
  assert.ok(first.migration.iteration === null || first.migration.iteration === 1, `paused no later than the first pass (${first.migration.iteration})`);
  assert.ok(paused.some((s) => s.migration.iteration !== null), 'the pass events arrived while paused');
  for (const s of paused) assert.equal(s.rounds, first.rounds, `no source round completed during the migration (saw ${s.rounds} after ${first.rounds})`);
  assert.ok(paused.some((s) => s.state === 'migrating'));
  await until(5000, 'the source loop ended with the domain', () => eA.vm(d.uuid) === null);

  // The destination: the map arrived, the first round placed exactly its units.
  const seeded = await until(20_000, 'the destination seeded from the hot map', () => {
    const s = eB.vm(d.uuid);
    return s?.seed ? s : null;
  });
  const seed = seeded.seed!;
  assert.equal(seed.round, 1, 'placed in the first round, before anything was learned');
  assert.equal(seed.map, expected, 'the hot map that arrived is the one the source wrote');
  assert.equal(seeded.policySource, 'metadata');
  assert.equal(seeded.mode, 'tier', 'the policy arrived with the domain');
  assert.equal(dst.store.currentPolicy(d.uuid)?.policy.migration.maxMBps, 2000, "recorded in the destination's history");
  const mapB = await dst.inventory.numaMap(d.uuid);
  const pmB = PageMap.fromNumaMap(mapB);
  const want = new HotUnits(pmB).pagesOf(new Uint8Array(Buffer.from(expected, 'base64')));
  assert.equal(seed.pages, want.length, 'every page of the hot units, nothing else');
  assert.equal(seed.hotUnits, [...Buffer.from(expected, 'base64')].reduce((n, b) => n + [...b.toString(2)].filter((c) => c === '1').length, 0));
  assert.equal(seed.target, 0);
  const p = seed.promote!;
  assert.equal(p.requested, want.length, 'the mover was asked to place all of them');
  assert.ok(p.byClass.moved > 0);
  // Pages the source never wrote were sent as zero pages: on the destination they are not present yet.
  assert.equal(p.byClass.moved + p.byClass.notPresent, p.requested);
  const where = queryPageNodes(mapB.domain.pid, Array.from(want, (pg) => pmB.addrOf(pg)));
  assert.equal(where.filter((n) => n === 0).length, p.byClass.moved, 'the placed pages are on node 0');
  assert.ok(where.every((n) => n === 0 || n < 0), 'no hot-unit page elsewhere');
  // The hot units map to the same guest memory: the source's hot pages are inside them on B too.
  const metaOnB = parseHotMapElement((await dst.inventory.metadata(d.uuid, HOTMAP_NS))!);
  assert.equal(metaOnB.pages, pmB.totalPages);

  // Cancelled migration B → A: B pauses, then resumes when the job is gone and the domain stayed.
  await until(10_000, 'destination rounds after the seed', () => (eB.vm(d.uuid)?.rounds ?? 0) >= 2);
  const mig = migrate(d.name, dst, src, 4).then(() => 'completed', (e: Error) => e.message);
  await until(20_000, 'the destination paused for the outgoing migration', () => eB.vm(d.uuid)?.migration.state === 'paused');
  await virsh(['domjobabort', d.name], dst.daemon.uri);
  assert.match(await mig, /cancel|abort/i, 'the migration failed');
  const resumed = await until(10_000, 'scans resumed', () => {
    const s = eB.vm(d.uuid);
    return s && s.migration.resumes === 1 && s.migration.state === 'none' ? s : null;
  });
  const r0 = resumed.rounds;
  await until(10_000, 'rounds run again', () => (eB.vm(d.uuid)?.rounds ?? 0) >= r0 + 2);
  assert.equal(eB.vm(d.uuid)!.state, 'running');
  process.stdout.write(`# live migration A→B took ${migrateMs} ms; source paused ${paused.length * 10} ms of samples\n`);
});
