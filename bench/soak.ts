/**
 * bench:soak — `vmtier serve` for a long run (default 30 minutes) on this host: the engine on 8
 * real TCG domains (sparse: 384 MiB of memfd RAM each, little of it ever touched) observing
 * every round (the kmod tracker cannot load here, so rounds record placement: real move_pages
 * queries on the real QEMU processes), API clients in a separate process polling every route
 * and changing policies, and every 10 s the service's RSS, open file descriptors and SQLite
 * size (file + WAL). Prints each one's least-squares slope per hour over the run after a
 * warm-up, next to its first and last value. Not part of `npm test`.
 *
 *   npm run bench:soak [-- --minutes 30 --domains 8]
 */
import { fork, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { destroyDomains, startDomain, type TestDomain } from '../test/helpers/domains.js';

const PREFIX = 'vmtier-test-soak-';
const TOKEN = 'bench-soak-token-0123456789abcdef';
const repoRoot = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
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

async function main(): Promise<void> {
  const minutes = arg('minutes', 30);
  const nDomains = arg('domains', 8);
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
    served = spawn(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'serve', '--db', db, '--listen', '127.0.0.1:0', '--tracker', 'kmod', '--manage', `^${PREFIX}`], {
      env: { ...process.env, VMTIER_TOKEN: TOKEN, VMTIER_LOG_LEVEL: 'info' },
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
    const samples: Array<{ t: number; rss: number; anon: number; file: number; heapUsed: number; heapTotal: number; external: number; fds: number; db: number }> = [];
    // The main thread's V8 heap and external memory, from prom-client's default metrics on
    // /metrics (vmtier_ prefix); the VM loops' worker threads have their own isolates, which
    // these do not cover (RssAnon below does).
    const gauge = (text: string, name: string) => Number(new RegExp(`^${name} ([0-9.e+]+)`, 'm').exec(text)?.[1] ?? NaN);
    const heap = async () => {
      try {
        const r = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
        const text = await r.text();
        return { heapUsed: gauge(text, 'vmtier_nodejs_heap_size_used_bytes'), heapTotal: gauge(text, 'vmtier_nodejs_heap_size_total_bytes'), external: gauge(text, 'vmtier_nodejs_external_memory_bytes') };
      } catch {
        return { heapUsed: NaN, heapTotal: NaN, external: NaN };
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
      const size = statSync(db).size + (existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 0);
      samples.push({ t: Date.now() - t0, rss, anon, file, ...h, fds, db: size });
      process.stderr.write(`\r${((Date.now() - t0) / 60_000).toFixed(1)}/${minutes} min: RSS ${(rss / 2 ** 20).toFixed(1)} MiB, heap ${(h.heapUsed / 2 ** 20).toFixed(1)} MiB, ${fds} fds, db ${(size / 2 ** 20).toFixed(2)} MiB, ${rounds} rounds   `);
      await new Promise((r) => setTimeout(r, Math.min(10_000, Math.max(0, end - Date.now()))));
    }
    process.stderr.write('\n');
    client.send('stop');
    const counts = await new Promise<Record<string, number>>((resolve) => client.once('message', (m) => resolve(m as Record<string, number>)));
    // The first fifth (at least one minute) is warm-up: JIT, caches, the WAL reaching its size.
    const warm = Math.max(60_000, (minutes * 60_000) / 5);
    const steady = samples.filter((s) => s.t >= warm);
    const fmt = (name: string, unit: string, scale: number, pick: (s: (typeof samples)[number]) => number) => {
      const first = pick(steady[0] ?? samples[0]!) / scale;
      const last = pick(samples[samples.length - 1]!) / scale;
      const slope = slopePerHour(steady.map((s) => [s.t, pick(s)])) / scale;
      // The second half of the run on its own: settling shows as a slope that falls toward 0.
      const half = slopePerHour(samples.filter((s) => s.t >= (minutes * 60_000) / 2).map((s) => [s.t, pick(s)])) / scale;
      console.log(`${name.padEnd(14)} ${first.toFixed(2).padStart(10)} ${last.toFixed(2).padStart(10)} ${slope.toFixed(3).padStart(12)} ${half.toFixed(3).padStart(12)} ${unit}/h`);
    };
    console.log(`bench:soak on this host: ${minutes} min, ${nDomains} TCG domains (engine observing, placement rounds), 4 API clients; ` +
      `${rounds} rounds (${roundFailures} failed), API answers ${JSON.stringify(counts)}; slopes over the ${steady.length} samples after ${(warm / 60_000).toFixed(0)} min of warm-up`);
    console.log('               first (warm)      last        slope  2nd-half slope');
    fmt('RSS', 'MiB', 2 ** 20, (s) => s.rss);
    fmt('  RssAnon', 'MiB', 2 ** 20, (s) => s.anon);
    fmt('  RssFile+Shm', 'MiB', 2 ** 20, (s) => s.file);
    fmt('heap used', 'MiB', 2 ** 20, (s) => s.heapUsed);
    fmt('heap total', 'MiB', 2 ** 20, (s) => s.heapTotal);
    fmt('external', 'MiB', 2 ** 20, (s) => s.external);
    fmt('open fds', 'fds', 1, (s) => s.fds);
    fmt('SQLite + WAL', 'MiB', 2 ** 20, (s) => s.db);
    const csv = process.env.VMTIER_SOAK_CSV;
    if (csv) writeFileSync(csv, ['t_ms,rss,rss_anon,rss_file,heap_used,heap_total,external,fds,db', ...samples.map((s) => [s.t, s.rss, s.anon, s.file, s.heapUsed, s.heapTotal, s.external, s.fds, s.db].join(','))].join('\n') + '\n');
  } finally {
    served?.kill('SIGTERM');
    await destroyDomains(PREFIX);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--clients')) {
  process.once('message', (job) => void clients(job as ClientJob));
} else {
  await main();
}
