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
 *   npm run bench:scale [-- --quick]      (--quick: 1/4 GiB and 1/8 VMs only)
 *   npm run bench:scale -- --quick --only-4k   (the memfd points only: ≈ 3 min, for before/after)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { TIER_DRAM, TieringPolicy, normalizePolicy } from '../src/policy/index.js';
import { destroyDomains, fixtureXml, startDomain, type TestDomain } from '../test/helpers/domains.js';

const PREFIX = 'vmtier-test-scale-';
const GiB = 2 ** 30;
const MiB = 2 ** 20;
const PAGE = 4096;
const BIN = resolve(fileURLToPath(import.meta.url), '..', '..', '..', 'bin', 'vmtier.js');
const quick = process.argv.includes('--quick');
const only4k = process.argv.includes('--only-4k');
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
  const url = await new Promise<string>((resolveUrl, reject) => {
    const onLine = (l: string) => {
      try {
        const j = JSON.parse(l) as { msg?: string; url?: string };
        if (j.msg === 'vmtier serving' && j.url) resolveUrl(j.url);
      } catch {
        // not a log line
      }
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', onLine);
    child.once('exit', (c) => reject(new Error(`serve exited ${c}`)));
  });
  return { child, url, dir };
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

interface Point { label: string; vms: number; guestGiB: number; rssMiB: number; cpuMsPerRound: number; roundsMeasured: number }

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
      const e = await api<{ vms: EngineVm[] }>(s, 'GET', '/v1/engine');
      const tracked = e.vms.filter((v) => uuids.includes(v.uuid)).reduce((a, v) => a + (v.lastRound?.trackedBytes ?? 0), 0);
      const p: Point = { label, vms: count, guestGiB: tracked / GiB, rssMiB: rss, cpuMsPerRound: ((c1 - c0) * 1000) / (end - start), roundsMeasured: end - start };
      log(`${label}: ${count} VM(s), ${p.guestGiB.toFixed(2)} GiB tracked, RSS ${rss.toFixed(0)} MiB, CPU ${p.cpuMsPerRound.toFixed(0)} ms per round (${p.roundsMeasured} rounds)`);
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

/** Bytes the policy's own state keeps for `pages` pages: decide() once here, arrayBuffers before/after. */
function policyStateBytes(pages: number): number {
  const policy = normalizePolicy({ mode: 'observe' });
  const counts = new Uint8Array(pages);
  const tiers = new Uint8Array(pages).fill(TIER_DRAM);
  global.gc?.();
  const before = process.memoryUsage().arrayBuffers;
  const core = new TieringPolicy();
  core.decide({ dramCapacityBytes: pages * PAGE, dramShort: false, vms: [{ vmId: 'a', policy, counts, tiers, plan: core.initialPlan(policy) }] });
  global.gc?.();
  const after = process.memoryUsage().arrayBuffers;
  void core;
  return after - before;
}

await destroyDomains(PREFIX);
try {
  const base = await baseline();
  log(`baseline: serve managing nothing, RSS ${base.toFixed(0)} MiB`);
  const sizes = quick ? [1, 4] : [1, 4, 16, 64];
  const byMem: Record<'4k' | 'thp', Point[]> = { '4k': [], thp: [] };
  for (const backing of only4k ? (['4k'] as const) : (['4k', 'thp'] as const)) {
    for (const g of sizes) byMem[backing].push(await measure(`mem-${backing}-${g}g`, 1, g * 1024, backing));
  }
  const counts = only4k ? [] : quick ? [1, 8] : [1, 8, 32];
  const byVms: Point[] = [];
  for (const n of counts) byVms.push(await measure(`vms-${n}`, n, 1024, '4k'));

  const pages16 = 16 * GiB / PAGE;
  const policyPerPage = policyStateBytes(pages16) / pages16;

  console.log(`bench:scale — host (this machine: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} load), vmtier serve in observe mode, replay tracker, ` +
    `rounds of ${SCAN.scansPerRound} × ${SCAN.intervalMs} ms; RSS after ${WARMUP_ROUNDS + MEASURED_ROUNDS}+ rounds, CPU over ${MEASURED_ROUNDS} rounds after ${WARMUP_ROUNDS} warm-up rounds`);
  console.log(`baseline RSS (nothing managed): ${base.toFixed(0)} MiB\n`);
  console.log('| backing | guest GiB | VMs | RSS MiB | RSS − baseline MiB | CPU ms / round |');
  console.log('|---|---|---|---|---|---|');
  for (const b of ['4k', 'thp'] as const) for (const p of byMem[b]) console.log(`| ${b === '4k' ? 'memfd (4 KiB)' : 'anonymous (THP)'} | ${p.guestGiB.toFixed(1)} | 1 | ${p.rssMiB.toFixed(0)} | ${(p.rssMiB - base).toFixed(0)} | ${p.cpuMsPerRound.toFixed(0)} |`);
  for (const p of byVms) console.log(`| memfd (4 KiB) | ${p.guestGiB.toFixed(1)} | ${p.vms} | ${p.rssMiB.toFixed(0)} | ${(p.rssMiB - base).toFixed(0)} | ${p.cpuMsPerRound.toFixed(0)} |`);
  console.log('');
  for (const b of ['4k', 'thp'] as const) {
    const ps = byMem[b];
    const rssSlope = slope(ps.map((p) => p.guestGiB), ps.map((p) => p.rssMiB));
    const cpuSlope = slope(ps.map((p) => p.guestGiB), ps.map((p) => p.cpuMsPerRound));
    console.log(`${b === '4k' ? 'memfd (4 KiB)' : 'anonymous (THP)'}: ${rssSlope.toFixed(2)} MiB of RSS per GiB of guest RAM (${((rssSlope * MiB) / (GiB / PAGE)).toFixed(1)} bytes per 4 KiB page; ` +
      `issue 13's target ${b === '4k' ? '0.25' : '0.0125'} MiB/GiB), CPU ${cpuSlope.toFixed(1)} ms per round per GiB`);
  }
  const vmRss = slope(byVms.map((p) => p.vms), byVms.map((p) => p.rssMiB));
  const vmCpu = slope(byVms.map((p) => p.vms), byVms.map((p) => p.cpuMsPerRound));
  console.log(`per VM (1 GiB each): ${vmRss.toFixed(1)} MiB of RSS, ${vmCpu.toFixed(0)} ms of CPU per round`);
  const memSlope4k = slope(byMem['4k'].map((p) => p.guestGiB), byMem['4k'].map((p) => p.rssMiB));
  console.log(`policy state (src/policy decide() over ${pages16} pages, here): ${policyPerPage.toFixed(1)} bytes per 4 KiB page = ` +
    `${((policyPerPage * (GiB / PAGE)) / MiB).toFixed(2)} MiB per GiB: ${((100 * policyPerPage * (GiB / PAGE)) / MiB / memSlope4k).toFixed(0)} % of the 4 KiB RSS slope; the engine (tracker counts, placement, buffers) the rest`);
} finally {
  await destroyDomains(PREFIX);
}
