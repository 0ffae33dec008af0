/**
 * The policy in the domain's metadata, on a real libvirtd (a private one: test/helpers/libvirtd.ts;
 * the same qemu driver and API as the system daemon, which these tests leave alone) with a real TCG
 * domain: the API's
 * PUT writes it (read back with `virsh dumpxml`, independent of vmtier's binding), a hand edit with
 * `virsh metadata --set` reaches the engine through libvirt's METADATA_CHANGE event, an invalid
 * policy in the metadata is reported and the last valid one kept, and `mode: off` there idles the VM.
 *
 * The access counts come from the replay tracker (this machine can run neither kernel tracker on
 * QEMU; see engine.test.ts): what is under test here is where the policy comes from.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { buildApi } from '../../src/api/server.js';
import type { AnyFastify } from '../../src/api/context.js';
import { Engine } from '../../src/daemon/engine.js';
import { PageMap } from '../../src/daemon/page-map.js';
import { readHostTopology } from '../../src/host/topology.js';
import { parsePolicy } from '../../src/policy/schema.js';
import { Store } from '../../src/store/store.js';
import { POLICY_NS } from '../../src/vm/vm-metadata.js';
import { createLibvirtInventory, type LibvirtInventory } from '../../src/vm/libvirt-inventory.js';
import { fixtureXml, startDomain, virsh as virshAt, type TestDomain } from '../helpers/domains.js';
import { startPrivateLibvirtd, type PrivateLibvirtd } from '../helpers/libvirtd.js';
import { apiClient, until } from '../helpers/api-client.js';

const PREFIX = 'vmtier-test-op-';
const TOKEN = 'metadata-test-token-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'vmtier-metadata-'));

let daemon: PrivateLibvirtd;
let inventory: LibvirtInventory;
let store: Store;
let app: AnyFastify;
let engine: Engine | null = null;
let url = '';
const domains: TestDomain[] = [];
const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });
const http = apiClient(() => url, TOKEN);
const virsh = (args: string[]) => virshAt(args, daemon.uri);

before(async () => {
  daemon = await startPrivateLibvirtd();
  store = Store.open(join(dir, 'vmtier.db'));
  inventory = createLibvirtInventory({ uri: daemon.uri, runDir: daemon.qemuRunDir, logger });
  app = await buildApi({ inventory, store, token: TOKEN, logger, readHost: () => readHostTopology() });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});

after(async () => {
  await engine?.stop();
  for (const d of domains) await d.destroy();
  await app?.close();
  await inventory?.close();
  await daemon?.cleanup();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The JSON text of vmtier's policy element in `virsh dumpxml` (live XML; `--inactive`: the saved definition), or null. */
async function policyInDumpxml(name: string, flags: string[] = []): Promise<unknown> {
  const xml = await virsh(['dumpxml', ...flags, name]);
  const m = /<(\w[\w-]*):policy xmlns:\1="([^"]+)">([\s\S]*?)<\/\1:policy>/.exec(xml);
  if (!m) return null;
  assert.equal(m[2], POLICY_NS);
  return JSON.parse(m[3]!.replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&'));
}

function setByHand(name: string, text: string): Promise<string> {
  return virsh(['metadata', name, '--live', '--uri', POLICY_NS, '--key', 'ctl', '--set', `<policy>${text}</policy>`]);
}

test('policy in the domain metadata: PUT writes it, virsh edits reach the engine by event, invalid kept out, mode off idles', async () => {
  const d = await startDomain('two-cells-memfd.xml', PREFIX, { uri: daemon.uri });
  domains.push(d);
  const scan = { intervalMs: 50, scansPerRound: 2, autoTune: false };

  // 1. PUT → the domain's live XML (a transient domain has no persistent definition to write).
  const put = await http('PUT', `/v1/vms/${d.uuid}/policy`, { mode: 'observe', scan });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  assert.deepEqual(put.body.written, { live: true, config: false });
  assert.equal(put.body.source, 'metadata');
  const inXml = (await policyInDumpxml(d.name)) as { mode: string; scan: { intervalMs: number } };
  assert.ok(inXml, 'virsh dumpxml shows the policy element in its namespace');
  assert.equal(inXml.mode, 'observe');
  assert.equal(inXml.scan.intervalMs, 50);
  assert.equal(put.body.version, 1);

  const pages = PageMap.fromNumaMap(await inventory.numaMap(d.uuid)).totalPages;
  engine = new Engine({
    inventory,
    store,
    logger,
    registry: app.vmtier.metrics,
    readHost: () => readHostTopology(),
    manage: (x) => x.name === d.name,
    tracker: 'replay',
    // Nothing accessed: only the policy's path is under test.
    trackerOptions: { replay: { trace: { epochs: 1, pages, accessed: [new Uint32Array(0)], known: new Uint8Array(pages).fill(1), vms: [] }, loop: true, paced: true } },
    resyncMs: 500,
    idleMs: 100,
    backoff: { baseMs: 200, maxMs: 2000 },
  });
  app.vmtier.engine = engine;
  await engine.start();
  const first = await until(15_000, 'an observe round', () => {
    const s = engine!.vm(d.uuid);
    return s && s.rounds >= 1 ? s : null;
  });
  assert.equal(first.mode, 'observe');
  assert.equal(first.policySource, 'metadata');
  assert.equal(first.policyVersion, 1);

  // 2. A control plane edits the metadata by hand: applied at the next round, recorded as version 2.
  const t0 = Date.now();
  await setByHand(d.name, JSON.stringify({ mode: 'tier', scan: { ...scan, intervalMs: 70 }, migration: { maxMBps: 33 } }));
  const tiered = await until(10_000, 'the hand-set policy in force', () => {
    const s = engine!.vm(d.uuid);
    return s && s.mode === 'tier' ? s : null;
  });
  const applyMs = Date.now() - t0;
  assert.equal(tiered.policyVersion, 2);
  assert.equal(tiered.policySource, 'metadata');
  const versions = store.policyVersions(d.uuid);
  assert.deepEqual(versions.map((v) => v.policy.mode), ['observe', 'tier'], 'SQLite keeps every version seen');
  assert.equal(versions[1]!.policy.migration.maxMBps, 33);
  await until(10_000, 'a round with the new interval', () => engine!.vm(d.uuid)?.lastRound?.intervalMs === 70);
  const get = await http('GET', `/v1/vms/${d.uuid}/policy`);
  assert.equal(get.body.version, 2);
  assert.equal(get.body.policy.mode, 'tier');
  assert.equal(get.body.metadataError, null);

  // 3. Invalid policies in the metadata: typed error on the VM, the last valid one stays in force.
  for (const [text, pattern] of [
    [JSON.stringify({ mode: 'fast' }), /\/mode/],
    ['{"mode": tier', /not JSON/],
    [JSON.stringify({ thresholds: { hotMinFraction: 0.2, coldMaxFraction: 0.5 } }), /hysteresis/],
  ] as const) {
    await setByHand(d.name, text);
    const bad = await until(10_000, `the invalid policy ${text} reported`, () => {
      const s = engine!.vm(d.uuid);
      return s?.policyError && pattern.test(s.policyError.message) ? s : null;
    });
    assert.equal(bad.policyError!.code, 'INVALID_POLICY');
    assert.equal(bad.mode, 'tier', 'the last valid policy keeps applying');
    assert.equal(bad.policyVersion, 2);
    const g = await http('GET', `/v1/vms/${d.uuid}/policy`);
    assert.equal(g.status, 200);
    assert.equal(g.body.metadataError.code, 'INVALID_POLICY');
    assert.equal(g.body.policy.mode, 'tier');
    assert.equal(g.body.source, 'store');
  }
  assert.equal(store.policyVersions(d.uuid).length, 2, 'nothing invalid was recorded');

  // 4. Per-VM opt-out in the metadata: the loop idles, no more rounds.
  await setByHand(d.name, JSON.stringify({ mode: 'off' }));
  const off = await until(10_000, 'the opt-out in force', () => {
    const s = engine!.vm(d.uuid);
    return s && s.mode === 'off' && s.state === 'idle' ? s : null;
  });
  assert.equal(off.policyError, null, 'a valid policy clears the error');
  assert.equal(off.policyVersion, 3);
  const rounds = off.rounds;
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(engine.vm(d.uuid)!.rounds, rounds, 'no round runs while opted out');

  // 5. The element removed (e.g. a control plane that rebuilt the XML): the last version is published back.
  await virsh(['metadata', d.name, '--live', '--uri', POLICY_NS, '--remove']);
  await until(10_000, 'the stored policy published back into the metadata', async () => ((await policyInDumpxml(d.name)) as { mode?: string } | null)?.mode === 'off');
  assert.equal(store.policyVersions(d.uuid).length, 3);
  // Rough figure for the report: event to policy in force, host, including a round boundary.
  process.stdout.write(`# metadata edit applied after ${applyMs} ms\n`);
});

test('a persistent domain: PUT while it is shut off writes its saved definition, and the policy is in the live XML once it starts', async () => {
  const name = `${PREFIX}persistent-${Math.random().toString(36).slice(2, 7)}`;
  const xmlDir = mkdtempSync(join(tmpdir(), 'vmtier-persistent-'));
  try {
    const path = join(xmlDir, 'domain.xml');
    writeFileSync(path, fixtureXml('two-cells-memfd.xml', name));
    await virsh(['define', path]);
  } finally {
    rmSync(xmlDir, { recursive: true, force: true });
  }
  try {
    const uuid = (await virsh(['domuuid', name])).trim();
    const put = await http('PUT', `/v1/vms/${uuid}/policy`, { mode: 'observe', migration: { maxMBps: 21 } });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.deepEqual(put.body.written, { live: false, config: true }, 'a shut-off domain has only its saved definition');
    const saved = (await policyInDumpxml(name, ['--inactive'])) as { migration: { maxMBps: number } } | null;
    assert.equal(saved?.migration.maxMBps, 21, 'virsh dumpxml --inactive shows the policy');

    // Started from that definition, the running domain carries the policy; a PUT now writes both.
    await virsh(['start', name]);
    assert.equal(((await policyInDumpxml(name)) as { migration: { maxMBps: number } } | null)?.migration.maxMBps, 21);
    const again = await http('PUT', `/v1/vms/${uuid}/policy`, { mode: 'observe', migration: { maxMBps: 22 } });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.deepEqual(again.body.written, { live: true, config: true });
    for (const flags of [[], ['--inactive']]) {
      const p = (await policyInDumpxml(name, flags)) as { migration: { maxMBps: number } } | null;
      assert.equal(p?.migration.maxMBps, 22, `dumpxml ${flags.join(' ')}`);
    }
  } finally {
    await virsh(['destroy', name]).catch(() => undefined);
    await virsh(['undefine', name]).catch(() => undefined);
  }
});

test('vmtier doctor reads the opt-out where the engine does: the metadata first, the store when the metadata has none', async () => {
  const d = await startDomain('two-cells-memfd.xml', PREFIX, { uri: daemon.uri });
  domains.push(d);
  const db = join(dir, 'doctor.db');
  const own = Store.open(db);
  try {
    own.putPolicy(d.uuid, parsePolicy({ mode: 'off' }), Date.now());
  } finally {
    own.close();
  }
  const vmLine = () => {
    const r = spawnSync(process.execPath, [join(import.meta.dirname, '..', '..', '..', 'bin', 'vmtier.js'), 'doctor', '--json', '--uri', daemon.uri],
      { encoding: 'utf8', env: { ...process.env, VMTIER_DB: db } });
    const report = JSON.parse(r.stdout) as { checks: Array<{ id: string; status: string; message: string }> };
    const line = report.checks.find((c) => c.id === `vm:${d.name}`);
    assert.ok(line, `doctor lists ${d.name}: ${r.stdout}${r.stderr}`);
    return line;
  };
  const OPT_OUT = /mode: off \(operator opt-out\)/;
  // No element in the metadata: the store's version is the one in force.
  assert.match(vmLine().message, OPT_OUT);
  // The metadata says tier: it wins over the store's off, as in the engine (syncPolicy).
  await setByHand(d.name, JSON.stringify({ mode: 'tier' }));
  assert.doesNotMatch(vmLine().message, OPT_OUT);
  // An invalid element: the store's version keeps applying.
  await setByHand(d.name, '{"mode":"sideways"}');
  assert.match(vmLine().message, OPT_OUT);
  // And doctor wrote nothing: the element is as the operator left it.
  assert.match(await virsh(['metadata', d.name, '--live', '--uri', POLICY_NS]), /sideways/);
});
