// Inject-level contract tests of every route: status codes, validation, auth and error
// mapping. The VM side is an InMemoryInventory (see its file); the store is a real SQLite
// file; the host is the lab's two-tier fixture tree. Real VMs: test/integration/serve.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApi } from '../../src/api/server.js';
import { httpStatusOf, toHttpError } from '../../src/api/errors.js';
import { KernelError, VmtierError, type ErrorCode } from '../../src/errors.js';
import { readHostTopology } from '../../src/host/topology.js';
import { Store } from '../../src/store/store.js';
import { InMemoryInventory } from '../helpers/memory-inventory.js';
import { labTwoTierHost } from '../helpers/host-fixture.js';

const TOKEN = 'test-token-0123456789abcdef';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const A = '11111111-2222-4333-8444-555555555555';
const GONE = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';
const NOW = Date.UTC(2026, 10, 26, 3, 0, 0);

async function setup(t: { after: (fn: () => unknown) => void }, token: string | null = TOKEN) {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-api-'));
  const fx = labTwoTierHost();
  const store = Store.open(join(dir, 'api.db'));
  const inv = new InMemoryInventory();
  inv.add({
    summary: { name: 'vm-a', uuid: A, id: 7, state: 'running' },
    numa: {
      domain: { name: 'vm-a', uuid: A, pid: 4242 },
      nodes: [
        { node: 0, cpus: '0-1', sizeBytes: 256 << 20, backing: { kind: 'memfd', path: null, id: 'ram-node0', migratable: true }, hva: [{ start: 0x7f0000000000, end: 0x7f0010000000 }] },
        {
          node: 1, cpus: null, sizeBytes: 128 << 20, backing: { kind: 'devdax', path: '/dev/dax0.0', id: 'ram-node1', migratable: false, reason: 'devdax pages are not movable' }, hva: [{ start: 0x7e0000000000, end: 0x7e0008000000 }],
          devices: [{ model: 'nvdimm', sizeBytes: 1 << 30, backing: { kind: 'file', path: '/srv/pmem0', id: 'memnvdimm0', migratable: true }, hva: [{ start: 0x7d0000000000, end: 0x7d0040000000 }] }],
        },
      ],
    },
    placement: {
      domain: { name: 'vm-a', uuid: A, pid: 4242 },
      nodes: [
        { node: 0, pagesByHostNode: { '0': 100, '1': 20 }, notPresentPages: 5, errors: {}, totalPages: 125 },
        { node: 1, pagesByHostNode: { '1': 30 }, notPresentPages: 0, errors: { EFAULT: 2 }, totalPages: 32 },
      ],
    },
  });
  const app = await buildApi({ inventory: inv, store, readHost: () => readHostTopology({ sysRoot: fx.sysRoot, procRoot: fx.procRoot }), token, now: () => NOW });
  t.after(async () => {
    await app.close();
    store.close();
    fx.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  return { app, store, inv };
}

test('auth: /v1 needs the bearer token; /healthz and /metrics do not', async (t) => {
  const { app } = await setup(t);
  const none = await app.inject({ url: '/v1/vms' });
  assert.equal(none.statusCode, 401);
  assert.deepEqual(none.json().error.code, 'UNAUTHORIZED');
  assert.match(String(none.headers['www-authenticate']), /^Bearer/);
  assert.equal((await app.inject({ url: '/v1/vms', headers: { authorization: 'Bearer wrong-token-0123456789' } })).statusCode, 401);
  assert.equal((await app.inject({ url: '/v1/vms', headers: { authorization: `Basic ${TOKEN}` } })).statusCode, 401);
  // Unknown /v1 paths are hidden behind auth too.
  assert.equal((await app.inject({ url: '/v1/nothing-here' })).statusCode, 401);
  assert.equal((await app.inject({ url: '/v1/vms', headers: AUTH })).statusCode, 200);
  assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200);
  assert.equal((await app.inject({ url: '/metrics' })).statusCode, 200);
});

test('auth covers every /v1 route, including route plugins from src/api/routes/index.ts', async (t) => {
  const { app } = await setup(t);
  const doc = app.swagger() as { paths: Record<string, Record<string, unknown>> };
  const routes = Object.entries(doc.paths).filter(([p]) => p.startsWith('/v1/'))
    .flatMap(([p, ops]) => Object.keys(ops).map((m) => [m.toUpperCase(), p.replace('{uuid}', A)] as const));
  assert.ok(routes.length >= 8, `found ${routes.length} /v1 routes`);
  for (const [method, url] of routes) {
    const r = await app.inject({ method: method as 'GET', url, ...(method === 'GET' ? {} : { payload: {} }) });
    assert.equal(r.statusCode, 401, `${method} ${url}`);
    assert.equal(r.json().error.code, 'UNAUTHORIZED', `${method} ${url}`);
  }
});

test('without a token (loopback only) /v1 is open', async (t) => {
  const { app } = await setup(t, null);
  assert.equal((await app.inject({ url: '/v1/vms' })).statusCode, 200);
});

test('GET /v1/host: the fixture host with node 1 in the slow tier and kernel warnings', async (t) => {
  const { app } = await setup(t);
  const r = await app.inject({ url: '/v1/host', headers: AUTH });
  assert.equal(r.statusCode, 200);
  const h = r.json();
  assert.deepEqual(h.nodes.map((n: { node: number; cpus: string | null; tier: { class: string } }) => [n.node, n.cpus, n.tier.class]), [[0, '0-1', 'top'], [1, null, 'slow']]);
  assert.deepEqual(h.kernel, { numaBalancing: { value: 2, mode: 'tiering' }, demotionEnabled: true, promoteRateLimitMBps: 65536 });
  assert.equal(h.warnings.length, 2);
  assert.equal(h.dax[0].mode, 'system-ram');
});

test('GET /v1/vms and /v1/vms/{uuid}: live list, 404 unknown, 400 bad uuid, 503 when libvirtd is down', async (t) => {
  const { app, store, inv } = await setup(t);
  const r = await app.inject({ url: '/v1/vms', headers: AUTH });
  assert.deepEqual(r.json(), {
    vms: [{ uuid: A, name: 'vm-a', id: 7, state: 'running', running: true, firstSeen: null, lastSeen: null, policy: { version: 0, mode: 'observe' } }],
  });
  const one = await app.inject({ url: `/v1/vms/${A.toUpperCase()}`, headers: AUTH });
  assert.equal(one.statusCode, 200);
  assert.equal(one.json().uuid, A);
  assert.deepEqual(one.json().guestNodes, []);

  const bad = await app.inject({ url: '/v1/vms/not-a-uuid', headers: AUTH });
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.json().error.code, 'INVALID_INPUT');
  const unknown = await app.inject({ url: `/v1/vms/${GONE}`, headers: AUTH });
  assert.equal(unknown.statusCode, 404);
  assert.equal(unknown.json().error.code, 'VM_NOT_FOUND');

  // Recorded earlier but not running now: answered from the store.
  store.recordVmSeen(GONE, 'vm-gone', NOW - 60_000);
  const gone = await app.inject({ url: `/v1/vms/${GONE}`, headers: AUTH });
  assert.equal(gone.statusCode, 200);
  assert.equal(gone.json().running, false);
  assert.equal(gone.json().state, 'shutoff');
  assert.equal(gone.json().lastSeen, new Date(NOW - 60_000).toISOString());

  inv.down = true;
  const down = await app.inject({ url: '/v1/vms', headers: AUTH });
  assert.equal(down.statusCode, 503);
  assert.equal(down.json().error.code, 'LIBVIRT_UNAVAILABLE');
  assert.equal((await app.inject({ url: `/v1/vms/${A}`, headers: AUTH })).statusCode, 503);
  assert.equal((await app.inject({ url: `/v1/vms/${A}/numa`, headers: AUTH })).statusCode, 503);
  const health = (await app.inject({ url: '/healthz' })).json();
  assert.equal(health.status, 'degraded');
  assert.equal(health.libvirt.connected, false);
  inv.down = false;
  assert.equal((await app.inject({ url: '/v1/vms', headers: AUTH })).statusCode, 200);
});

test('GET /numa prints HVAs as lowercase hex and records the guest layout; /placement sums pages per tier', async (t) => {
  const { app, store } = await setup(t);
  const r = await app.inject({ url: `/v1/vms/${A}/numa`, headers: AUTH });
  assert.equal(r.statusCode, 200);
  const m = r.json();
  assert.deepEqual(m.domain, { name: 'vm-a', uuid: A, pid: 4242 });
  assert.deepEqual(m.nodes[0].hva, [{ start: '0x7f0000000000', end: '0x7f0010000000' }]);
  assert.equal('devices' in m.nodes[0], false, 'no devices key on a node without memory devices');
  assert.deepEqual(m.nodes[1].devices, [
    { model: 'nvdimm', sizeBytes: 1 << 30, backing: { kind: 'file', path: '/srv/pmem0', id: 'memnvdimm0', migratable: true }, hva: [{ start: '0x7d0000000000', end: '0x7d0040000000' }] },
  ]);
  assert.deepEqual(m.nodes[1].backing, { kind: 'devdax', path: '/dev/dax0.0', id: 'ram-node1', migratable: false, reason: 'devdax pages are not movable' });
  assert.equal(store.getVm(A)?.firstSeen, NOW);
  const detail = (await app.inject({ url: `/v1/vms/${A}`, headers: AUTH })).json();
  assert.deepEqual(detail.guestNodes.map((n: { node: number; cpus: string | null }) => [n.node, n.cpus]), [[0, '0-1'], [1, null]]);
  assert.equal(detail.firstSeen, new Date(NOW).toISOString());

  const p = (await app.inject({ url: `/v1/vms/${A}/placement`, headers: AUTH })).json();
  assert.deepEqual(p.nodes[0].pagesByTier, { top: 100, slow: 20 });
  assert.deepEqual(p.nodes[1].pagesByTier, { top: 0, slow: 30 });
  assert.deepEqual(p.nodes[1].errors, { EFAULT: 2 });
  assert.equal((await app.inject({ url: `/v1/vms/${GONE}/placement`, headers: AUTH })).statusCode, 404);
});

test('policy: defaults, versioned PUTs, strict validation that leaves the stored policy intact', async (t) => {
  const { app } = await setup(t);
  const url = `/v1/vms/${A}/policy`;
  const d = (await app.inject({ url, headers: AUTH })).json();
  assert.equal(d.version, 0);
  assert.equal(d.updatedAt, null);
  assert.equal(d.policy.mode, 'observe');
  assert.equal('maxBytes' in d.policy.dram, false, 'an unset limit is absent, not null');

  const put1 = await app.inject({ method: 'PUT', url, headers: AUTH, payload: { mode: 'tier', migration: { maxMBps: 64 } } });
  assert.equal(put1.statusCode, 200);
  assert.equal(put1.json().version, 1);
  assert.equal(put1.json().updatedAt, new Date(NOW).toISOString());
  assert.equal(put1.json().policy.migration.maxMBps, 64);
  assert.equal(put1.json().policy.scan.scansPerRound, 4, 'defaults filled in');
  // A GET body can be PUT back unchanged.
  const back = await app.inject({ method: 'PUT', url, headers: AUTH, payload: (await app.inject({ url, headers: AUTH })).json().policy });
  assert.equal(back.statusCode, 200);
  assert.equal(back.json().version, 2);

  const bad: Array<[unknown, string]> = [
    [{ mode: 'fast' }, 'INVALID_INPUT'],
    [{ mdoe: 'tier' }, 'INVALID_INPUT'],
    [{ scan: { intervalMs: '100' } }, 'INVALID_INPUT'],
    [{ scan: { intervalMs: 1 } }, 'INVALID_INPUT'],
    [{ thresholds: { hotMinFraction: 0.2, coldMaxFraction: 0.5 } }, 'INVALID_POLICY'],
    [[1, 2], 'INVALID_INPUT'],
  ];
  for (const [payload, code] of bad) {
    const r = await app.inject({ method: 'PUT', url, headers: AUTH, payload: payload as object });
    assert.equal(r.statusCode, 400, JSON.stringify(payload));
    assert.equal(r.json().error.code, code, JSON.stringify(payload));
  }
  const msg = (await app.inject({ method: 'PUT', url, headers: AUTH, payload: { mode: 'fast' } })).json().error.message;
  assert.equal(msg, 'body/mode must be one of "off", "observe", "tier"');
  assert.match((await app.inject({ method: 'PUT', url, headers: AUTH, payload: { mdoe: 'tier' } })).json().error.message, /mdoe|additional/i);
  const badJson = await app.inject({ method: 'PUT', url, headers: { ...AUTH, 'content-type': 'application/json' }, payload: '{"mode": ' });
  assert.equal(badJson.statusCode, 400);
  assert.equal(badJson.json().error.code, 'INVALID_INPUT');
  const text = await app.inject({ method: 'PUT', url, headers: { ...AUTH, 'content-type': 'text/plain' }, payload: 'mode=tier' });
  assert.equal(text.statusCode, 400, 'a text body is not a policy object');
  const form = await app.inject({ method: 'PUT', url, headers: { ...AUTH, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'mode=tier' });
  assert.equal(form.statusCode, 415);
  assert.equal(form.json().error.code, 'INVALID_INPUT');
  const huge = await app.inject({ method: 'PUT', url, headers: AUTH, payload: { mode: 'tier', pad: 'x'.repeat(2 << 20) } });
  assert.equal(huge.statusCode, 413);
  // Nothing of the above was stored.
  const after = (await app.inject({ url, headers: AUTH })).json();
  assert.equal(after.version, 2);
  assert.equal(after.policy.mode, 'tier');
  assert.equal((await app.inject({ method: 'PUT', url: `/v1/vms/${GONE}/policy`, headers: AUTH, payload: {} })).statusCode, 404);
});

test('history: buckets over the requested range; 400 for bad ranges; 404 for unknown VMs', async (t) => {
  const { app, store } = await setup(t);
  store.recordVmSeen(A, 'vm-a', NOW - 3600_000);
  const base = { vmUuid: A, guestNode: 0, hostNode: 0, hostTier: 'top' as const, warmBytes: 0, scannedBytes: 1 << 20, scanMs: 3, failures: 0 };
  store.insertSamples([
    { ...base, t: NOW - 50_000, hotBytes: 4096, coldBytes: 8192, movedBytes: 4096 },
    { ...base, t: NOW - 40_000, hotBytes: 12288, coldBytes: 0, movedBytes: 8192 },
    { ...base, t: NOW - 10_000, hotBytes: 8192, coldBytes: 0, movedBytes: 0, hostNode: 1, hostTier: 'slow' },
  ]);
  const r = await app.inject({ url: `/v1/vms/${A}/history?from=${NOW - 60_000}&to=${new Date(NOW).toISOString()}&step=30s`, headers: AUTH });
  assert.equal(r.statusCode, 200);
  const h = r.json();
  assert.equal(h.stepMs, 30_000);
  assert.equal(h.from, new Date(NOW - 60_000).toISOString());
  assert.deepEqual(h.series.map((s: { hostNode: number; hostTier: string }) => [s.hostNode, s.hostTier]), [[0, 'top'], [1, 'slow']]);
  assert.deepEqual(h.series[0].buckets, [
    { start: new Date(NOW - 60_000).toISOString(), hotBytes: 8192, warmBytes: 0, coldBytes: 4096, scannedBytes: 1 << 20, scanMs: 3, movedBytes: 12288, failures: 0, samples: 2 },
  ]);
  assert.equal(h.series[1].buckets[0].start, new Date(NOW - 30_000).toISOString());
  // Defaults: the last hour up to now.
  const dflt = (await app.inject({ url: `/v1/vms/${A}/history`, headers: AUTH })).json();
  assert.equal(dflt.to, new Date(NOW).toISOString());
  assert.equal(dflt.stepMs, 60_000);

  for (const q of ['from=yesterday', `from=${NOW}&to=${NOW - 1}`, 'step=0', 'step=5x', `from=0&to=${NOW}&step=1`, 'bogus=1', 'from=2026-13-45T00:00:00Z']) {
    const b = await app.inject({ url: `/v1/vms/${A}/history?${q}`, headers: AUTH });
    assert.equal(b.statusCode, 400, q);
    assert.equal(b.json().error.code, 'INVALID_INPUT', q);
  }
  assert.equal((await app.inject({ url: `/v1/vms/${GONE}/history`, headers: AUTH })).statusCode, 404);
});

test('/metrics exports the newest round per VM and libvirt connectivity', async (t) => {
  const { app, store } = await setup(t);
  store.recordVmSeen(A, 'vm-a', NOW - 5000);
  store.insertSamples([
    { t: NOW - 1000, vmUuid: A, guestNode: 1, hostNode: 1, hostTier: 'slow', hotBytes: 1, warmBytes: 2, coldBytes: 3, scannedBytes: 4, scanMs: 5, movedBytes: 6, failures: 7 },
    { t: NOW, vmUuid: A, guestNode: 1, hostNode: 1, hostTier: 'slow', hotBytes: 40960, warmBytes: 0, coldBytes: 8192, scannedBytes: 49152, scanMs: 2.5, movedBytes: 4096, failures: 1 },
  ]);
  await app.inject({ url: '/healthz' });
  const text = (await app.inject({ url: '/metrics' })).body;
  const l = `vm_uuid="${A}",vm_name="vm-a",guest_node="1",host_node="1",host_tier="slow"`;
  assert.match(text, new RegExp(`^vmtier_vm_hot_bytes\\{${l}\\} 40960$`, 'm'));
  assert.match(text, new RegExp(`^vmtier_vm_cold_bytes\\{${l}\\} 8192$`, 'm'));
  assert.match(text, new RegExp(`^vmtier_vm_round_failed_pages\\{${l}\\} 1$`, 'm'));
  assert.match(text, /^vmtier_libvirt_connected 1$/m);
  assert.match(text, /^vmtier_vms_running 1$/m);
  assert.match(text, /^vmtier_http_requests_total\{method="GET",route="\/healthz",status="200"\} 1$/m);
});

test('errors: unknown routes are JSON 404; server faults are 500 without internals; client codes are never 5xx', async (t) => {
  const { app, inv } = await setup(t);
  for (const [url, status] of [['/v1/vms/%ZZ', 400], [`/v1/vms/${'a'.repeat(1000)}`, 414]] as const) {
    const r = await app.inject({ url, headers: AUTH });
    assert.equal(r.statusCode, status, url);
    assert.equal(r.json().error.code, 'INVALID_INPUT', url);
  }
  const nf = await app.inject({ url: '/nope' });
  assert.equal(nf.statusCode, 404);
  assert.equal(nf.json().error.code, 'NOT_FOUND');
  inv.numaFailure = new Error('secret internal detail');
  const boom = await app.inject({ url: `/v1/vms/${A}/numa`, headers: AUTH });
  assert.equal(boom.statusCode, 500);
  assert.deepEqual(boom.json(), { error: { code: 'INTERNAL', message: 'internal error; see the service log' } });
  inv.numaFailure = new KernelError('process_vm_readv', 1);
  const k = await app.inject({ url: `/v1/vms/${A}/numa`, headers: AUTH });
  assert.equal(k.statusCode, 500);
  assert.equal(k.json().error.code, 'KERNEL_ERROR');
  inv.numaFailure = new VmtierError('VM_GONE', 'domain went away');
  assert.equal((await app.inject({ url: `/v1/vms/${A}/numa`, headers: AUTH })).statusCode, 404);

  const client: ErrorCode[] = ['VM_NOT_FOUND', 'VM_GONE', 'NOT_FOUND', 'INVALID_POLICY', 'INVALID_INPUT', 'INVALID_XML', 'INVALID_PROFILE', 'INVALID_TRACE', 'UNAUTHORIZED'];
  for (const c of client) assert.ok(httpStatusOf(c) >= 400 && httpStatusOf(c) < 500, c);
  assert.equal(httpStatusOf('LIBVIRT_UNAVAILABLE'), 503);
  assert.equal(toHttpError({ statusCode: 413, message: 'too large' }).status, 413);
});
