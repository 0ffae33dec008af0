// GET /v1/profiles and POST /v1/profiles/render through the real server wiring (auth, error
// mapping): inject-level contract, plus one request over real HTTP. The VM side is the
// InMemoryInventory (profiles never touch VMs); the host is the lab's two-tier fixture tree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApi } from '../../src/api/server.js';
import { readHostTopology } from '../../src/host/topology.js';
import { listProfiles } from '../../src/qemu/index.js';
import { Store } from '../../src/store/store.js';
import { InMemoryInventory } from '../helpers/memory-inventory.js';
import { labTwoTierHost } from '../helpers/host-fixture.js';

const TOKEN = 'profile-token-0123456789abcdef';
const AUTH = { authorization: `Bearer ${TOKEN}` };

async function setup(t: { after: (fn: () => unknown) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-profile-api-'));
  const fx = labTwoTierHost();
  const store = Store.open(join(dir, 'api.db'));
  const app = await buildApi({
    inventory: new InMemoryInventory(),
    store,
    readHost: () => readHostTopology({ sysRoot: fx.sysRoot, procRoot: fx.procRoot }),
    token: TOKEN,
  });
  t.after(async () => {
    await app.close();
    store.close();
    fx.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  return app;
}

const inline = {
  name: 'inline',
  guest: 'exposed',
  vcpus: 4,
  memory: '8G',
  dram: { ratio: 0.5, backend: { type: 'memfd', share: true, hostNodes: [0] }, hmat: { latencyNs: 80, bandwidth: '20G' } },
  tiers: [{ name: 'pmem', backend: { type: 'memfd', share: true, hostNodes: [1] }, distance: 28, hmat: { latencyNs: 300, bandwidth: '5G' } }],
};

test('GET /v1/profiles lists the shipped profiles; needs the token', async (t) => {
  const app = await setup(t);
  assert.equal((await app.inject({ url: '/v1/profiles' })).statusCode, 401);
  const r = await app.inject({ url: '/v1/profiles', headers: AUTH });
  assert.equal(r.statusCode, 200);
  const body = r.json() as { profiles: Array<{ name: string; guest: string; tiers: string[] }> };
  assert.deepEqual(body.profiles.map((p) => p.name), listProfiles().map((p) => p.spec.name));
  const lab = body.profiles.find((p) => p.name === 'lab-tiered');
  assert.deepEqual([lab?.guest, lab?.tiers], ['exposed', ['pmem']]);
});

test('POST /v1/profiles/render: by name with overrides', async (t) => {
  const app = await setup(t);
  const r = await app.inject({ method: 'POST', url: '/v1/profiles/render', headers: AUTH, payload: { name: 'cxl-expander', memory: '64G', dramRatio: 0.25 } });
  assert.equal(r.statusCode, 200, r.body);
  const b = r.json();
  assert.deepEqual(b.nodes.map((n: { sizeBytes: number; cpus: string | null }) => [n.sizeBytes / 2 ** 30, n.cpus]), [[16, '0-7'], [48, null]]);
  assert.ok(b.qemuArgs.includes('memory-backend-memfd,id=ram-node1,size=48G,share=on,host-nodes=1,policy=bind'));
  assert.match(b.qemuCommandLine, /^qemu-system-x86_64 -machine q35,hmat=on -m 64G -smp 8 /);
  assert.match(b.libvirtXml, /<cell id='1' memory='50331648' unit='KiB' memAccess='shared'>/);
  assert.match(b.libvirtFragments.numatune, /<memnode cellid='1' mode='strict' nodeset='1'\/>/);
});

test('POST /v1/profiles/render: inline spec, host check against the host (fixture: nodes 0 and 1)', async (t) => {
  const app = await setup(t);
  const ok = await app.inject({ method: 'POST', url: '/v1/profiles/render', headers: AUTH, payload: { spec: inline, checkHost: true, domainName: 'vm-1' } });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.match(ok.json().libvirtXml, /<name>vm-1<\/name>/);
  const far = structuredClone(inline);
  far.tiers[0].backend.hostNodes = [3];
  const bad = await app.inject({ method: 'POST', url: '/v1/profiles/render', headers: AUTH, payload: { spec: far, checkHost: true } });
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.json().error.code, 'INVALID_PROFILE');
  assert.match(bad.json().error.message, /^tiers\[0\]\.backend\.hostNodes: host node 3 does not exist/);
  // Without the host check the same spec renders: the check is what refused it.
  assert.equal((await app.inject({ method: 'POST', url: '/v1/profiles/render', headers: AUTH, payload: { spec: far } })).statusCode, 200);
});

test('POST /v1/profiles/render: client mistakes are 400/404 with a code, never 500', async (t) => {
  const app = await setup(t);
  const post = (payload: unknown) => app.inject({ method: 'POST', url: '/v1/profiles/render', headers: AUTH, payload: payload as object });
  const cases: Array<[unknown, number, string, RegExp?]> = [
    [{}, 400, 'INVALID_INPUT', /exactly one of name and spec/],
    [{ name: 'lab-tiered', spec: inline }, 400, 'INVALID_INPUT'],
    [{ name: 'no-such-profile' }, 404, 'NOT_FOUND'],
    [{ name: '../../etc/passwd' }, 400, 'INVALID_INPUT'],
    [{ name: 'lab-tiered' }, 400, 'INVALID_PROFILE', /labDir/],
    [{ spec: { ...inline, tiers: [{ ...inline.tiers[0], size: '1G' }] } }, 400, 'INVALID_PROFILE', /^tiers: DRAM 4 GiB \+ tiers 1 GiB/],
    [{ spec: { ...inline, dram: { ...inline.dram, hmat: undefined } } }, 400, 'INVALID_PROFILE', /^dram\.hmat: missing/],
    [{ spec: { ...inline, vcpus: 'four' } }, 400, 'INVALID_PROFILE', /^vcpus: /],
    [{ spec: inline, memory: '5X' }, 400, 'INVALID_PROFILE', /^memory \(override\)/],
    [{ spec: inline, dramRatio: 2 }, 400, 'INVALID_INPUT'],
    [{ spec: inline, extra: 1 }, 400, 'INVALID_INPUT'],
  ];
  for (const [payload, status, code, msg] of cases) {
    const r = await post(payload);
    assert.equal(r.statusCode, status, `${JSON.stringify(payload)} -> ${r.body}`);
    assert.equal(r.json().error.code, code, r.body);
    if (msg) assert.match(r.json().error.message, msg);
  }
});

test('POST /v1/profiles/render over real HTTP', async (t) => {
  const app = await setup(t);
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  const r = await fetch(`${address}/v1/profiles/render`, {
    method: 'POST',
    headers: { ...AUTH, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'lab-tiered', vars: { labDir: '/var/lib/lab' } }),
  });
  assert.equal(r.status, 200);
  const b = (await r.json()) as { qemuArgs: string[]; nvdimms: Array<{ path: string; guestUse: string }> };
  assert.equal(b.qemuArgs[b.qemuArgs.indexOf('-m') + 1], '2080M,slots=2,maxmem=4G');
  assert.deepEqual(b.nvdimms.map((d) => [d.path, d.guestUse]), [['/var/lib/lab/nvdimm-pmem.img', 'kmem'], ['/var/lib/lab/nvdimm-devdax.img', 'devdax']]);
});
