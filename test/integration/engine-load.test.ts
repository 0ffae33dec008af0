/**
 * Issue 7's bound "one slow or failing VM never stalls the others or the API (no event-loop stall
 * > 100 ms under load)", on this machine's real parts: real libvirtd with four real TCG domains,
 * the real LibvirtInventory, a real SQLite file, the real API over real HTTP from a separate
 * process, move_pages on the real QEMU processes, and two busy child processes loading the CPUs.
 *
 * The bound is measured by the engine's own LoopStallSampler (src/daemon/loop-stall.ts): the main
 * thread's on-CPU time between two event-loop turns, so the host's noise (2 shared cores,
 * hypervisor steal, the CPU hogs) is not counted against vmtier, while any synchronous work of
 * vmtier's — JS, GC, system calls on the main thread — is.
 *
 * Stand-ins, named as such: access counts come from the REPLAY tracker (no kernel tracker can run
 * on a QEMU process here, see engine.test.ts), and this one-node host demotes to node 0. The
 * failing VM is real failure handling on a real fault: its QEMU pid file (in the pid directory
 * the engine's inventory reads) names another domain's QEMU, which the inventory refuses
 * (PID_UNTRUSTED) every round, so that VM fails and backs off round after round.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { buildApi } from '../../src/api/server.js';
import type { AnyFastify } from '../../src/api/context.js';
import { Engine } from '../../src/daemon/engine.js';
import { PageMap } from '../../src/daemon/page-map.js';
import { readHostTopology } from '../../src/host/topology.js';
import type { Trace } from '../../src/scan/trace.js';
import { Store } from '../../src/store/store.js';
import { createLibvirtInventory, type LibvirtInventory } from '../../src/vm/libvirt-inventory.js';
import { destroyDomains, fixtureXml, startDomain, type TestDomain } from '../helpers/domains.js';
import { apiClient, until as untilDone } from '../helpers/api-client.js';
import type { HttpLoadReport } from '../helpers/http-load.js';

const PREFIX = 'vmtier-test-a-load-';
const TOKEN = 'engine-load-token-0123456789';
const PAGE = 4096;
const dir = mkdtempSync(join(tmpdir(), 'vmtier-engine-load-'));
/** The pid directory the engine's inventory reads (libvirt's own stays untouched). */
const runDir = join(dir, 'run');
const LOAD_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'helpers', 'http-load.js');

let inventory: LibvirtInventory;
let store: Store;
let app: AnyFastify;
let url: string;
let engine: Engine | null = null;
const logLines: string[] = [];
const logger = pino({ level: 'debug' }, { write: (s: string) => void logLines.push(s) });
const children: ChildProcess[] = [];

const api = apiClient(() => url, TOKEN);
const until = <T>(ms: number, what: string, f: () => T | undefined | null | false): Promise<T> => untilDone(ms, what, f, 50);

/** A one-epoch trace replayed in a loop: every 4th page accessed in every scan, every page known. */
function quarterHotTrace(pages: number): Trace {
  const hot = Uint32Array.from({ length: pages / 4 }, (_, i) => i * 4);
  return { epochs: 1, pages, accessed: [hot], known: new Uint8Array(pages).fill(1), vms: [] };
}

function exited(c: ChildProcess): Promise<void> {
  return new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function domain(tag: string, memMiB?: number): Promise<TestDomain> {
  const name = `${PREFIX}${tag}-${Math.random().toString(36).slice(2, 7)}`;
  let xml = fixtureXml('two-cells-memfd.xml', name);
  if (memMiB) {
    xml = xml
      .replace(/<memory unit='MiB'>\d+<\/memory>/, `<memory unit='MiB'>${memMiB}</memory>`)
      .replace(/<cell id='0' cpus='0-1' memory='\d+'/, `<cell id='0' cpus='0-1' memory='${memMiB / 2}'`)
      .replace(/<cell id='1' memory='\d+'/, `<cell id='1' memory='${memMiB / 2}'`);
  }
  return startDomain('two-cells-memfd.xml', PREFIX, { xml });
}

before(async () => {
  await destroyDomains(PREFIX);
  mkdirSync(runDir);
  store = Store.open(join(dir, 'vmtier.db'));
  inventory = createLibvirtInventory({ uri: 'qemu:///system', logger, runDir });
  app = await buildApi({ inventory, store, token: TOKEN, logger, readHost: () => readHostTopology() });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.all(children.map(exited));
  await engine?.stop();
  await destroyDomains(PREFIX);
  await app?.close();
  await inventory?.close();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('four VMs (one failing, one destroyed mid-round), API clients and CPU hogs: no on-CPU event-loop stall of 100 ms', async () => {
  // big: 1 GiB, every page in the trace (262144 pages of bookkeeping and decision per round);
  // small: a second healthy VM; failing: refused every round; doomed: destroyed mid-round.
  const [big, small, failing, doomed] = await Promise.all([domain('big', 1024), domain('small'), domain('failing'), domain('doomed')]);
  for (const d of [big, small, doomed]) writeFileSync(join(runDir, `${d.name}.pid`), `${d.pid}\n`);
  writeFileSync(join(runDir, `${failing.name}.pid`), `${big.pid}\n`);
  await new Promise((r) => setTimeout(r, 1000));
  const bigPages = PageMap.fromNumaMap(await inventory.numaMap(big.uuid)).totalPages;
  assert.equal(bigPages, (1024 * 2 ** 20) / PAGE);

  const tier = {
    mode: 'tier',
    scan: { intervalMs: 50, scansPerRound: 2, autoTune: false },
    thresholds: { coldConfirmRounds: 1, hotConfirmRounds: 1 },
    dram: { maxBytes: 4096 },
    migration: { maxMBps: 1000 },
  };
  for (const d of [big, small, failing]) assert.equal((await api('PUT', `/v1/vms/${d.uuid}/policy`, tier)).status, 200);
  // Long paced rounds (4 scans x 500 ms) so the destroy lands inside one.
  assert.equal((await api('PUT', `/v1/vms/${doomed.uuid}/policy`, { ...tier, scan: { intervalMs: 500, scansPerRound: 4, autoTune: false } })).status, 200);

  // Two CPU hogs on the two cores from the start.
  for (let i = 0; i < 2; i++) children.push(spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  engine = new Engine({
    inventory,
    store,
    logger,
    registry: app.vmtier.metrics,
    readHost: () => readHostTopology(),
    manage: (d) => d.name.startsWith(PREFIX),
    tracker: 'replay',
    trackerOptions: { replay: { trace: quarterHotTrace(bigPages), loop: true, paced: true } },
    targetNodes: { slow: 0 },
    resyncMs: 500,
    idleMs: 200,
    backoff: { baseMs: 200, maxMs: 1000 },
  });
  app.vmtier.engine = engine;
  assert.ok(engine.loopStalls, 'the engine samples its event loop on this kernel');
  await engine.start();
  // API clients once every VM is managed (before that, per-VM engine status is rightly a 404).
  const t0 = Date.now();
  const paths = [
    '/v1/engine',
    `/v1/vms/${big.uuid}/history?from=${t0 - 60_000}&to=${t0 + 600_000}&step=1000`,
    '/metrics',
    `/v1/vms/${small.uuid}/engine`,
    `/v1/vms/${failing.uuid}/engine`,
  ];
  const load = fork(LOAD_SCRIPT, [JSON.stringify({ url, token: TOKEN, paths, concurrency: 4 })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(load);
  const report = new Promise<HttpLoadReport>((resolve) => load.on('message', (m: any) => m.requests && resolve(m)));
  await new Promise<void>((resolve) => load.once('message', () => resolve()));

  const e = engine;
  const vm = (d: TestDomain) => e.vm(d.uuid);

  // Every VM under way: the healthy ones completed a round, the failing one failed, the doomed one runs.
  await until(60_000, 'every VM under way', () =>
    (vm(big)?.rounds ?? 0) >= 1 && (vm(small)?.rounds ?? 0) >= 1 && (vm(failing)?.failures ?? 0) >= 1 && (vm(doomed)?.rounds ?? 0) >= 1);
  const r0 = { big: vm(big)!.rounds, small: vm(small)!.rounds };
  const fail0 = logLines.filter((l) => l.includes(failing.uuid) && l.includes('round failed')).length;

  // Destroy the doomed VM inside a round, while the others keep going.
  await until(10_000, 'the doomed VM inside a round', () => vm(doomed)?.state === 'running');
  const destroyedAt = Date.now();
  await doomed.destroy();
  const endedMs = (await until(10_000, 'the doomed VM\'s loop ended', () => (vm(doomed) === null ? Date.now() : null))) - destroyedAt;

  const w0 = Date.now();
  await until(120_000, 'three more rounds of each healthy VM, more failures, 8 s', () =>
    vm(big)!.rounds >= r0.big + 3 &&
    vm(small)!.rounds >= r0.small + 3 &&
    logLines.filter((l) => l.includes(failing.uuid) && l.includes('round failed')).length >= fail0 + 2 &&
    Date.now() - w0 >= 8000);

  const metrics = await api('GET', '/metrics');
  const failingStatus = await api('GET', `/v1/vms/${failing.uuid}/engine`);
  load.send('stop');
  const { requests } = await report;
  for (const c of children.splice(0)) {
    c.kill('SIGKILL');
    await exited(c);
  }
  const stalls = e.loopStalls!.summary();
  const bigNow = vm(big)!;
  const smallNow = vm(small)!;
  const failingNow = vm(failing)!;
  const loadAvg = loadavg()[0]!;
  const decisions = (await api('GET', '/v1/engine')).body.decisions as { maxBatchVms: number; jointRounds: number; soloRounds: number };
  await e.stop();
  engine = null;

  // Figures first, so a failure still reports them.
  const ms = requests.map((r) => r.ms).sort((a, b) => a - b);
  const seconds = (Date.now() - t0) / 1000;
  console.log(
    `# event loop under load (host): main thread on-CPU max ${stalls.cpuMaxMs.toFixed(1)} ms per gap (bound 100 ms), ` +
      `held (on CPU or asleep: system calls, GC waiting for its helper threads) max ${stalls.heldMaxMs.toFixed(1)} ms, wall max ${stalls.wallMaxMs.toFixed(1)} ms, ` +
      `run-queue wait max ${stalls.waitMaxMs.toFixed(1)} ms; ${stalls.gaps} gaps of a ${e.loopStalls!.intervalMs} ms timer over ${seconds.toFixed(0)} s; load ${loadAvg.toFixed(1)}`,
  );
  console.log(
    `# API under load (host): ${requests.length} requests from 4 clients, wall latency p50 ${pct(ms, 50).toFixed(1)} ms, ` +
      `p99 ${pct(ms, 99).toFixed(1)} ms, max ${ms[ms.length - 1]!.toFixed(1)} ms`,
  );
  console.log(
    `# VMs under load (host): 1 GiB VM ${bigNow.rounds} rounds (last ${bigNow.lastRound!.durationMs.toFixed(0)} ms), ` +
      `384 MiB VM ${smallNow.rounds} rounds, failing VM ${failingNow.failures} failures in a row (${failingNow.lastError?.code}), ` +
      `destroyed VM's loop ended ${endedMs} ms after virsh destroy; host decisions: ${decisions.jointRounds} VM rounds decided jointly, ${decisions.soloRounds} alone, at most ${decisions.maxBatchVms} VMs per call`,
  );
  const worst = stalls.worst.map((g) => `${g.cpuMs.toFixed(1)}/${g.wallMs.toFixed(1)}`).join(' ');
  const phases = logLines
    .filter((l) => l.includes(big.uuid) && l.includes('"msg":"round"'))
    .map((l) => JSON.stringify({ ...JSON.parse(l).phasesMs }))
    .join(' ');

  // The bound: no gap between two event-loop turns held 100 ms of the main thread's CPU.
  assert.ok(stalls.gaps >= seconds * 2, `the sampler ran throughout (${stalls.gaps} gaps in ${seconds.toFixed(0)} s)`);
  assert.ok(stalls.cpuMaxMs < 100, `event loop held ${stalls.cpuMaxMs.toFixed(1)} ms on CPU; worst gaps cpu/wall ms: ${worst}; 1 GiB rounds' phases (ms): ${phases}`);
  assert.equal(stalls.stalls, 0);
  const gauge = /^vmtier_event_loop_blocked_max_seconds (\S+)$/m.exec(metrics.body as string);
  assert.ok(gauge && Number(gauge[1]) > 0 && Number(gauge[1]) < 0.1, `/metrics exports the same bound: ${gauge?.[1]}`);

  // The API answered every request, including about the failing VM.
  assert.ok(requests.length >= 50, `API clients made ${requests.length} requests`);
  const bad = requests.filter((r) => r.status !== 200);
  assert.equal(bad.length, 0, `non-200 answers: ${JSON.stringify(bad.slice(0, 5))}`);
  for (const p of paths) assert.ok(requests.some((r) => r.path === p), `requested ${p}`);
  assert.equal(failingStatus.status, 200);
  assert.equal(failingStatus.body.lastError.code, 'PID_UNTRUSTED');

  // One decision for the host: the two healthy tiered VMs were decided together in one policy call.
  assert.ok(decisions.maxBatchVms >= 2 && decisions.jointRounds >= 2, `joint decisions: ${JSON.stringify(decisions)}`);
  assert.ok(bigNow.lastRound!.decidedWithVms >= 1);

  // The other VMs kept completing rounds while one failed and one was destroyed.
  assert.equal(bigNow.lastRound!.trackedBytes, 1024 * 2 ** 20);
  assert.ok(bigNow.totals.demote.requested > 0, 'the 1 GiB VM moved pages');
  assert.ok(bigNow.failures === 0 && smallNow.failures === 0, 'no healthy VM failed a round');
  assert.equal(failingNow.rounds, 0, 'the failing VM never completed a round');
  assert.ok(failingNow.failures >= 1 && failingNow.state !== 'stopped', 'the failing VM keeps retrying with backoff');
  assert.ok(endedMs < 10_000);
  const doomedLines = logLines.filter((l) => l.includes(doomed.uuid));
  assert.ok(doomedLines.some((l) => l.includes('"msg":"loop ended"')));
  assert.equal(doomedLines.filter((l) => /"level":(40|50|60)/.test(l)).length, 0, 'no warning or error for the destroyed VM');
});
