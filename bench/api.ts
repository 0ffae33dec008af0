/**
 * bench:api — the HTTP API under load on loopback, with a store of N VMs x H hours of 10-second
 * rounds (default 100 x 24 h, 4 series per VM: 2 guest nodes x 2 host nodes). The store is
 * generated through the store's own ingest (`Store.insertSamples`, 30 rounds of all VMs per call), then kept in a file for the next run. A real `vmtier serve`
 * process (engine on, managing no domain) answers; the load comes from a separate process
 * (keep-alive HTTP/1.1 sockets reading into a reused buffer, or `--client http` for node's http
 * Agent; `--connections` clients) for `--seconds` per endpoint:
 *   history of every VM's last 24 h at 5 m as a control plane's poller asks for it (now - 24 h to
 *   now, the clock advancing, so the window slides and every request differs), the same with every
 *   request missing the kept whole buckets, the same from raw rows (?source=raw, never kept),
 *   /v1/vms, /v1/engine, /metrics. No round is ingested during the run (the served engine manages
 *   no domain), so the poller's kept whole buckets stay valid; the misses row is the cost after
 *   a VM's round invalidated them.
 * The poller and misses phases again with `Accept-Encoding: gzip` (a control plane's HTTP client
 * sends it), and the poller open loop at `--rate` requests/s offered (default 1000, the goal of
 * issue 17), identity and gzip, timed from each request's scheduled start.
 * Prints requests/s, p50 and p99 per endpoint, the CPU time per request of the serving process
 * and of the load generator (both share this machine's cores), the ratios to raw rows, the store
 * size per VM per day, and /metrics latency alone. `--only TEXT` runs the phases whose name
 * contains TEXT; `--profile DIR` writes V8 CPU profiles of the server and the load generators.
 *
 *   npm run bench:api [-- --vms 100 --hours 24 --seconds 5 --connections 20 --rate 1000 --db /tmp/x.db --only poller --profile /tmp/p]
 */
import { fork, spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store, type HotnessSample } from '../src/store/store.js';

interface LoadJob {
  url: string;
  token: string;
  /** Requested round-robin; @FROM@ and @TO@ become (now - 24 h, now) on a clock starting at `clockStart`. */
  paths: string[];
  clockStart?: number;
  connections: number;
  durationMs: number;
  /** 'http': node's http Agent; 'lean': keep-alive sockets reading into one reused buffer (see leanClient). */
  client: 'http' | 'lean';
  /** Send `Accept-Encoding: gzip`, as Go's and Python's HTTP clients do by default. */
  gzip?: boolean;
  /**
   * Open loop: requests scheduled at this many per second whatever the answers, each timed from
   * its scheduled start (a request waiting for a free connection counts its wait), so the
   * latencies are those at this offered rate, not those of a closed loop saturating the server.
   */
  ratePerSec?: number;
}

interface LoadResult {
  ms: number[];
  statuses: Record<string, number>;
  elapsedMs: number;
  /** The load generator's own CPU time (user + system, ms) over the phase. */
  cpuMs: number;
}

const TOKEN = 'bench-api-token-0123456789abcdef';
const ROUND_MS = 10_000;
const DAY_MS = 86_400_000;
const repoRoot = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

function arg(name: string, dflt: number): number;
function arg(name: string, dflt: string): string;
function arg(name: string, dflt: number | string): number | string {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  return typeof dflt === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1]!;
}

/** The load generator (child process): keep-alive clients requesting `paths` round-robin. */
async function worker(job: LoadJob): Promise<LoadResult> {
  const u = new URL(job.url);
  const agent = new Agent({ keepAlive: true, maxSockets: job.connections });
  const ms: number[] = [];
  const statuses: Record<string, number> = {};
  const end = performance.now() + job.durationMs;
  let next = 0;
  const headers: Record<string, string> = { authorization: `Bearer ${job.token}`, ...(job.gzip ? { 'accept-encoding': 'gzip' } : {}) };
  const one = job.client === 'lean' ? leanClients(u, headers, job.connections) : (path: string) =>
    new Promise<number>((resolve) => {
      const req = request({ agent, host: u.hostname, port: u.port, path, headers }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', () => resolve(0));
      req.end();
    });
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const pathAt = (at: number) => {
    const path = job.paths[next++ % job.paths.length]!;
    if (job.clockStart === undefined) return path;
    const now = Math.round(job.clockStart + (at - t0));
    return path.replace('@FROM@', String(now - DAY_MS)).replace('@TO@', String(now));
  };
  if (job.ratePerSec !== undefined) {
    const gapMs = 1000 / job.ratePerSec;
    const waiting: number[] = [];
    let scheduled = 0;
    let inFlight = 0;
    await new Promise<void>((done) => {
      const pump = () => {
        const now = performance.now();
        while (t0 + scheduled * gapMs <= Math.min(now, end)) waiting.push(t0 + scheduled++ * gapMs);
        while (waiting.length > 0 && inFlight < job.connections) {
          const at = waiting.shift()!;
          inFlight++;
          void one(pathAt(at)).then((status) => {
            ms.push(performance.now() - at);
            statuses[status] = (statuses[status] ?? 0) + 1;
            inFlight--;
            pump();
          });
        }
        if (now >= end && inFlight === 0 && waiting.length === 0) {
          clearInterval(timer);
          done();
        }
      };
      const timer = setInterval(pump, 1);
    });
    const cpu = process.cpuUsage(cpu0);
    agent.destroy();
    return { ms, statuses, elapsedMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 };
  }
  await Promise.all(
    Array.from({ length: job.connections }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        const status = await one(pathAt(s));
        ms.push(performance.now() - s);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  agent.destroy();
  return { ms, statuses, elapsedMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 };
}

/**
 * Keep-alive HTTP/1.1 clients that read every answer whole into one reused buffer (net's `onread`)
 * and parse only the status line and Content-Length: node's http client allocates a buffer per
 * read and runs a stream per answer, as much CPU per 225 KB answer as the server spends. Each
 * call takes a free connection (there are as many callers as connections). Answers without a
 * Content-Length count as status 0.
 */
function leanClients(u: URL, headers: Record<string, string>, n: number): (path: string) => Promise<number> {
  const headerText = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  interface Conn { write: (path: string) => void; pending: ((status: number) => void) | null }
  const free: Conn[] = [];
  const scratch = Buffer.allocUnsafe(1 << 18);
  for (let i = 0; i < n; i++) {
    let head = '';
    let status = 0;
    let bodyLeft = -1;
    const c: Conn = { write: () => {}, pending: null };
    const finish = (st: number) => {
      const p = c.pending!;
      c.pending = null;
      head = '';
      bodyLeft = -1;
      free.push(c);
      p(st);
    };
    const sock = connect({
      host: u.hostname, port: Number(u.port), noDelay: true,
      onread: {
        buffer: scratch,
        callback: (nread: number, buf: Uint8Array) => {
          let off = 0;
          while (off < nread) {
            if (bodyLeft < 0) {
              // Headers are small and arrive in the first read(s): kept as text until the blank line.
              const text = head + Buffer.from(buf.buffer, buf.byteOffset + off, nread - off).toString('latin1');
              const end = text.indexOf('\r\n\r\n');
              if (end < 0) { head = text; return true; }
              status = Number(text.slice(9, 12));
              const len = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
              if (!len) { sock.destroy(); finish(0); return false; }
              bodyLeft = Number(len[1]);
              off += end + 4 - head.length;
              head = '';
            }
            const take = Math.min(bodyLeft, nread - off);
            bodyLeft -= take;
            off += take;
            if (bodyLeft === 0) finish(status);
          }
          return true;
        },
      },
    });
    c.write = (path) => sock.write(`GET ${path} HTTP/1.1\r\nHost: ${u.host}\r\n${headerText}\r\n`);
    sock.on('error', () => c.pending && finish(0));
    free.push(c);
  }
  return (path) => new Promise<number>((resolve) => {
    const c = free.pop()!;
    c.pending = resolve;
    c.write(path);
  });
}

function vmUuid(i: number): string {
  return `b0000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

/** Writes the store through Store.insertSamples, one round of every VM per call. */
function generate(path: string, vms: number, hours: number): void {
  const store = Store.open(path);
  const rounds = (hours * 3600_000) / ROUND_MS;
  const end = Math.floor(Date.now() / ROUND_MS) * ROUND_MS;
  const t0 = end - rounds * ROUND_MS;
  for (let v = 0; v < vms; v++) store.recordVmSeen(vmUuid(v), `bench-vm-${v}`, t0);
  const started = performance.now();
  const gib = 2 ** 30;
  // 30 rounds (5 minutes of every VM) per call: a backfill, one transaction each.
  let batch: HotnessSample[] = [];
  for (let r = 0; r < rounds; r++) {
    const t = t0 + r * ROUND_MS;
    for (let v = 0; v < vms; v++) {
      const phase = Math.sin((r + v * 37) / 360);
      for (const [g, h, tier] of [[0, 0, 'top'], [0, 1, 'slow'], [1, 0, 'top'], [1, 1, 'slow']] as const) {
        const hot = Math.round((0.2 + 0.1 * phase) * gib / 4096) * 4096;
        batch.push({
          t, vmUuid: vmUuid(v), guestNode: g, hostNode: h, hostTier: tier,
          hotBytes: h === 0 ? hot : hot >> 3, warmBytes: 64 << 20, coldBytes: gib - hot, scannedBytes: 2 * gib,
          scanMs: 4 + ((r + v) % 7), movedBytes: (r + v) % 6 === 0 ? 4096 * ((r * 31 + v) % 2000) : 0, failures: (r + v) % 97 === 0 ? 1 : 0,
        });
      }
    }
    if (r % 30 === 29 || r === rounds - 1) {
      store.insertSamples(batch);
      batch = [];
    }
    if (r % 1000 === 0) process.stderr.write(`\rgenerating: ${r}/${rounds} rounds (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  }
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  store.close();
  process.stderr.write(`\rgenerated ${rounds} rounds x ${vms} VMs x 4 series in ${((performance.now() - started) / 1000).toFixed(0)} s through Store.insertSamples\n`);
}

/** CPU time (user + system, ms) the process has used: /proc/<pid>/stat fields 14 and 15, in clock ticks of 10 ms. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function pct(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}

/** `--profile DIR`: V8 CPU profiles of the serving process and of each load generator, written into DIR at their exit. */
function profileArgs(who: string): string[] {
  const dir = arg('profile', '');
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${who}-${Date.now()}.cpuprofile`] : [];
}

async function load(job: LoadJob): Promise<LoadResult> {
  const child = fork(fileURLToPath(import.meta.url), ['--worker'], { execArgv: profileArgs('load'), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve(m as LoadResult));
    child.once('error', reject);
    child.send(job);
  });
}

async function main(): Promise<void> {
  const vms = arg('vms', 100);
  const hours = arg('hours', 24);
  const seconds = arg('seconds', 5);
  const connections = arg('connections', 20);
  const db = arg('db', join(tmpdir(), `vmtier-bench-api-${vms}x${hours}h-v2.db`));
  if (!existsSync(db)) generate(db, vms, hours);
  const probe = Store.open(db);
  const dataEnd = (probe.db.prepare('SELECT MAX(last_t) AS t FROM series').get() as { t: number }).t + 1;
  const rows = (probe.db.prepare('SELECT COUNT(*) AS n FROM samples').get() as { n: number }).n;
  const rollupRows = (probe.db.prepare('SELECT COUNT(*) AS n FROM rollups').get() as { n: number }).n;
  const vmCount = (probe.db.prepare('SELECT COUNT(DISTINCT vm_uuid) AS n FROM series').get() as { n: number }).n;
  const days = hours / 24;
  const bytes = statSync(db).size + (existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 0);
  probe.close();

  const served = spawn(process.execPath, [...profileArgs('serve'), join(repoRoot, 'bin', 'vmtier.js'), 'serve', '--db', db, '--listen', '127.0.0.1:0', '--manage', '^vmtier-bench-api-manages-nothing$'], {
    env: { ...process.env, VMTIER_TOKEN: TOKEN, VMTIER_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  served.stdout!.on('data', (b) => (out = (out + b).slice(-100_000)));
  const deadline = Date.now() + 60_000;
  while (!/"url":"(http:[^"]+)"/.test(out)) {
    if (Date.now() > deadline || served.exitCode !== null) throw new Error(`serve did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const url = /"url":"(http:[^"]+)"/.exec(out)![1]!;
  try {
    // A control plane's poller: every VM's last 24 h at 5 m, "now" advancing with the clock from
    // just after the newest round, so every request has its own from/to (ms) and the window slides.
    const poller = (source: string) => Array.from({ length: vmCount }, (_, i) => `/v1/vms/${vmUuid(i)}/history?from=@FROM@&to=@TO@&step=5m${source}`);
    // The same answers with the kept whole buckets never reusable: 24 h windows ending 0..23 steps
    // of 5 m back, per VM (2,400 ranges of ~230 KB each, far over the 64 MiB kept, cycled in order).
    const misses = Array.from({ length: vmCount * 24 }, (_, i) => {
      const to = dataEnd - 3000 - Math.floor(i / vmCount) * 300_000;
      return `/v1/vms/${vmUuid(i % vmCount)}/history?from=${to - DAY_MS}&to=${to}&step=5m`;
    });
    // A poller in steady state asked for each VM a few seconds earlier: every VM once, in order.
    // Before every poller phase, as a phase before it (the misses) may have cycled everything out
    // of the kept text: otherwise the first 100 requests of the phase queue behind 100 rebuilds,
    // which a real poller meets spread over its VMs' rounds, not at once (the misses row is that cost).
    const warmPoller = async () => {
      for (let i = 0; i < vmCount; i++) {
        const now = dataEnd - 5000;
        await (await fetch(`${url}/v1/vms/${vmUuid(i)}/history?from=${now - DAY_MS}&to=${now}&step=5m`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
      }
    };
    await warmPoller();
    const metricsAlone: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t = performance.now();
      const r = await fetch(`${url}/metrics`);
      await r.text();
      metricsAlone.push(performance.now() - t);
    }
    const rate = arg('rate', 1000);
    const phases: Array<[string, string[], number | undefined, Pick<LoadJob, 'gzip' | 'ratePerSec'>?]> = [
      ['history poller 24 h @ 5m', poller(''), dataEnd],
      ['history 24 h @ 5m, all misses', misses, undefined],
      ['history 24 h @ 5m, raw rows', poller('&source=raw'), dataEnd],
      ['history poller, gzip', poller(''), dataEnd, { gzip: true }],
      ['history misses, gzip', misses, undefined, { gzip: true }],
      [`history poller, ${rate}/s offered`, poller(''), dataEnd, { ratePerSec: rate }],
      [`history poller, gzip, ${rate}/s offered`, poller(''), dataEnd, { gzip: true, ratePerSec: rate }],
      ['/v1/vms', ['/v1/vms'], undefined],
      ['/v1/engine', ['/v1/engine'], undefined],
      ['/metrics', ['/metrics'], undefined],
    ];
    const only = arg('only', '');
    const results: Array<{ name: string; rps: number; p50: number; p99: number; n: number; bad: number; cpu: number; loadCpu: number }> = [];
    const loadBefore = (await import('node:os')).loadavg()[0]!;
    for (const [name, paths, clockStart, opts] of phases) {
      if (only && !name.includes(only)) continue;
      if (clockStart !== undefined) await warmPoller();
      const cpu0 = cpuMs(served.pid!);
      const r = await load({ url, token: TOKEN, paths, clockStart, connections, durationMs: seconds * 1000, client: arg('client', 'lean') === 'http' ? 'http' : 'lean', ...opts });
      const cpu = cpuMs(served.pid!) - cpu0;
      const sorted = r.ms.sort((a, b) => a - b);
      const bad = Object.entries(r.statuses).filter(([s]) => s !== '200').reduce((a, [, n]) => a + n, 0);
      results.push({ name, n: sorted.length, rps: sorted.length / (r.elapsedMs / 1000), p50: pct(sorted, 50), p99: pct(sorted, 99), bad, cpu: cpu / sorted.length, loadCpu: r.cpuMs / sorted.length });
    }
    const m = metricsAlone.sort((a, b) => a - b);
    console.log(`bench:api on this host: ${vmCount} VMs x ${hours} h of 10-s rounds (${rows.toLocaleString()} raw rows, ${rollupRows.toLocaleString()} rollup cells), ` +
      `${connections} keep-alive connections from a separate process, ${seconds} s per endpoint, 1-min load average ${loadBefore.toFixed(1)} before / ${(await import('node:os')).loadavg()[0]!.toFixed(1)} after`);
    console.log(`store: ${(bytes / 2 ** 20).toFixed(1)} MiB = ${(bytes / vmCount / days / 2 ** 20).toFixed(2)} MiB per VM per day (raw rows + rollups + indexes)`);
    // Server CPU per request (the serving process's user + system time over the phase / requests)
    // depends far less on what else runs on the machine than the latencies do.
    console.log('endpoint                          requests     req/s    p50 ms    p99 ms  non-200  server CPU ms/req  load gen CPU ms/req');
    for (const r of results) {
      console.log(`${r.name.padEnd(32)} ${String(r.n).padStart(9)} ${r.rps.toFixed(0).padStart(9)} ${r.p50.toFixed(2).padStart(9)} ${r.p99.toFixed(2).padStart(9)} ${String(r.bad).padStart(8)} ${r.cpu.toFixed(2).padStart(18)} ${r.loadCpu.toFixed(2).padStart(20)}`);
    }
    const [poll, miss, raw] = [results[0]!, results[1]!, results[2]!];
    if (!only) {
    const ratio = (x: typeof poll, what: string) =>
      `${what} vs raw rows in this run: ${(x.rps / raw.rps).toFixed(1)}x the requests/s, p50 ${(raw.p50 / x.p50).toFixed(1)}x and p99 ${(raw.p99 / x.p99).toFixed(1)}x lower`;
    console.log(ratio(poll, 'history poller'));
    console.log(ratio(miss, 'history misses (rollups, nothing kept)'));
    console.log(ratio(results[3]!, 'history poller, gzip'));
    }
    console.log(`/metrics alone (${vmCount} VMs, sequential): p50 ${pct(m, 50).toFixed(2)} ms, max ${m[m.length - 1]!.toFixed(2)} ms`);
  } finally {
    served.kill('SIGTERM');
  }
}

if (process.argv.includes('--worker')) {
  process.once('message', async (job) => {
    const r = await worker(job as LoadJob);
    process.send!(r, () => process.exit(0));
  });
} else {
  await main();
}
