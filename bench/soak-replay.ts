/**
 * bench:soak-replay — the soak's write load on the store alone, in accelerated time (no libvirt,
 * no HTTP): 8 VMs of 2 guest nodes, a constant number of rounds per second (each: 2 sample rows,
 * their rollup cells, one heat frame), a policy PUT every 30 rounds, the VMs seen every 360
 * rounds, and retention applied every interval with the rules given, all at a simulated clock.
 * Prints per simulated minute the file size, pages in use, free pages and rows and bytes per
 * table (dbstat), then the maxima over the middle and last third. At a constant rate a bounded
 * store's file and pages stop growing once the B-trees' fill has settled; the replay tells how
 * many retention windows that takes (bench/soak.ts chooses its window from it).
 *
 *   node dist/bench/soak-replay.js [--minutes 30] [--rate 45] [--raw-min 2] [--step-s 120] [--max-age-min 4] [--interval-s 15]
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../src/store/store.js';
import { heatHistoryOf } from '../src/store/heat-history.js';
import { parsePolicy } from '../src/policy/schema.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
}

const minutes = arg('minutes', 30);
const rate = arg('rate', 45);
const R = { fullResolutionMs: arg('raw-min', 2) * 60_000, coarseStepMs: arg('step-s', 120) * 1000, maxAgeMs: arg('max-age-min', 4) * 60_000, intervalMs: arg('interval-s', 15) * 1000 };
const dir = mkdtempSync(join(tmpdir(), 'vmtier-soak-replay-'));
const path = join(dir, 'replay.db');
const store = Store.open(path);
const heat = heatHistoryOf(store);
const vms = Array.from({ length: 8 }, (_, i) => `00000000-0000-4000-8000-00000000000${i}`);
const t0 = Date.UTC(2026, 11, 7, 17, 33);
for (const v of vms) store.recordVmSeen(v, `vm-${v.slice(-1)}`, t0);
const frame = (t: number) => ({
  t, samples: 1, bucketBytes: 393_216, totalBytes: 402_653_184,
  nodes: [{ guestNode: 0, start: 0, end: 201_326_592 }, { guestNode: 1, start: 201_326_592, end: 402_653_184 }],
  hot: null, dram: new Uint8Array(1024).fill(3), resident: new Uint8Array(1024).fill(7),
});
const db = store.db;
const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'").all() as Array<{ name: string }>).map((x) => x.name);
interface Point { min: number; file: number; used: number; free: number; rows: Record<string, number>; bytes: Record<string, number> }
const points: Point[] = [];
const stat = (t: number): Point => {
  const bytes = Object.fromEntries((db.prepare('SELECT m.tbl_name AS t, SUM(d.pgsize) AS b FROM dbstat d JOIN sqlite_master m ON m.name = d.name GROUP BY m.tbl_name').all() as Array<{ t: string; b: number }>).map((r) => [r.t, r.b]));
  const rows = Object.fromEntries(tables.map((n) => [n, (db.prepare(`SELECT COUNT(*) AS n FROM "${n}"`).get() as { n: number }).n]));
  const ps = db.pragma('page_size', { simple: true }) as number;
  const free = (db.pragma('freelist_count', { simple: true }) as number) * ps;
  return { min: (t - t0) / 60_000, file: statSync(path).size, used: (db.pragma('page_count', { simple: true }) as number) * ps - free, free, rows, bytes };
};
const end = t0 + minutes * 60_000;
let nextRetention = t0 + R.intervalMs;
let nextPoint = t0;
const kib = (b: number) => (b / 1024).toFixed(0);
console.log(`soak replay: ${minutes} simulated min, ${rate} rounds/s, retention raw ${R.fullResolutionMs / 60_000} min, ${R.coarseStepMs / 1000} s rows, dropped after ${R.maxAgeMs / 60_000} min, every ${R.intervalMs / 1000} s`);
console.log(`min  file KiB  used KiB  free KiB  ${tables.map((n) => `${n} rows/KiB`).join('  ')}`);
for (let i = 0, t = t0; t < end; i++, t = t0 + (i * 1000) / rate) {
  const ts = Math.round(t);
  const vm = vms[i % vms.length]!;
  store.insertSamples([0, 1].map((g) => ({
    t: ts, vmUuid: vm, guestNode: g, hostNode: g, hostTier: g ? ('slow' as const) : ('top' as const),
    hotBytes: 1e6 + i, warmBytes: 2e6, coldBytes: 3e6 + (i % 77), scannedBytes: 4e6, scanMs: 1.5, movedBytes: 0, failures: 0,
  })));
  heat.record(vm, frame(ts));
  if (i % 30 === 0) store.putPolicy(vms[Math.floor(i / 30) % vms.length]!, parsePolicy({ mode: 'observe', scan: { intervalMs: 500 + (i % 5) * 100, scansPerRound: 2 } }), ts);
  if (i % 360 === 0) for (const v of vms) store.recordVmSeen(v, `vm-${v.slice(-1)}`, ts);
  if (t >= nextRetention) {
    store.applyRetention(ts, R);
    heat.applyRetention(ts, R);
    nextRetention += R.intervalMs;
  }
  if (t >= nextPoint) {
    const p = stat(ts);
    points.push(p);
    console.log(`${p.min.toFixed(0).padStart(3)} ${kib(p.file).padStart(9)} ${kib(p.used).padStart(9)} ${kib(p.free).padStart(9)}  ${tables.map((n) => `${p.rows[n]}/${kib(p.bytes[n] ?? 0)}`).join('  ')}`);
    nextPoint += 60_000;
  }
}
const third = minutes / 3;
const mx = (xs: Point[], pick: (p: Point) => number) => Math.max(...xs.map(pick));
const mid = points.filter((p) => p.min >= third && p.min < 2 * third);
const last = points.filter((p) => p.min >= 2 * third);
console.log(`max middle / last third: file ${kib(mx(mid, (p) => p.file))} / ${kib(mx(last, (p) => p.file))} KiB, pages in use ${kib(mx(mid, (p) => p.used))} / ${kib(mx(last, (p) => p.used))} KiB`);
const settled = points.findIndex((p) => p.file === points[points.length - 1]!.file);
console.log(`the file reached its final size at simulated minute ${points[settled]!.min.toFixed(0)} (${(points[settled]!.min / (R.maxAgeMs / 60_000)).toFixed(1)} retention windows)`);
store.close();
rmSync(dir, { recursive: true, force: true });
