/**
 * bench:scale — the daemon at host scale, on this machine: `vmtier serve` (observe mode, the
 * replay tracker as the stand-in for the kernel trackers this machine cannot run) managing real
 * TCG domains whose RAM is mapped but mostly untouched (no guest OS: the guest never boots, so
 * almost nothing is resident), and its resident memory and CPU per round measured from /proc:
 *   - against guest memory: one domain of 1, 4, 16, 64 GiB, memfd-backed (4 KiB pages) and
 *     anonymous (QEMU advises THP; `transparent_hugepage=madvise` here);
 *   - against the number of VMs: 1, 8, 32 domains of 1 GiB (memfd).
 * Prints each point and the slopes (MiB of RSS per GiB of guest RAM, per VM; CPU ms per round per
 * GiB and per VM), and the policy's share of the RSS growth: the bytes the policy's own state
 * takes for the same page count, measured by running src/policy's decide() in this process.
 *
 * Then an RSS breakdown: which of the daemon's structures hold how much per 4 KiB page — the
 * round's counts and tiers buffers (the tracker's output, the policy's input), the placement
 * cache (as `vmtier serve` itself logged it each round), the page map and hot-unit map, the
 * query's and mover's batch buffers, the policy's retained state and decide()'s transients —
 * measured by array-buffer and heap accounting in this process for the same page counts.
 *
 *   npm run bench:scale [-- --quick]      (--quick: 1/4 GiB and 1/8 VMs only)
 *   npm run bench:scale -- --quick --only-4k   (the memfd points only: ≈ 3 min, for before/after)
 *   npm run bench:scale -- --sizes 1,4,16 [--only-4k] [--no-vms]   (these guest sizes, GiB)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { HotUnits } from '../src/daemon/hot-units.js';
import { PageMap } from '../src/daemon/page-map.js';
import { RoundState } from '../src/daemon/round/round.js';
import { MoveScratch, DEFAULT_BATCH } from '../src/migrate/move.js';
import { QueryScratch } from '../src/migrate/query.js';
import { queryPageNodes, syscallScratchBytes } from '../src/sys/syscalls.js';
import { TIER_DRAM, TieringPolicy, normalizePolicy } from '../src/policy/index.js';
import type { GuestNodeMap } from '../src/vm/types.js';
import { destroyDomains, fixtureXml, startDomain, type TestDomain } from '../test/helpers/domains.js';

const PREFIX = 'vmtier-test-scale-';
const GiB = 2 ** 30;
const MiB = 2 ** 20;
const PAGE = 4096;
const BIN = resolve(fileURLToPath(import.meta.url), '..', '..', '..', 'bin', 'vmtier.js');
const quick = process.argv.includes('--quick');
const only4k = process.argv.includes('--only-4k');
const noVms = process.argv.includes('--no-vms');
const sizesArg = process.argv.indexOf('--sizes');
const sizesOpt = sizesArg >= 0 ? (process.argv[sizesArg + 1] ?? '').split(',').map(Number) : null;
if (sizesOpt && (sizesOpt.length < 2 || sizesOpt.some((g) => !Number.isInteger(g) || g < 1))) {
  process.stderr.write('--sizes takes at least two whole GiB sizes, e.g. --sizes 1,4,16\n');
  process.exit(2);
}
const SCAN = { intervalMs: 250, scansPerRound: 2, autoTune: false };
/** Rounds measured after the warm-up rounds (the first round queries every page's placement). */
const WARMUP_ROUNDS = 2;
const MEASURED_ROUNDS = 4;

const log = (s: string) => process.stderr.write(`${s}\n`);

function domainXml(name: string, memMiB: number, backing: '4k' | 'thp'): string {
  let xml = fixtureXml('two-cells-memfd.xml', name)
    .replace(/<memory unit='MiB'>\d+<\/memory>/, `<memory unit='MiB'>${memMiB}</memory>`)
    .replace(/<cell id='0' cpus='0-1' memory='\d+'/, `<cell id='0' cpus='0-1' memory='${memMiB / 2}'`)
    .replace(/<cell id='1' memory='\d+' unit='MiB' memAccess='shared'\/>/, `<cell id='1' memory='${memMiB / 2}' unit='MiB'/>`)
    .replace("<vcpu>2</vcpu>", '<vcpu>1</vcpu>')
    .replace("cpus='0-1'", "cpus='0'");
  // Anonymous guest RAM (memory-backend-ram): QEMU advises MADV_HUGEPAGE on it.
  if (backing === 'thp') xml = xml.replace(/<memoryBacking>[\s\S]*?<\/memoryBacking>/, '');
  return xml;
}

function statusKiB(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** utime + stime of every thread of pid, in seconds. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100; // USER_HZ = 100
}

interface Serve {
  child: ChildProcess;
  url: string;
  dir: string;
  /** Largest placement cache any VM's round logged (bytes, runs). */
  placement: { bytes: number; runs: number };
}

/** A replay trace whose few pages are accessed every epoch (the hot set: 256 pages). */
function writeTrace(dir: string): string {
  const path = join(dir, 'hot.csv');
  const lines = ['epoch,page,accesses'];
  for (let e = 0; e < 4; e++) for (let p = 0; p < 256; p++) lines.push(`${e},${p},1`);
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

async function startServe(manage: string): Promise<Serve> {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-bench-scale-'));
  const trace = writeTrace(dir);
  const child = spawn(process.execPath, [BIN, 'serve', '--db', join(dir, 'vmtier.db'), '--listen', '127.0.0.1:0', '--tracker', 'replay',
    '--replay-trace', trace, '--manage', manage, '--resync-ms', '1000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const placement = { bytes: 0, runs: 0 };
  const url = await new Promise<string>((resolveUrl, reject) => {
    const onLine = (l: string) => {
      try {
        const j = JSON.parse(l) as { msg?: string; url?: string; placementBytes?: number; placementRuns?: number };
        if (j.msg === 'vmtier serving' && j.url) resolveUrl(j.url);
        if (j.msg === 'round' && typeof j.placementBytes === 'number') {
          placement.bytes = Math.max(placement.bytes, j.placementBytes);
          placement.runs = Math.max(placement.runs, j.placementRuns ?? 0);
        }
      } catch {
        // not a log line
      }
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', onLine);
    child.once('exit', (c) => reject(new Error(`serve exited ${c}`)));
  });
  return { child, url, dir, placement };
}

async function stopServe(s: Serve): Promise<void> {
  s.child.kill('SIGTERM');
  await new Promise((r) => (s.child.exitCode !== null ? r(null) : s.child.once('exit', r)));
  rmSync(s.dir, { recursive: true, force: true });
}

async function api<T>(s: Serve, method: string, path: string, body?: unknown): Promise<T> {
  const r = await fetch(`${s.url}${path}`, { method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return (await r.json()) as T;
}

interface EngineVm { uuid: string; rounds: number; lastRound: { trackedBytes: number } | null; tracker: { available: boolean } | null; lastError: unknown }

async function roundsOf(s: Serve, uuids: string[]): Promise<number> {
  const e = await api<{ vms: EngineVm[] }>(s, 'GET', '/v1/engine');
  const by = new Map(e.vms.map((v) => [v.uuid, v]));
  return Math.min(...uuids.map((u) => by.get(u)?.rounds ?? 0));
}

async function waitRounds(s: Serve, uuids: string[], n: number, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const r = await roundsOf(s, uuids);
    if (r >= n) return r;
    if (Date.now() - t0 > timeoutMs) throw new Error(`only ${r} of ${n} rounds in ${timeoutMs} ms`);
    await sleep(250);
  }
}

interface Point { label: string; vms: number; guestGiB: number; rssMiB: number; cpuMsPerRound: number; roundsMeasured: number; placementBytes: number; placementRuns: number; heap: HeapSplit }

/** serve's own view of its memory (/metrics): main thread V8 heap and external (array buffers), the VM threads' heaps. */
interface HeapSplit { mainHeapMiB: number; mainExternalMiB: number; workerHeapMiB: number; workerExternalMiB: number }

async function heapSplit(s: Serve): Promise<HeapSplit> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const sum = (re: RegExp) => {
    let v = 0;
    for (const m of text.matchAll(re)) v += Number(m[1]);
    return v / MiB;
  };
  return {
    mainHeapMiB: sum(/^vmtier_nodejs_heap_size_total_bytes (\S+)$/gm),
    mainExternalMiB: sum(/^vmtier_nodejs_external_memory_bytes (\S+)$/gm),
    workerHeapMiB: sum(/^vmtier_engine_worker_heap_bytes\{[^}]*kind="total"[^}]*\} (\S+)$/gm),
    workerExternalMiB: sum(/^vmtier_engine_worker_heap_bytes\{[^}]*kind="external"[^}]*\} (\S+)$/gm),
  };
}

/** serve with nothing to manage: the baseline RSS. */
async function baseline(): Promise<number> {
  const s = await startServe('^no-such-domain$');
  try {
    await sleep(4000);
    return statusKiB(s.child.pid!, 'VmRSS') / 1024;
  } finally {
    await stopServe(s);
  }
}

async function measure(label: string, count: number, memMiB: number, backing: '4k' | 'thp'): Promise<Point> {
  const tag = `${PREFIX}${label}-`.replace(/[^a-z0-9-]/g, '');
  const doms: TestDomain[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const name = `${tag}${i}-${Math.random().toString(36).slice(2, 6)}`;
      doms.push(await startDomain('two-cells-memfd.xml', PREFIX, { xml: domainXml(name, memMiB, backing) }));
    }
    const s = await startServe(`^${tag}`);
    try {
      const uuids = doms.map((d) => d.uuid);
      // The policy applies from the next round: wait until every VM is managed, then set it.
      const t0 = Date.now();
      for (;;) {
        const e = await api<{ vms: EngineVm[] }>(s, 'GET', '/v1/engine');
        if (uuids.every((u) => e.vms.some((v) => v.uuid === u))) break;
        if (Date.now() - t0 > 120_000) throw new Error('VMs not managed within 120 s');
        await sleep(250);
      }
      for (const u of uuids) await api(s, 'PUT', `/v1/vms/${u}/policy`, { mode: 'observe', scan: SCAN });
      const timeout = 600_000;
      const start = (await waitRounds(s, uuids, WARMUP_ROUNDS + 1, timeout));
      const c0 = cpuSeconds(s.child.pid!);
      const end = await waitRounds(s, uuids, start + MEASURED_ROUNDS, timeout);
      const c1 = cpuSeconds(s.child.pid!);
      const rss = statusKiB(s.child.pid!, 'VmRSS') / 1024;
      const heap = await heapSplit(s);
      const e = await api<{ vms: EngineVm[] }>(s, 'GET', '/v1/engine');
      const tracked = e.vms.filter((v) => uuids.includes(v.uuid)).reduce((a, v) => a + (v.lastRound?.trackedBytes ?? 0), 0);
      const p: Point = { label, vms: count, guestGiB: tracked / GiB, rssMiB: rss, cpuMsPerRound: ((c1 - c0) * 1000) / (end - start), roundsMeasured: end - start, placementBytes: s.placement.bytes, placementRuns: s.placement.runs, heap };
      log(`${label}: ${count} VM(s), ${p.guestGiB.toFixed(2)} GiB tracked, RSS ${rss.toFixed(0)} MiB, CPU ${p.cpuMsPerRound.toFixed(0)} ms per round (${p.roundsMeasured} rounds), placement cache ${p.placementBytes} B in ${p.placementRuns} runs; ` +
        `main heap ${heap.mainHeapMiB.toFixed(1)} + external ${heap.mainExternalMiB.toFixed(1)} MiB, VM threads' heaps ${heap.workerHeapMiB.toFixed(1)} + external ${heap.workerExternalMiB.toFixed(1)} MiB`);
      return p;
    } finally {
      await stopServe(s);
    }
  } finally {
    for (const d of doms) await d.destroy();
  }
}

/** Slope of y over x by least squares. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

/** Array-buffer bytes and heap bytes `make` leaves reachable (after a full collection). */
function retained(make: () => unknown): { ab: number; heap: number; keep: unknown } {
  global.gc?.();
  const m0 = process.memoryUsage();
  const keep = make();
  global.gc?.();
  const m1 = process.memoryUsage();
  return { ab: m1.arrayBuffers - m0.arrayBuffers, heap: m1.heapUsed - m0.heapUsed, keep };
}

interface Row { what: string; where: string; bytes: number; perPage: boolean }

/** The daemon's structures for one VM of `pages` 4 KiB pages, measured here (see the header). */
function breakdown(pages: number, placementBytes: number): Row[] {
  const rows: Row[] = [];
  const bufs = retained(() => new RoundState().buffers(pages));
  rows.push({ what: 'round counts + tiers buffers (tracker output = policy input)', where: 'src/daemon/round/round.ts RoundState.buffers', bytes: bufs.ab, perPage: true });
  rows.push({ what: 'placement cache (runs; as serve logged it)', where: 'src/migrate/placement-cache.ts', bytes: placementBytes, perPage: false });
  const half = Math.floor(pages / 2) * PAGE;
  const map: GuestNodeMap = {
    domain: { name: 'bench', uuid: '00000000-0000-4000-8000-00000000be0c', pid: 1 },
    nodes: [0, 1].map((n) => ({ node: n, cpus: null, sizeBytes: half, backing: { kind: 'memfd' as const, path: null, id: `ram-node${n}`, migratable: true }, hva: [{ start: 2 ** 40 + n * 2 ** 38, end: 2 ** 40 + n * 2 ** 38 + half }] })),
  };
  const pm = retained(() => {
    const m = PageMap.fromNumaMap(map);
    const u = new HotUnits(m);
    return [m, u, u.hotBits(new Uint8Array(1), 1)];
  });
  rows.push({ what: 'page map + hot-unit map (+ one hot bitmap)', where: 'src/daemon/page-map.ts, hot-units.ts', bytes: pm.ab + pm.heap, perPage: false });
  const scratch = retained(() => {
    const q = new QueryScratch();
    q.ensure(DEFAULT_BATCH);
    const m = new MoveScratch();
    m.ensure(DEFAULT_BATCH);
    return [q, m];
  });
  // The syscall layer's own address buffer, grown by one batch-sized query (of an unmapped address: EFAULT, no effect).
  queryPageNodes(process.pid, new Float64Array(DEFAULT_BATCH).fill(PAGE), DEFAULT_BATCH, new Int32Array(DEFAULT_BATCH));
  rows.push({ what: 'query + mover + syscall batch buffers (VM thread)', where: 'src/migrate/query.ts, move.ts, src/sys/syscalls.ts', bytes: scratch.ab + syscallScratchBytes(), perPage: false });
  // The policy, as the host policy thread runs it: its retained state, and what one decide() allocates and drops.
  const policy = normalizePolicy({ mode: 'observe' });
  const { counts, tiers } = bufs.keep as { counts: Uint8Array; tiers: Uint8Array };
  tiers.fill(TIER_DRAM);
  const core = new TieringPolicy();
  global.gc?.();
  const m0 = process.memoryUsage();
  const decision = core.decide({ dramCapacityBytes: pages * PAGE, dramShort: false, vms: [{ vmId: 'a', policy, counts, tiers, plan: core.initialPlan(policy) }] });
  const m1 = process.memoryUsage();
  global.gc?.();
  const m2 = process.memoryUsage();
  void decision;
  rows.push({ what: 'policy state kept between rounds', where: 'src/policy (TieringPolicy)', bytes: m2.arrayBuffers - m0.arrayBuffers + Math.max(0, m2.heapUsed - m0.heapUsed), perPage: true });
  rows.push({ what: 'decide() transients (garbage of one decision, at least)', where: 'src/policy tiering.ts scanVm', bytes: Math.max(0, m1.arrayBuffers - m2.arrayBuffers) + Math.max(0, m1.heapUsed - m2.heapUsed), perPage: true });
  void core;
  return rows;
}

const breakdownArg = process.argv.indexOf('--breakdown-only');
if (breakdownArg >= 0) {
  // The in-process part alone (no domains, no serve): --breakdown-only <GiB>.
  const pages = (Number(process.argv[breakdownArg + 1] ?? 4) * GiB) / PAGE;
  for (const r of breakdown(pages, 0)) console.log(`${r.what}: ${r.bytes} B, ${(r.bytes / pages).toFixed(3)} B per page`);
  process.exit(0);
}

await destroyDomains(PREFIX);
try {
  const base = await baseline();
  log(`baseline: serve managing nothing, RSS ${base.toFixed(0)} MiB`);
  const sizes = sizesOpt ?? (quick ? [1, 4] : [1, 4, 16, 64]);
  const byMem: Record<'4k' | 'thp', Point[]> = { '4k': [], thp: [] };
  for (const backing of only4k ? (['4k'] as const) : (['4k', 'thp'] as const)) {
    for (const g of sizes) byMem[backing].push(await measure(`mem-${backing}-${g}g`, 1, g * 1024, backing));
  }
  const counts = only4k || noVms ? [] : quick || sizesOpt ? [1, 8] : [1, 8, 32];
  const byVms: Point[] = [];
  for (const n of counts) byVms.push(await measure(`vms-${n}`, n, 1024, '4k'));

  console.log(`bench:scale — host (this machine: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} load), vmtier serve in observe mode, replay tracker, ` +
    `rounds of ${SCAN.scansPerRound} × ${SCAN.intervalMs} ms; RSS after ${WARMUP_ROUNDS + MEASURED_ROUNDS}+ rounds, CPU over ${MEASURED_ROUNDS} rounds after ${WARMUP_ROUNDS} warm-up rounds`);
  console.log(`baseline RSS (nothing managed): ${base.toFixed(0)} MiB\n`);
  console.log('| backing | guest GiB | VMs | RSS MiB | RSS − baseline MiB | (RSS − baseline) / GiB | CPU ms / round | placement cache |');
  console.log('|---|---|---|---|---|---|---|---|');
  const row = (b: string, p: Point) => console.log(`| ${b} | ${p.guestGiB.toFixed(1)} | ${p.vms} | ${p.rssMiB.toFixed(0)} | ${(p.rssMiB - base).toFixed(0)} | ${((p.rssMiB - base) / p.guestGiB).toFixed(2)} | ${p.cpuMsPerRound.toFixed(0)} | ${p.placementBytes} B, ${p.placementRuns} runs |`);
  for (const b of ['4k', 'thp'] as const) for (const p of byMem[b]) row(b === '4k' ? 'memfd (4 KiB)' : 'anonymous (THP)', p);
  for (const p of byVms) row('memfd (4 KiB)', p);
  console.log('');
  for (const b of ['4k', 'thp'] as const) {
    const ps = byMem[b];
    if (ps.length < 2) continue;
    const rssSlope = slope(ps.map((p) => p.guestGiB), ps.map((p) => p.rssMiB));
    const cpuSlope = slope(ps.map((p) => p.guestGiB), ps.map((p) => p.cpuMsPerRound));
    // Between each pair of neighbouring sizes of this one run: does the slope hold as the VM grows?
    const pairs = ps.slice(1).map((p, k) => `${ps[k]!.guestGiB.toFixed(0)}→${p.guestGiB.toFixed(0)} GiB ${((p.rssMiB - ps[k]!.rssMiB) / (p.guestGiB - ps[k]!.guestGiB)).toFixed(2)}`);
    console.log(`${b === '4k' ? 'memfd (4 KiB)' : 'anonymous (THP)'}: ${rssSlope.toFixed(2)} MiB of RSS per GiB of guest RAM (${((rssSlope * MiB) / (GiB / PAGE)).toFixed(1)} bytes per 4 KiB page; ` +
      `issue 13's target ${b === '4k' ? '0.25' : '0.0125'} MiB/GiB: ${(rssSlope / (b === '4k' ? 0.25 : 0.0125)).toFixed(1)}× it), CPU ${cpuSlope.toFixed(1)} ms per round per GiB; between sizes (MiB/GiB): ${pairs.join(', ')}`);
  }
  if (byVms.length >= 2) {
    const vmRss = slope(byVms.map((p) => p.vms), byVms.map((p) => p.rssMiB));
    const vmCpu = slope(byVms.map((p) => p.vms), byVms.map((p) => p.cpuMsPerRound));
    console.log(`per VM (1 GiB each): ${vmRss.toFixed(1)} MiB of RSS, ${vmCpu.toFixed(0)} ms of CPU per round`);
  }

  // serve's own split of its memory, per point (from its /metrics): what grows with guest RAM.
  console.log('\n| point | RSS MiB | main V8 heap MiB | main external MiB | VM threads\' V8 heaps MiB | VM threads\' external MiB | rest (native, glibc, code) MiB |');
  console.log('|---|---|---|---|---|---|---|');
  for (const p of [...byMem['4k'], ...byMem.thp, ...byVms]) {
    const h = p.heap;
    console.log(`| ${p.label} | ${p.rssMiB.toFixed(0)} | ${h.mainHeapMiB.toFixed(1)} | ${h.mainExternalMiB.toFixed(1)} | ${h.workerHeapMiB.toFixed(1)} | ${h.workerExternalMiB.toFixed(1)} | ${(p.rssMiB - h.mainHeapMiB - h.workerHeapMiB - h.mainExternalMiB).toFixed(1)} |`);
  }

  // Where the bytes are, for the largest 4 KiB point's page count.
  const big = byMem['4k'][byMem['4k'].length - 1]!;
  const pages = Math.round((big.guestGiB * GiB) / PAGE);
  const rows = breakdown(pages, big.placementBytes);
  const slope4k = byMem['4k'].length >= 2 ? slope(byMem['4k'].map((p) => p.guestGiB), byMem['4k'].map((p) => p.rssMiB)) : NaN;
  console.log(`\nRSS breakdown for one VM of ${big.guestGiB.toFixed(1)} GiB (${pages} pages of 4 KiB; measured in this process except the placement cache, which serve logged):\n`);
  console.log('| structure | where | bytes | bytes per 4 KiB page | MiB per GiB |');
  console.log('|---|---|---|---|---|');
  let sum = 0;
  for (const r of rows) {
    sum += r.bytes;
    console.log(`| ${r.what} | ${r.where} | ${r.bytes} | ${(r.bytes / pages).toFixed(3)} | ${((r.bytes / pages) * (GiB / PAGE) / MiB).toFixed(3)} |`);
  }
  const sumPerGiB = ((sum / pages) * (GiB / PAGE)) / MiB;
  console.log(`| all of the above | | ${sum} | ${(sum / pages).toFixed(3)} | ${sumPerGiB.toFixed(3)} |`);
  console.log(`\nThe structures account for ${sumPerGiB.toFixed(2)} MiB per GiB of the measured ${slope4k.toFixed(2)} MiB per GiB (4 KiB-backed); ` +
    'the rest is what the two V8 heaps (main thread, VM thread) and glibc keep of per-round garbage and pages touched once.');
} finally {
  await destroyDomains(PREFIX);
}
