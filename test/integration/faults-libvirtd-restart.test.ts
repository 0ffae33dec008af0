/**
 * libvirtd restarted in the middle of tiering (issue 17 item 4), on a PRIVATE libvirtd
 * (test/helpers/libvirtd.ts; the system one is shared and never touched): a real TCG domain runs
 * under it, the real Engine tiers it (replay tracker, demotion to node 0), and libvirtd is stopped
 * while rounds run, left down, then started again. The domain's QEMU outlives libvirtd; vmtier
 * keeps tiering it from what it already knows, the API answers 503 LIBVIRT_UNAVAILABLE (not a
 * 500) while the daemon is gone, reconnects with backoff (counted in the log, not a hot loop) and
 * serves the domain again afterwards.
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
import { Store } from '../../src/store/store.js';
import { createLibvirtInventory, type LibvirtInventory } from '../../src/vm/libvirt-inventory.js';
import { startDomain, type TestDomain } from '../helpers/domains.js';
import { startPrivateLibvirtd, type PrivateLibvirtd } from '../helpers/libvirtd.js';
import { apiClient, until } from '../helpers/api-client.js';
import { fastTierPolicy } from '../helpers/policies.js';

const PREFIX = 'vmtier-test-fault-lv-';
const TOKEN = 'fault-libvirtd-token-0123456789abc';
const PAGE = 4096;
const dir = mkdtempSync(join(tmpdir(), 'vmtier-faults-lv-'));
let daemon: PrivateLibvirtd;
let store: Store;
let inventory: LibvirtInventory;
let app: AnyFastify;
let engine: Engine;
let url = '';
let domain: TestDomain | null = null;
const logLines: string[] = [];
const logger = pino({ level: 'debug' }, { write: (s: string) => void logLines.push(s) });
const http = apiClient(() => url, TOKEN);

before(async () => {
  daemon = await startPrivateLibvirtd();
  // vmtier finds a session daemon's QEMU pid files under $XDG_RUNTIME_DIR (src/libvirt/pid.ts):
  // this test process looks where the private daemon writes them.
  process.env.XDG_RUNTIME_DIR = join(daemon.dir, 'run');
  store = Store.open(join(dir, 'vmtier.db'));
  inventory = createLibvirtInventory({ uri: daemon.uri, logger });
  app = await buildApi({ inventory, store, token: TOKEN, logger, readHost: () => readHostTopology() });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});

after(async () => {
  await engine?.stop();
  if (domain && !daemon.running()) await daemon.start().catch(() => undefined);
  await domain?.destroy();
  await app?.close();
  await inventory?.close();
  store?.close();
  await daemon?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

test('libvirtd stopped while rounds run and started again: tiering goes on, 503 meanwhile, reconnect with backoff', async () => {
  domain = await startDomain('two-cells-memfd.xml', PREFIX, { uri: daemon.uri });
  await new Promise((r) => setTimeout(r, 1500));
  const map = await inventory.numaMap(domain.uuid);
  const pm = PageMap.fromNumaMap(map);
  const hot = Array.from({ length: 64 }, (_, i) => i * 7);
  const known = new Uint8Array(pm.totalPages).fill(1);
  engine = new Engine({
    inventory, store, logger, registry: app.vmtier.metrics, readHost: () => readHostTopology(),
    manage: (d) => d.name === domain!.name, resyncMs: 500, idleMs: 200, backoff: { baseMs: 200, maxMs: 2000 },
    tracker: 'replay', trackerOptions: { replay: { trace: { epochs: 1, pages: pm.totalPages, accessed: [Uint32Array.from(hot)], known, vms: [] }, loop: true, paced: true } },
    targetNodes: { slow: 0 },
  });
  app.vmtier.engine = engine;
  const policy = fastTierPolicy(hot.length * PAGE);
  assert.equal((await http('PUT', `/v1/vms/${domain.uuid}/policy`, policy)).status, 200);
  await engine.start();
  await until(30_000, 'three rounds before the restart', () => (engine.vm(domain!.uuid)?.rounds ?? 0) >= 3);
  // In the middle of a round: the loop is in a round whenever its state is 'running'.
  await until(10_000, 'a round in progress', () => engine.vm(domain!.uuid)?.state === 'running');
  const roundsBefore = engine.vm(domain.uuid)!.rounds;
  const logMark = logLines.length;
  await daemon.stop();
  const downAt = Date.now();

  // While libvirtd is down: a client mistake it is not, so 503 with the documented code, never 500.
  const down = await until(10_000, '503 while libvirtd is down', async () => {
    const r = await http('GET', '/v1/vms');
    return r.status === 503 ? r : null;
  });
  assert.equal(down.body.error.code, 'LIBVIRT_UNAVAILABLE');
  // The domain's QEMU outlived libvirtd: vmtier keeps tiering it with what it already knows.
  await until(20_000, 'rounds while libvirtd is down', () => engine.vm(domain!.uuid)!.rounds >= roundsBefore + 3);
  assert.equal((await http('GET', `/v1/vms/${domain.uuid}/engine`)).status, 200, 'the engine view answers from memory');
  await new Promise((r) => setTimeout(r, Math.max(0, 6000 - (Date.now() - downAt))));
  const downSeconds = (Date.now() - downAt) / 1000;
  await daemon.start();

  await until(20_000, 'the API serves the domain again', async () => (await http('GET', `/v1/vms/${domain!.uuid}`)).status === 200);
  const r1 = engine.vm(domain.uuid)!.rounds;
  await until(20_000, 'rounds after the restart', () => engine.vm(domain!.uuid)!.rounds >= r1 + 2);
  const st = engine.vm(domain.uuid)!;
  assert.notEqual(st.state, 'stopped', 'the VM loop was not given up');
  assert.ok(st.totals.demote.requested > 0, 'it tiered');

  const during = logLines.slice(logMark).map((l) => JSON.parse(l) as { msg?: string; level: number });
  const count = (msg: string) => during.filter((l) => l.msg === msg).length;
  assert.ok(count('lost connection to libvirtd') >= 1, 'the outage was noticed');
  // Each failed attempt is logged; they are paced by the resync period (500 ms) and the
  // connection's backoff, never a hot loop.
  const failures = count('listing: libvirtd unreachable') + count('libvirtd unreachable; retrying') + count('request failed');
  assert.ok(failures >= 1, 'failed attempts are counted in the log');
  assert.ok(failures <= Math.ceil(downSeconds / 0.5) * 3 + 10, `${failures} failed attempts logged in ${downSeconds.toFixed(1)} s`);
});
