/**
 * Runtime faults from move_pages(2) (issue 17 item 4): EBUSY, EFAULT (per page) and ENOMEM, EPERM
 * (whole call), each injected through the syscall layer's FAULT INJECTION
 * (src/sys/fault-injection.ts, VMTIER_INJECT_MOVE_PAGES) while the real Engine tiers a real TCG
 * domain on the system libvirtd (replay tracker, demotion to node 0, as test/integration/engine.test.ts).
 * For each: the API keeps answering, every failure is counted (per-page outcome classes, or failed
 * rounds for a failing call), and a failing call is retried with backoff, never in a hot loop.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { buildApi } from '../../src/api/server.js';
import type { AnyFastify } from '../../src/api/context.js';
import { Engine } from '../../src/daemon/engine.js';
import { PageMap } from '../../src/daemon/page-map.js';
import { readHostTopology } from '../../src/host/topology.js';
import { queryPageNodes } from '../../src/sys/syscalls.js';
import type { Trace } from '../../src/scan/trace.js';
import { Store } from '../../src/store/store.js';
import { MOVE_PAGES_INJECT_ENV } from '../../src/sys/fault-injection.js';
import { createLibvirtInventory, type LibvirtInventory } from '../../src/vm/libvirt-inventory.js';
import { destroyDomains, startDomain, type TestDomain } from '../helpers/domains.js';
import { apiClient, until } from '../helpers/api-client.js';
import { fastTierPolicy } from '../helpers/policies.js';

const PREFIX = 'vmtier-test-fault-';
const TOKEN = 'fault-test-token-0123456789abcdef';
const PAGE = 4096;
const dir = mkdtempSync(join(tmpdir(), 'vmtier-faults-'));
let store: Store;
let inventory: LibvirtInventory;
let app: AnyFastify;
let url = '';
let domain: TestDomain;
let hot: number[] = [];
let totalPages = 0;
const logLines: string[] = [];
const logger = pino({ level: 'debug' }, { write: (s: string) => void logLines.push(s) });
const http = apiClient(() => url, TOKEN);

before(async () => {
  await destroyDomains(PREFIX);
  store = Store.open(join(dir, 'vmtier.db'));
  inventory = createLibvirtInventory({ uri: 'qemu:///system', logger });
  app = await buildApi({ inventory, store, token: TOKEN, logger, readHost: () => readHostTopology() });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  domain = await startDomain('two-cells-memfd.xml', PREFIX);
  await new Promise((r) => setTimeout(r, 1500));
  const map = await inventory.numaMap(domain.uuid);
  const pm = PageMap.fromNumaMap(map);
  totalPages = pm.totalPages;
  const resident: number[] = [];
  for (const s of pm.segments) {
    const st = queryPageNodes(map.domain.pid, Array.from({ length: s.pages }, (_, i) => s.start + i * PAGE));
    st.forEach((v, i) => v >= 0 && resident.push(s.firstPage + i));
  }
  assert.ok(resident.length >= 64, `guest has resident pages (${resident.length})`);
  hot = resident.filter((_, i) => i % 2 === 0).slice(0, 128);
});

after(async () => {
  delete process.env[MOVE_PAGES_INJECT_ENV];
  await domain?.destroy();
  await destroyDomains(PREFIX);
  await app?.close();
  await inventory?.close();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

function hotTrace(): Trace {
  const known = new Uint8Array(totalPages).fill(1);
  return { epochs: 1, pages: totalPages, accessed: [Uint32Array.from([...hot].sort((a, b) => a - b))], known, vms: [] };
}

/** Tiers the domain with `errno` injected into every move for `ms`; returns its engine status and what the API did meanwhile. */
async function tierWithFault(errno: string, ms: number, slowNode = 0) {
  process.env[MOVE_PAGES_INJECT_ENV] = errno;
  const engine = new Engine({
    inventory, store, logger, registry: app.vmtier.metrics, readHost: () => readHostTopology(),
    manage: (d) => d.name === domain.name, resyncMs: 500, idleMs: 200,
    backoff: { baseMs: 400, maxMs: 1600 },
    tracker: 'replay', trackerOptions: { replay: { trace: hotTrace(), loop: true, paced: true } },
    targetNodes: { slow: slowNode },
  });
  app.vmtier.engine = engine;
  const policy = fastTierPolicy(hot.length * PAGE);
  assert.equal((await http('PUT', `/v1/vms/${domain.uuid}/policy`, policy)).status, 200);
  const logFrom = logLines.length;
  await engine.start();
  let apiOk = 0;
  let apiOther = 0;
  const t0 = Date.now();
  try {
    // At least `ms`, and on a loaded machine until three rounds ran or failed (at most 30 s).
    const enough = () => engine.vm(domain.uuid)!.rounds + engine.vm(domain.uuid)!.failures >= 3;
    while (Date.now() - t0 < ms || (!enough() && Date.now() - t0 < 30_000)) {
      const r = await http('GET', `/v1/vms/${domain.uuid}/engine`);
      if (r.status === 200) apiOk++;
      else apiOther++;
      await new Promise((res) => setTimeout(res, 200));
    }
    const st = engine.vm(domain.uuid)!;
    const failedRounds = logLines.slice(logFrom).filter((l) => l.includes('"round failed; backing off"')).length;
    return { st: structuredClone(st), apiOk, apiOther, failedRounds, seconds: (Date.now() - t0) / 1000 };
  } finally {
    await engine.stop();
    delete process.env[MOVE_PAGES_INJECT_ENV];
  }
}

// This machine has one node, so the pages already sit on any real target, and a page the kernel
// calls busy (or gives no status for) that the follow-up query finds on the target counts as moved
// (src/migrate/move.ts). The demotion target is therefore node 1, which exists only for the
// injected moves (they never reach the kernel); the query still answers node 0.
const PHANTOM_SLOW_NODE = 1;

for (const [errno, cls] of [['EBUSY', 'busy'], ['EFAULT', 'fault']] as const) {
  test(`move_pages reporting ${errno} for every page (injected): rounds go on, every page counted as ${cls}, none as moved`, async () => {
    const r = await tierWithFault(errno, 6000, PHANTOM_SLOW_NODE);
    assert.equal(r.apiOther, 0, 'the API answered every request');
    assert.ok(r.st.rounds >= 3, `rounds went on (${r.st.rounds})`);
    assert.equal(r.st.failures, 0, 'a per-page failure is not a failed round');
    const dem = r.st.totals.demote;
    assert.ok(dem.requested > 0, 'the policy asked to demote');
    assert.equal(dem.byClass[cls], dem.requested, `every requested page counted ${cls}`);
    assert.equal(dem.byClass.moved, 0);
    // Each round asks for a bounded number of moves, not a retry per failed page: the requests
    // stay within what the rounds could ask for (every cold page once per round).
    assert.ok(dem.requested <= r.st.rounds * totalPages, `${dem.requested} page requests in ${r.st.rounds} rounds`);
  });
}

test('move_pages failing with ENOMEM as a whole call (injected, target node full): counted as noMemory, rounds go on', async () => {
  const r = await tierWithFault('ENOMEM', 6000, PHANTOM_SLOW_NODE);
  assert.equal(r.apiOther, 0);
  assert.ok(r.st.rounds >= 3, `rounds went on (${r.st.rounds})`);
  assert.equal(r.st.failures, 0);
  const dem = r.st.totals.demote;
  assert.ok(dem.requested > 0);
  assert.equal(dem.byClass.noMemory, dem.requested);
});

test('move_pages failing with EPERM as a whole call (injected): each failed round counted, retried with backoff, the API keeps serving', async () => {
  const r = await tierWithFault('EPERM', 7000);
  assert.equal(r.apiOther, 0, 'the API answered every request');
  assert.ok(r.failedRounds >= 2, `failed rounds logged (${r.failedRounds})`);
  assert.equal(r.st.lastError?.code, 'KERNEL_ERROR');
  assert.match(r.st.lastError!.message, /EPERM/);
  // Backoff 400 ms doubling to 1.6 s: at most ~ seconds / 0.4 attempts, never a hot loop.
  assert.ok(r.failedRounds <= Math.ceil(r.seconds / 0.4) + 1, `${r.failedRounds} failed rounds in ${r.seconds} s`);
  assert.equal(r.st.totals.demote.byClass.moved, 0);
  const metrics = await http('GET', '/metrics');
  assert.equal(metrics.status, 200);
});

test('QEMU killed (SIGKILL) while the loop is tiering it: the loop ends as "domain gone", the engine and API keep serving', async () => {
  const engine = new Engine({
    inventory, store, logger, registry: app.vmtier.metrics, readHost: () => readHostTopology(),
    manage: (d) => d.name === domain.name, resyncMs: 500, idleMs: 200, backoff: { baseMs: 400, maxMs: 1600 },
    tracker: 'replay', trackerOptions: { replay: { trace: hotTrace(), loop: true, paced: true } },
    targetNodes: { slow: 0 },
  });
  app.vmtier.engine = engine;
  const policy = fastTierPolicy(hot.length * PAGE);
  assert.equal((await http('PUT', `/v1/vms/${domain.uuid}/policy`, policy)).status, 200);
  const pid = (await inventory.numaMap(domain.uuid)).domain.pid;
  const logFrom = logLines.length;
  await engine.start();
  try {
    await until(30_000, 'tier rounds that move pages', () => (engine.vm(domain.uuid)?.totals.demote.requested ?? 0) > 0);
    await until(10_000, 'a round in progress', () => engine.vm(domain.uuid)?.state === 'running');
    process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    await until(20_000, 'the loop for the dead domain ended', () => {
      const s = engine.vm(domain.uuid);
      return s === null || s.state === 'stopped';
    });
    // The API still serves: the engine as a whole, the listing, metrics.
    assert.equal((await http('GET', '/v1/engine')).status, 200);
    assert.equal((await http('GET', '/metrics')).status, 200);
    const list = await http('GET', '/v1/vms');
    assert.equal(list.status, 200);
    // No retry storm against the dead process: failed rounds after the kill stay few.
    await new Promise((r) => setTimeout(r, 2000));
    const after = logLines.slice(logFrom).map((l) => JSON.parse(l) as { msg?: string; time?: number });
    const failedAfterKill = after.filter((l) => l.msg === 'round failed; backing off' && (l.time ?? 0) >= killedAt).length;
    assert.ok(failedAfterKill <= 3, `${failedAfterKill} failed rounds after the kill`);
    assert.ok(engine.status().running, 'the engine is still running');
  } finally {
    await engine.stop();
  }
});
