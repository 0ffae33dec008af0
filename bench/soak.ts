/**
 * bench:soak — `vmtier serve` for a long run (default 30 minutes) on this host: the engine on 8
 * real TCG domains (sparse: 384 MiB of memfd RAM each, little of it ever touched) observing
 * every round (the kmod tracker cannot load here, so rounds record placement: real move_pages
 * queries on the real QEMU processes), API clients in a separate process polling every route
 * and changing policies, and every 10 s the service's RSS, open file descriptors and SQLite
 * size (file + WAL), the main thread's V8 heap and, from /metrics, each VM worker thread's V8
 * heap (vmtier_engine_worker_heap_bytes: one isolate per VM loop). Prints each one's
 * least-squares slope per hour over the last two thirds of the run (the first third is warm-up:
 * JIT, caches, the WAL reaching its size, malloc arenas filling), the slope of the last third
 * alone, and the maximum of the middle and of the last third: a bounded quantity has a last-third
 * maximum no higher than the middle third's. Not part of `npm test`.
 *
 *   npm run bench:soak [-- --minutes 30 --domains 8 --env MALLOC_ARENA_MAX=2 --default-retention]
 *
 * The store runs with a short retention by default (raw rows and minute cells 2 min, coarse
 * rows 2 min wide, everything dropped after 4 min, applied every 15 s; SOAK_RETENTION below),
 * so that the 10-minute warm-up covers 2.5 retention windows and the run 7.5: within the warm-up
 * the store reaches its steady state (rows dropped as fast as they are written, the freed pages
 * reused, the B-trees' fill settled — with the earlier 8-minute window that settling still went
 * on until minute ~17, measured in an accelerated-time replay of the soak's write load) and a
 * growing SQLite file means a table that retention does not bound.
 * `--default-retention` runs it with the production settings instead (24 h / 30 days, hourly),
 * under which the file grows for a day by design. Besides the file (and WAL) size it samples the
 * pages in use (page_count - freelist_count) and the number of policy versions, and ends with a
 * verdict per series: slope per hour over the last two thirds and `plateau` when the last third's
 * maximum is at most the middle third's plus the threshold printed beside it. Since those sizes
 * follow the number of live rows, i.e. the write rate (rounds per second, policy PUTs) times the
 * retention window, and the rate is not constant on a shared host, it also samples every table's
 * rows and bytes of pages (dbstat), the free pages and the rows retention should already have
 * dropped, and ends with a store verdict that tells growth beyond the rows from a faster rate
 * (storeReport).
 *
 * `--env K=V` (repeatable) is put into `vmtier serve`'s environment only. VMTIER_SOAK_CSV=file
 * writes every sample; `--table file --minutes N` prints the summary table again from it.
 */
import { fork, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import BetterSqlite3 from 'better-sqlite3';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_RETENTION } from '../src/config.js';
import { destroyDomains, startDomain, type TestDomain } from '../test/helpers/domains.js';

const PREFIX = 'vmtier-test-soak-';
const TOKEN = 'bench-soak-token-0123456789abcdef';
const repoRoot = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

const USAGE = `bench:soak [-- options]
  --minutes N           run length (default 30)
  --domains N           TCG domains managed by vmtier serve (default 8)
  --env K=V             put K=V into vmtier serve's environment (repeatable)
  --default-retention   the production retention (24 h raw, 30 days, hourly) instead of the soak's short one
  --table file.csv      print the summary again from a run's VMTIER_SOAK_CSV samples (with --minutes)
  --help                this text`;

/**
 * The soak's retention (vmtier.yaml `retention:`): short enough that the store reaches its steady
 * state within the first third of a 30-minute run.
 */
const SOAK_RETENTION = { fullResolutionHours: 2 / 60, coarseStepSeconds: 120, maxAgeDays: 4 / 1440, intervalSeconds: 15 };
/** Rows retention should have dropped are counted `stale` once they are older than its horizon plus one interval and this slack. */
const STALE_SLACK_MS = 5_000;
/** The store's tables, sampled one by one (rows and bytes of pages, the table's and its indexes'). */
const TABLES = ['samples', 'rollups', 'heat_frames', 'policies', 'series', 'vms', 'guest_nodes', 'migration_log'] as const;
type TableName = (typeof TABLES)[number];

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
}

/** Every `--env K=V` pair. */
function envArgs(): Record<string, string> {
  const out: Record<string, string> = {};
  process.argv.forEach((a, i) => {
    if (a !== '--env') return;
    const kv = process.argv[i + 1] ?? '';
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`--env wants K=V, got ${kv}`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  });
  return out;
}

interface ClientJob {
  url: string;
  uuids: string[];
}

/** API clients (child process): poll every route, now and then change a policy. */
async function clients(job: ClientJob): Promise<void> {
  let stop = false;
  const counts: Record<string, number> = {};
  process.on('message', (m) => {
    if (m === 'stop') stop = true;
  });
  const h = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  const client = async (k: number) => {
    let i = k;
    while (!stop) {
      const uuid = job.uuids[i % job.uuids.length]!;
      const paths = ['/v1/vms', '/v1/engine', '/metrics', '/healthz', `/v1/vms/${uuid}`, `/v1/vms/${uuid}/history?step=1m`, `/v1/vms/${uuid}/history?from=${Date.now() - 86_400_000}&step=5m`, `/v1/vms/${uuid}/policy`, `/v1/vms/${uuid}/engine`];
      const path = paths[i % paths.length]!;
      try {
        const put = i % 97 === 0;
        const r = await fetch(`${job.url}${put ? `/v1/vms/${uuid}/policy` : path}`, {
          method: put ? 'PUT' : 'GET',
          headers: h,
          body: put ? JSON.stringify({ mode: 'observe', scan: { intervalMs: 500 + (i % 5) * 100, scansPerRound: 2 } }) : undefined,
        });
        await r.arrayBuffer();
        counts[r.status] = (counts[r.status] ?? 0) + 1;
      } catch {
        counts.error = (counts.error ?? 0) + 1;
      }
      i += 4;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await Promise.all([0, 1, 2, 3].map((k) => client(k)));
  process.send!(counts, () => process.exit(0));
}

function slopePerHour(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return (num / den) * 3600_000;
}

type Sample = {
  t: number; rss: number; anon: number; file: number; heapUsed: number; heapTotal: number; external: number;
  wUsed: number; wTotal: number; wExternal: number; wMaxUsed: number; workers: number; fds: number; db: number; load1: number;
  /** The main database file alone, the WAL, the bytes of pages in use (page_count - freelist_count) and policy versions. */
  dbFile: number; wal: number; pagesUsed: number; policies: number;
  /** Rounds logged so far, free pages' bytes (freelist_count x page_size), rows older than retention's horizon (see staleRows). */
  rounds: number; freeBytes: number; stale: number;
  /** Per table: rows and bytes of pages (dbstat: the table and its indexes). */
  tables: Partial<Record<TableName, { rows: number; bytes: number }>>;
};
const CSV_COLUMNS: Array<Exclude<keyof Sample, 'tables'>> = ['t', 'rss', 'anon', 'file', 'heapUsed', 'heapTotal', 'external', 'wUsed', 'wTotal', 'wExternal', 'wMaxUsed', 'workers', 'fds', 'db', 'load1', 'dbFile', 'wal', 'pagesUsed', 'policies', 'rounds', 'freeBytes', 'stale'];
const TABLE_COLUMNS = TABLES.flatMap((t) => [`rows:${t}`, `bytes:${t}`]);

/**
 * The summary table. Windows by thirds of the run: the first third is warm-up; slopes are fitted
 * over the last two thirds and over the last third alone. Memory that GC and malloc free in
 * bursts saw-tooths, so a slope over a sample's peaks and troughs says little in 35 minutes;
 * beside it: the slope of the floor (each 2-minute window's minimum, what stays after collection)
 * and the median and maximum of the middle and of the last third. A leak raises the floor and
 * every third's median and maximum; bounded memory keeps them (`plateau`: last-third maximum not
 * above the middle third's).
 */
function table(samples: Sample[], minutes: number): void {
  const third = (minutes * 60_000) / 3;
  const mid = samples.filter((s) => s.t >= third && s.t < 2 * third);
  const lastThird = samples.filter((s) => s.t >= 2 * third);
  const steady = samples.filter((s) => s.t >= third);
  const vals = (xs: Sample[], pick: (s: Sample) => number) => xs.map(pick).filter((v) => Number.isFinite(v)).sort((x, y) => x - y);
  const median = (v: number[]) => v[Math.floor(v.length / 2)] ?? NaN;
  const floor = (pick: (s: Sample) => number): Array<[number, number]> => {
    const w = new Map<number, [number, number]>();
    for (const s of steady) {
      const k = Math.floor((s.t - third) / 120_000);
      const v = pick(s);
      if (!Number.isFinite(v)) continue;
      const old = w.get(k);
      if (!old || v < old[1]) w.set(k, [s.t, v]);
    }
    return [...w.values()];
  };
  const fmt = (name: string, unit: string, scale: number, pick: (s: Sample) => number) => {
    const f = (x: number, w = 9) => (x / scale).toFixed(2).padStart(w);
    const m2 = vals(mid, pick);
    const m3 = vals(lastThird, pick);
    console.log(
      `${name.padEnd(16)} ${f(pick(steady[0] ?? samples[0]!))} ${f(pick(samples[samples.length - 1]!))} ${f(slopePerHour(steady.map((s) => [s.t, pick(s)])), 10)} ${f(slopePerHour(lastThird.map((s) => [s.t, pick(s)])), 10)} ${f(slopePerHour(floor(pick)), 10)}` +
        ` ${f(median(m2))} ${f(median(m3))} ${f(m2[m2.length - 1]!)} ${f(m3[m3.length - 1]!)}  ${m3[m3.length - 1]! <= m2[m2.length - 1]! ? 'plateau' : 'higher '}  ${unit}`,
    );
  };
  console.log(`slopes per hour over the last two thirds (${steady.length} samples from ${(third / 60_000).toFixed(1)} min), over the last third (${lastThird.length} from ${((2 * third) / 60_000).toFixed(1)} min) ` +
    `and of the floor (2-minute minima over the last two thirds); median and max of the middle and of the last third`);
  console.log('                 first(2/3)      last slope(2/3) slope(3/3) floor/h   med mid  med last   max mid  max last');
  fmt('RSS', 'MiB', 2 ** 20, (s) => s.rss);
  fmt('  RssAnon', 'MiB', 2 ** 20, (s) => s.anon);
  fmt('  RssFile+Shm', 'MiB', 2 ** 20, (s) => s.file);
  // RssAnon less the V8 heaps' reserved pages (main thread and the VM threads): malloc's share.
  fmt('  anon - heaps', 'MiB', 2 ** 20, (s) => s.anon - s.heapTotal - s.wTotal);
  fmt('main heap used', 'MiB', 2 ** 20, (s) => s.heapUsed);
  fmt('main heap total', 'MiB', 2 ** 20, (s) => s.heapTotal);
  fmt('main external', 'MiB', 2 ** 20, (s) => s.external);
  fmt('workers used', 'MiB', 2 ** 20, (s) => s.wUsed);
  fmt('workers total', 'MiB', 2 ** 20, (s) => s.wTotal);
  fmt('workers extern', 'MiB', 2 ** 20, (s) => s.wExternal);
  fmt('max worker used', 'MiB', 2 ** 20, (s) => s.wMaxUsed);
  fmt('open fds', 'fds', 1, (s) => s.fds);
  fmt('SQLite + WAL', 'MiB', 2 ** 20, (s) => s.db);
  fmt('  SQLite file', 'MiB', 2 ** 20, (s) => s.dbFile);
  fmt('  WAL', 'MiB', 2 ** 20, (s) => s.wal);
  fmt('  pages in use', 'MiB', 2 ** 20, (s) => s.pagesUsed);
  fmt('policy versions', 'rows', 1, (s) => s.policies);
  verdicts(samples, minutes);
  storeReport(samples, minutes);
}

/**
 * What the store's size is made of, table by table, and whether it is bounded. The file, the
 * pages in use and the policy versions follow the number of live rows, and under retention that
 * is the write rate times the retention window: rounds per second (set by the engine and by
 * what else runs on the host's 2 cores) and the clients' PUTs (one per 97 requests: set by the
 * API's answer times) are not constant, so a size can end higher only because the last third
 * wrote faster. The store is judged `bounded` when three things hold:
 *   1. retention keeps pace: no stale row (older than its horizon by more than one interval plus
 *      STALE_SLACK_MS; staleRows) in any sample after the first third;
 *   2. no table's pages grow beyond its rows: per table, the last third's maximum bytes are at
 *      most the middle third's maximum bytes per row times the last third's maximum rows, +2 % and
 *      + 2 pages (8 KiB; page granularity of small tables). Fragmentation, pages not reused, or
 *      anything kept besides rows shows here;
 *   3. free pages are reused: the file's growth over the last two thirds is at most the growth
 *      of the pages in use's maximum (+2 %): the file is their high-water mark.
 * Slopes per hour are fitted over each half of the run (the first half contains the warm-up).
 */
function storeReport(samples: Sample[], minutes: number): void {
  const third = (minutes * 60_000) / 3;
  const half = (minutes * 60_000) / 2;
  const mid = samples.filter((s) => s.t >= third && s.t < 2 * third);
  const last = samples.filter((s) => s.t >= 2 * third);
  const h1 = samples.filter((s) => s.t < half);
  const h2 = samples.filter((s) => s.t >= half);
  if (!mid.length || !last.length) return;
  const fin = (xs: number[]) => xs.filter((v) => Number.isFinite(v));
  const max = (xs: number[]) => Math.max(...fin(xs));
  const slope = (xs: Sample[], pick: (s: Sample) => number) => slopePerHour(xs.map((s) => [s.t, pick(s)] as [number, number]).filter((p) => Number.isFinite(p[1])));
  const rate = (xs: Sample[]) => (xs.length > 1 ? (xs[xs.length - 1]!.rounds - xs[0]!.rounds) / ((xs[xs.length - 1]!.t - xs[0]!.t) / 1000) : NaN);
  console.log(`store: rounds per second ${rate(mid).toFixed(1)} in the middle third, ${rate(last).toFixed(1)} in the last (the rows retention keeps scale with it)`);
  console.log(`per table (rows and bytes of pages with indexes; slopes per hour over the first / second half; max over the middle / last third; bytes per row at the middle third's max):`);
  let tablesOk = true;
  for (const t of TABLES) {
    const rows = (s: Sample) => s.tables[t]?.rows ?? NaN;
    const bytes = (s: Sample) => s.tables[t]?.bytes ?? NaN;
    if (!fin(samples.map(rows)).length) continue;
    const r2 = max(mid.map(rows));
    const r3 = max(last.map(rows));
    const b2 = max(mid.map(bytes));
    const b3 = max(last.map(bytes));
    const perRow = b2 / Math.max(1, r2);
    const limit = perRow * Math.max(1, r3) * 1.02 + 8192;
    const ok = b3 <= limit;
    tablesOk &&= ok;
    console.log(
      `  ${t.padEnd(14)} rows ${r2.toFixed(0).padStart(7)} / ${r3.toFixed(0).padStart(7)} (slope ${slope(h1, rows).toFixed(0)} / ${slope(h2, rows).toFixed(0)} /h)` +
        `  KiB ${(b2 / 1024).toFixed(1).padStart(8)} / ${(b3 / 1024).toFixed(1).padStart(8)} (slope ${(slope(h1, bytes) / 1024).toFixed(1)} / ${(slope(h2, bytes) / 1024).toFixed(1)} KiB/h)` +
        `  ${perRow.toFixed(1)} B/row  limit ${(limit / 1024).toFixed(1)} KiB  ${ok ? 'bounded by rows' : 'GROWS BEYOND ROWS'}`,
    );
  }
  const mib = (b: number) => (b / 2 ** 20).toFixed(3);
  for (const [name, pick] of [['file', (s: Sample) => s.dbFile], ['pages in use', (s: Sample) => s.pagesUsed], ['free pages', (s: Sample) => s.freeBytes], ['WAL', (s: Sample) => s.wal]] as const) {
    console.log(`  ${name.padEnd(14)} MiB max ${mib(max(mid.map(pick)))} / ${mib(max(last.map(pick)))}, slope ${mib(slope(h1, pick))} / ${mib(slope(h2, pick))} MiB/h`);
  }
  const staleMax = max(samples.filter((s) => s.t >= third).map((s) => s.stale));
  const fileGrowth = max(last.map((s) => s.dbFile)) - max(mid.map((s) => s.dbFile));
  const usedGrowth = Math.max(0, max(last.map((s) => s.pagesUsed)) - max(mid.map((s) => s.pagesUsed)));
  const reused = fileGrowth <= usedGrowth * 1.02 + 4096;
  console.log(`  stale rows (retention behind) after the first third: max ${staleMax}; file growth middle -> last third ${mib(fileGrowth)} MiB, pages in use's max ${mib(usedGrowth)} MiB`);
  console.log(`store verdict: ${staleMax === 0 && tablesOk && reused ? 'bounded' : 'NOT SHOWN BOUNDED'} (retention keeps pace: ${staleMax === 0 ? 'yes' : 'no'}; every table's pages follow its rows: ${tablesOk ? 'yes' : 'no'}; free pages reused: ${reused ? 'yes' : 'no'})`);
}

/**
 * The verdict per series the issue asks for: the slope per hour over the last two thirds and
 * `plateau` when the last third's maximum is at most the middle third's plus a threshold (relative
 * to the middle third's maximum, plus an absolute slack for small integer counts), else `higher`.
 */
const VERDICT_SERIES: Array<{ name: string; unit: string; scale: number; rel: number; abs: number; pick: (s: Sample) => number }> = [
  { name: 'RSS', unit: 'MiB', scale: 2 ** 20, rel: 0.02, abs: 0, pick: (s) => s.rss },
  { name: 'open fds', unit: 'fds', scale: 1, rel: 0, abs: 2, pick: (s) => s.fds },
  { name: 'SQLite file', unit: 'MiB', scale: 2 ** 20, rel: 0.02, abs: 0, pick: (s) => s.dbFile },
  { name: 'SQLite + WAL', unit: 'MiB', scale: 2 ** 20, rel: 0.02, abs: 0, pick: (s) => s.db },
  { name: 'pages in use', unit: 'MiB', scale: 2 ** 20, rel: 0.02, abs: 0, pick: (s) => s.pagesUsed },
  { name: 'policy versions', unit: 'rows', scale: 1, rel: 0.1, abs: 8, pick: (s) => s.policies },
];

function verdicts(samples: Sample[], minutes: number): void {
  const third = (minutes * 60_000) / 3;
  const steady = samples.filter((s) => s.t >= third);
  const mid = samples.filter((s) => s.t >= third && s.t < 2 * third);
  const last = samples.filter((s) => s.t >= 2 * third);
  const max = (xs: Sample[], pick: (s: Sample) => number) => Math.max(...xs.map(pick).filter((v) => Number.isFinite(v)));
  console.log(`verdicts (slope over the last two thirds; plateau = max of the last third <= max of the middle third x (1 + rel) + abs):`);
  for (const v of VERDICT_SERIES) {
    const slope = slopePerHour(steady.map((s) => [s.t, v.pick(s)] as [number, number]).filter((p) => Number.isFinite(p[1])));
    const m2 = max(mid, v.pick);
    const m3 = max(last, v.pick);
    if (!Number.isFinite(m2) || !Number.isFinite(m3)) {
      console.log(`  ${v.name.padEnd(16)} not sampled`);
      continue;
    }
    const limit = m2 * (1 + v.rel) + v.abs;
    const f = (x: number) => (x / v.scale).toFixed(2);
    console.log(
      `  ${v.name.padEnd(16)} slope ${f(slope).padStart(9)} ${v.unit}/h   max mid ${f(m2).padStart(9)}  max last ${f(m3).padStart(9)}  threshold ${f(limit).padStart(9)} ` +
        `(+${(v.rel * 100).toFixed(0)}% +${v.abs})  ${m3 <= limit ? 'plateau' : 'higher'}`,
    );
  }
}

async function main(): Promise<void> {
  const minutes = arg('minutes', 30);
  const nDomains = arg('domains', 8);
  const childEnv = envArgs();
  const defaultRetention = process.argv.includes('--default-retention');
  const load0 = loadavg();
  const started = new Date();
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-soak-'));
  const db = join(dir, 'soak.db');
  await destroyDomains(PREFIX);
  const domains: TestDomain[] = [];
  let served: ReturnType<typeof spawn> | undefined;
  try {
    for (let i = 0; i < nDomains; i++) {
      domains.push(await startDomain('two-cells-memfd.xml', PREFIX));
      process.stderr.write(`\rstarted ${i + 1}/${nDomains} domains`);
    }
    process.stderr.write('\n');
    const config = join(dir, 'vmtier.yaml');
    const r = SOAK_RETENTION;
    const retentionMs: RetentionMs = defaultRetention ? DEFAULT_RETENTION : {
      fullResolutionMs: r.fullResolutionHours * 3600_000, coarseStepMs: r.coarseStepSeconds * 1000, maxAgeMs: r.maxAgeDays * 86_400_000, intervalMs: r.intervalSeconds * 1000,
    };
    writeFileSync(config, defaultRetention ? '{}\n' : `retention:\n  fullResolutionHours: ${r.fullResolutionHours}\n  coarseStepSeconds: ${r.coarseStepSeconds}\n  maxAgeDays: ${r.maxAgeDays}\n  intervalSeconds: ${r.intervalSeconds}\n`);
    served = spawn(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'serve', '--config', config, '--db', db, '--listen', '127.0.0.1:0', '--tracker', 'kmod', '--manage', `^${PREFIX}`], {
      env: { ...process.env, VMTIER_TOKEN: TOKEN, VMTIER_LOG_LEVEL: 'info', ...childEnv },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    let rounds = 0;
    let roundFailures = 0;
    served.stdout!.on('data', (b: Buffer) => {
      const s = b.toString();
      rounds += (s.match(/"msg":"round"/g) ?? []).length;
      roundFailures += (s.match(/round failed/g) ?? []).length;
      out = (out + s).slice(-20_000);
    });
    const deadline = Date.now() + 60_000;
    while (!/"url":"(http:[^"]+)"/.test(out)) {
      if (Date.now() > deadline || served.exitCode !== null) throw new Error(`serve did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const url = /"url":"(http:[^"]+)"/.exec(out)![1]!;
    for (const d of domains) {
      await fetch(`${url}/v1/vms/${d.uuid}/policy`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ mode: 'observe', scan: { intervalMs: 500, scansPerRound: 2 } }),
      });
    }
    const client = fork(fileURLToPath(import.meta.url), ['--clients'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    client.send({ url, uuids: domains.map((d) => d.uuid) } satisfies ClientJob);
    const pid = served.pid!;
    const samples: Sample[] = [];
    // The main thread's V8 heap and external memory, from prom-client's default metrics on
    // /metrics (vmtier_ prefix), and the VM loops' worker threads' own isolates
    // (vmtier_engine_worker_heap_bytes, one series per VM and kind), summed over the VMs.
    const gauge = (text: string, name: string) => Number(new RegExp(`^${name} ([0-9.e+]+)`, 'm').exec(text)?.[1] ?? NaN);
    const workerHeap = (text: string, kind: string) =>
      [...text.matchAll(new RegExp(`^vmtier_engine_worker_heap_bytes\\{[^}]*kind="${kind}"[^}]*\\} ([0-9.e+]+)`, 'gm'))].map((m) => Number(m[1]));
    const sum = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) : NaN);
    const heap = async () => {
      try {
        const r = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
        const text = await r.text();
        const used = workerHeap(text, 'used');
        return {
          heapUsed: gauge(text, 'vmtier_nodejs_heap_size_used_bytes'), heapTotal: gauge(text, 'vmtier_nodejs_heap_size_total_bytes'), external: gauge(text, 'vmtier_nodejs_external_memory_bytes'),
          wUsed: sum(used), wTotal: sum(workerHeap(text, 'total')), wExternal: sum(workerHeap(text, 'external')), wMaxUsed: used.length ? Math.max(...used) : NaN, workers: used.length,
        };
      } catch {
        return { heapUsed: NaN, heapTotal: NaN, external: NaN, wUsed: NaN, wTotal: NaN, wExternal: NaN, wMaxUsed: NaN, workers: 0 };
      }
    };
    const t0 = Date.now();
    const end = t0 + minutes * 60_000;
    while (Date.now() < end) {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN) * 1024;
      const rss = kib('VmRSS');
      const anon = kib('RssAnon');
      const file = kib('RssFile') + kib('RssShmem');
      const h = await heap();
      const fds = readdirSync(`/proc/${pid}/fd`).length;
      const dbFile = statSync(db).size;
      const wal = existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 0;
      const size = dbFile + wal;
      const stats = dbStats(db, Date.now(), retentionMs);
      samples.push({ t: Date.now() - t0, rss, anon, file, ...h, fds, db: size, load1: loadavg()[0]!, dbFile, wal, rounds, ...stats });
      process.stderr.write(`\r${((Date.now() - t0) / 60_000).toFixed(1)}/${minutes} min: RSS ${(rss / 2 ** 20).toFixed(1)} MiB, heap ${(h.heapUsed / 2 ** 20).toFixed(1)} MiB, workers' heaps ${(h.wUsed / 2 ** 20).toFixed(1)} MiB (${h.workers}), ${fds} fds, db ${(size / 2 ** 20).toFixed(2)} MiB, ${rounds} rounds   `);
      await new Promise((r) => setTimeout(r, Math.min(10_000, Math.max(0, end - Date.now()))));
    }
    process.stderr.write('\n');
    client.send('stop');
    const counts = await new Promise<Record<string, number>>((resolve) => client.once('message', (m) => resolve(m as Record<string, number>)));
    const loads = samples.map((s) => s.load1);
    const ret = defaultRetention ? 'default retention (24 h raw, 5-min rows, 30 days, hourly)' :
      `soak retention (raw ${SOAK_RETENTION.fullResolutionHours * 60} min, ${SOAK_RETENTION.coarseStepSeconds} s rows, dropped after ${SOAK_RETENTION.maxAgeDays * 1440} min, every ${SOAK_RETENTION.intervalSeconds} s)`;
    console.log(`bench:soak on this host, ${started.toISOString()}: ${minutes} min, ${nDomains} TCG domains (engine observing, placement rounds), 4 API clients, ${ret}` +
      `${Object.keys(childEnv).length ? `, serve env ${JSON.stringify(childEnv)}` : ''}; ${rounds} rounds (${roundFailures} failed), API answers ${JSON.stringify(counts)}; ` +
      `load average (1 min) ${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)} (at start ${load0.map((x) => x.toFixed(2)).join(' ')})`);
    table(samples, minutes);
    // What bounds the SQLite file (src/store/store.ts applyRetention, heat-history.ts): raw
    // sample rows and 1-minute rollup and heat cells live fullResolutionHours (24 h by default),
    // then fold into 5-minute rows; everything goes after maxAgeDays (30). So the file stops
    // growing once the oldest raw row is 24 h old. The bound printed is computed from this run's
    // row rates and bytes per row (dbstat: table plus its indexes) at the default retention:
    // an extrapolation, not a measurement (SQLite reuses freed pages; the file does not shrink).
    try {
      const d = new BetterSqlite3(db, { readonly: true, fileMustExist: true });
      const n = (sql: string) => Number((d.prepare(sql).get() as { n: number | null }).n ?? 0);
      const bytesOf = (table: string) => n(`SELECT SUM(pgsize) AS n FROM dbstat WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name = '${table}')`);
      const raw = n('SELECT COUNT(*) AS n FROM samples WHERE resolution_ms = 0');
      const series = n('SELECT COUNT(*) AS n FROM series');
      const vms = n('SELECT COUNT(DISTINCT vm_uuid) AS n FROM heat_frames');
      const rollups = n('SELECT COUNT(*) AS n FROM rollups');
      const heat = n('SELECT COUNT(*) AS n FROM heat_frames');
      const policies = n('SELECT COUNT(*) AS n FROM policies');
      const migrationsN = n('SELECT COUNT(*) AS n FROM migration_log');
      const vmsN = n('SELECT COUNT(*) AS n FROM vms');
      const guestN = n('SELECT COUNT(*) AS n FROM guest_nodes');
      const total = n('SELECT page_count * page_size AS n FROM pragma_page_count(), pragma_page_size()');
      const hours = samples[samples.length - 1]!.t / 3600_000;
      const perRaw = bytesOf('samples') / Math.max(1, raw);
      const perRollup = bytesOf('rollups') / Math.max(1, rollups);
      const perHeat = bytesOf('heat_frames') / Math.max(1, heat);
      const d2 = d;
      const mib = (b: number) => (b / 2 ** 20).toFixed(1);
      const rawBound = (raw / hours) * 24 * perRaw;
      const coarseBound = series * 288 * 30 * perRaw;
      const rollupBound = series * (60 * 24 + 12 * 24 * 30 + 24 * 30) * perRollup;
      const heatBound = vms * (60 * 24 + 288 * 30) * perHeat;
      console.log(`SQLite at the end: ${total} bytes of pages (${mib(total)} MiB; the WAL not yet checkpointed counts in); ${raw} raw sample rows (${(raw / hours).toFixed(0)}/h, ` +
        `${perRaw.toFixed(0)} B each with index), ${series} series, ${rollups} rollup cells (${perRollup.toFixed(0)} B), ${heat} heat frames of ${vms} VMs (${perHeat.toFixed(0)} B)`);
      if (defaultRetention) console.log(`computed bound at default retention (24 h raw, 5-min rows to 30 days) and this run's rates: raw ${mib(rawBound)} + coarse ${mib(coarseBound)} + rollups ${mib(rollupBound)} + heat ${mib(heatBound)} = ${mib(rawBound + coarseBound + rollupBound + heatBound)} MiB`);
      const byRes = (table: string) => (d2.prepare(`SELECT resolution_ms AS r, COUNT(*) AS n FROM ${table} GROUP BY resolution_ms`).all() as Array<{ r: number; n: number }>).map((x) => `${x.r / 1000} s: ${x.n}`).join(', ');
      console.log(`rows at the end by resolution: samples {${byRes('samples')}}, rollups {${byRes('rollups')}}, heat_frames {${byRes('heat_frames')}}; policies ${policies}, migration_log ${migrationsN}, series ${series}, vms ${vmsN}, guest_nodes ${guestN}`);
      d2.close();
    } catch (e) {
      console.log(`SQLite row counts unavailable: ${(e as Error).message}`);
    }
    const csv = process.env.VMTIER_SOAK_CSV;
    if (csv) {
      const row = (s: Sample) => [...CSV_COLUMNS.map((c) => s[c]), ...TABLES.flatMap((t) => [s.tables[t]?.rows ?? NaN, s.tables[t]?.bytes ?? NaN])].join(',');
      writeFileSync(csv, [[...CSV_COLUMNS, ...TABLE_COLUMNS].join(','), ...samples.map(row)].join('\n') + '\n');
    }
  } finally {
    served?.kill('SIGTERM');
    await destroyDomains(PREFIX);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Retention's rules in milliseconds (the config file's units converted), for staleRows. */
interface RetentionMs { fullResolutionMs: number; coarseStepMs: number; maxAgeMs: number; intervalMs: number }

/**
 * Rows retention should already have dropped: older than its horizon (src/store/store.ts
 * applyRetention, heat-history.ts) by more than one interval and STALE_SLACK_MS. Raw sample rows
 * and 1-minute rollup cells past fullResolution, any sample row, heat frame or migration-log
 * entry past maxAge, superseded policy versions past maxAge. 5-minute and hourly rollup cells are
 * not counted: the cell being written starts before the horizon (retention drops it, the next
 * round writes it again with that round alone) and holds one row per series either way.
 */
function staleRows(d: BetterSqlite3.Database, now: number, r: RetentionMs): number {
  const drop = now - r.maxAgeMs - r.intervalMs - STALE_SLACK_MS;
  const raw = now - r.fullResolutionMs - r.intervalMs - STALE_SLACK_MS;
  const n = (sql: string, ...args: number[]) => Number((d.prepare(sql).get(...args) as { n: number }).n);
  // Heat minute cells stay until maxAge when the coarse step is the cell itself (nothing to fold into).
  const heatRaw = r.coarseStepMs > 60_000 ? raw : drop;
  return (
    n('SELECT COUNT(*) AS n FROM samples WHERE t < ? OR (resolution_ms = 0 AND t < ?)', drop, raw) +
    n('SELECT COUNT(*) AS n FROM rollups WHERE resolution_ms = 60000 AND t + 60000 <= ?', raw) +
    n('SELECT COUNT(*) AS n FROM heat_frames WHERE t < ? OR (resolution_ms = 60000 AND t + 60000 <= ?)', drop, heatRaw) +
    n('SELECT COUNT(*) AS n FROM migration_log WHERE t < ?', drop) +
    n('SELECT COUNT(*) AS n FROM policies WHERE updated_at < ? AND version < (SELECT MAX(p.version) FROM policies p WHERE p.vm_uuid = policies.vm_uuid)', drop)
  );
}

/**
 * The store's pages in use, free pages, policy versions, rows and bytes per table, and stale rows,
 * read by a read-only connection of our own (WAL: it sees the last commit).
 */
function dbStats(path: string, now: number, r: RetentionMs): Pick<Sample, 'pagesUsed' | 'policies' | 'freeBytes' | 'stale' | 'tables'> {
  try {
    const d = new BetterSqlite3(path, { readonly: true, fileMustExist: true });
    try {
      const one = (sql: string) => Number(Object.values(d.prepare(sql).get() as object)[0]);
      const pageSize = one('PRAGMA page_size');
      const free = one('PRAGMA freelist_count') * pageSize;
      const pagesUsed = one('PRAGMA page_count') * pageSize - free;
      const bytes = new Map(
        (d.prepare('SELECT m.tbl_name AS t, SUM(s.pgsize) AS b FROM dbstat s JOIN sqlite_master m ON m.name = s.name GROUP BY m.tbl_name').all() as Array<{ t: string; b: number }>).map((x) => [x.t, x.b]),
      );
      const tables: Sample['tables'] = {};
      for (const t of TABLES) tables[t] = { rows: one(`SELECT COUNT(*) FROM ${t}`), bytes: bytes.get(t) ?? 0 };
      return { pagesUsed, policies: tables.policies!.rows, freeBytes: free, stale: staleRows(d, now, r), tables };
    } finally {
      d.close();
    }
  } catch {
    return { pagesUsed: NaN, policies: NaN, freeBytes: NaN, stale: NaN, tables: {} };
  }
}

/** `--table file.csv --minutes N`: the summary table again from a run's samples (VMTIER_SOAK_CSV). */
function tableFromCsv(file: string, minutes: number): void {
  const [head, ...lines] = readFileSync(file, 'utf8').trim().split('\n');
  // Older runs' CSVs named the columns differently: read them by position in this order.
  const legacy = ['t_ms', 'rss', 'rss_anon', 'rss_file', 'heap_used', 'heap_total', 'external', 'workers_used', 'workers_total', 'workers_external', 'max_worker_used', 'workers', 'fds', 'db', 'load1'];
  const cols = head!.split(',').map((c) => CSV_COLUMNS[legacy.indexOf(c)] ?? c);
  const samples = lines.map((l) => {
    const v = l.split(',').map(Number);
    const s = { ...Object.fromEntries(CSV_COLUMNS.map((c) => [c, NaN])), tables: {} } as Sample;
    cols.forEach((c, i) => {
      const m = /^(rows|bytes):(.+)$/.exec(c);
      if (m) {
        const t = (s.tables[m[2] as TableName] ??= { rows: NaN, bytes: NaN });
        t[m[1] as 'rows' | 'bytes'] = v[i]!;
      } else (s as unknown as Record<string, number>)[c] = v[i]!;
    });
    return s;
  });
  table(samples, minutes);
}

if (process.argv.includes('--help')) {
  console.log(USAGE);
} else if (process.argv.includes('--table')) {
  tableFromCsv(process.argv[process.argv.indexOf('--table') + 1]!, arg('minutes', 30));
} else if (process.argv.includes('--clients')) {
  process.once('message', (job) => void clients(job as ClientJob));
} else {
  await main();
}
