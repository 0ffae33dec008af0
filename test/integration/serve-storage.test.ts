/**
 * `vmtier serve` (real process, real HTTP, the engine on a real TCG domain, a real SQLite file)
 * against what can happen to its storage:
 *   - SIGKILL in the middle of ingestion, 20 times in a row;
 *   - the disk filling up (a small tmpfs this test mounts), a read-only file system (a read-only
 *     bind mount), a corrupted file (its header overwritten);
 * each time: integrity_check ok, no more than the round in flight lost, the service answering,
 * policies whole, the engine still running its rounds, and the data intact once the fault is gone.
 *
 * The engine runs with the kmod tracker, which cannot load on this machine: every round then
 * observes placement only (real move_pages queries on the real QEMU) and records it, which is
 * the ingestion under test. `--manage` keeps it to this test's domain.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Store } from '../../src/store/store.js';
import { apiClient, until } from '../helpers/api-client.js';
import { destroyDomains, startDomain, virsh, type TestDomain } from '../helpers/domains.js';
import { POLICY_NS } from '../../src/vm/vm-metadata.js';
import { killAllServed, startServe, type ServedProcess } from '../helpers/serve.js';

const PREFIX = 'vmtier-test-s-';
const TOKEN = 'storage-test-token-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'vmtier-storage-'));
const mounts: string[] = [];
let domain: TestDomain;

const FAST_POLICY = { mode: 'observe', scan: { intervalMs: 50, scansPerRound: 1 } };

/**
 * The domain's metadata is where a policy lives first (earlier cases PUT one there). A case that
 * seeds the policy into the SQLite file only removes the element, so the stored version applies
 * (and is written back) as for a VM set up before the metadata existed.
 */
async function dropPolicyMetadata(): Promise<void> {
  await virsh(['metadata', domain.name, '--live', '--uri', POLICY_NS, '--remove']);
}

function serveArgs(db: string): string[] {
  return ['--db', db, '--tracker', 'kmod', '--manage', `^${PREFIX}`, '--resync-ms', '1000'];
}

function serveWith(db: string, env: Record<string, string> = {}): Promise<ServedProcess> {
  return startServe(serveArgs(db), { VMTIER_TOKEN: TOKEN, ...env });
}

function rounds(s: ServedProcess): number {
  return s.lines().filter((l) => l.msg === 'round' && l.vm === domain.uuid).length;
}

function integrity(db: string): string {
  const raw = new BetterSqlite3(db, { readonly: true });
  try {
    return (raw.pragma('integrity_check', { simple: true }) as string) ?? '';
  } finally {
    raw.close();
  }
}

function roundTimes(db: string, since: number): number[] {
  const raw = new BetterSqlite3(db, { readonly: true });
  try {
    return (raw.prepare('SELECT DISTINCT s.t AS t FROM samples s JOIN series r ON r.id = s.series_id WHERE r.vm_uuid = ? AND s.t >= ? ORDER BY s.t').all(domain.uuid, since) as Array<{ t: number }>).map((r) => r.t);
  } finally {
    raw.close();
  }
}

function mountTmpfs(at: string, size: string): void {
  mkdirSync(at, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'vmtier-test', at]);
  mounts.push(at);
}

function umount(at: string): void {
  execFileSync('umount', [at]);
  mounts.splice(mounts.indexOf(at), 1);
}

/** Fills the file system holding `path` until ENOSPC. */
function fill(path: string): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 << 10, 0x5a);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd);
  }
}

async function health(s: ServedProcess): Promise<any> {
  const r = await fetch(`${s.url}/healthz`);
  assert.equal(r.status, 200);
  return r.json();
}

async function engineRounds(s: ServedProcess): Promise<number> {
  const r = await apiClient(() => s.url, TOKEN)('GET', '/v1/engine');
  return (r.body.vms as Array<{ uuid: string; rounds: number }> | undefined)?.find((v) => v.uuid === domain.uuid)?.rounds ?? 0;
}

before(async () => {
  await destroyDomains(PREFIX);
  domain = await startDomain('two-cells-memfd.xml', PREFIX);
});

after(async () => {
  killAllServed();
  await destroyDomains(PREFIX);
  for (const m of [...mounts].reverse()) {
    try {
      execFileSync('umount', ['-l', m]);
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

test('SIGKILL during ingestion, 20 times: integrity ok, at most the round in flight lost, policies whole, service answers', async () => {
  const db = join(dir, 'crash.db');
  const acked = new Map<number, number>(); // policy version -> the maxMBps it was sent with
  let k = 0;
  for (let i = 0; i < 20; i++) {
    const runStart = Date.now();
    const s = await serveWith(db);
    const http = apiClient(() => s.url, TOKEN);
    const h = await health(s);
    assert.equal(h.db.ok, true, `run ${i}: ${JSON.stringify(h.db)}`);
    if (i === 0) assert.equal((await http('PUT', `/v1/vms/${domain.uuid}/policy`, FAST_POLICY)).status, 200);
    await until(20_000, `run ${i}: a round recorded`, () => rounds(s) >= 1, 20);
    // Policy writes race the kill too.
    let stop = false;
    const writer = (async () => {
      while (!stop) {
        const mbps = ++k;
        try {
          const r = await http('PUT', `/v1/vms/${domain.uuid}/policy`, { ...FAST_POLICY, migration: { maxMBps: mbps } });
          if (r.status === 200) acked.set(r.body.version, mbps);
        } catch {
          return; // connection reset by the kill
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 100 + ((i * 137) % 500)));
    await s.kill9();
    stop = true;
    await writer;
    const logged = rounds(s);

    assert.equal(integrity(db), 'ok', `run ${i}: integrity_check`);
    const stored = roundTimes(db, runStart).length;
    assert.ok(stored >= logged, `run ${i}: every logged round is stored (${stored} stored, ${logged} logged)`);
    assert.ok(stored <= logged + 1, `run ${i}: nothing recorded that was not logged but the round in flight (${stored} vs ${logged})`);
    const store = Store.open(db);
    try {
      const versions = store.policyVersions(domain.uuid); // parses every stored version
      for (const [v, mbps] of acked) {
        const p = versions.find((x) => x.version === v);
        assert.ok(p, `run ${i}: acknowledged policy v${v} survives`);
        assert.equal(p.policy.migration.maxMBps, mbps, `run ${i}: policy v${v} is whole`);
      }
      assert.equal(store.currentPolicy(domain.uuid)!.version, Math.max(...versions.map((x) => x.version)));
    } finally {
      store.close();
    }
  }
  assert.ok(acked.size >= 20, `policies were written during the runs (${acked.size})`);
  // And after the last kill the service comes back with everything.
  const s = await serveWith(db);
  const h = await health(s);
  assert.equal(h.status, 'ok');
  const hist = await apiClient(() => s.url, TOKEN)('GET', `/v1/vms/${domain.uuid}/history?from=${Date.now() - 3600_000}&step=1m`);
  assert.equal(hist.status, 200);
  assert.ok(hist.body.series.length > 0);
  assert.equal(await s.stop(), 0);
});

test('disk full: history writes dropped and counted, /healthz degraded, the engine keeps its rounds; all back once space is freed', async () => {
  const mnt = join(dir, 'small');
  mountTmpfs(mnt, '16m');
  const db = join(mnt, 'vmtier.db');
  const s = await serveWith(db);
  const http = apiClient(() => s.url, TOKEN);
  assert.equal((await http('PUT', `/v1/vms/${domain.uuid}/policy`, FAST_POLICY)).status, 200);
  await until(20_000, 'rounds recorded', () => rounds(s) >= 3, 20);
  const beforeFault = roundTimes(db, 0);
  // An empty WAL, so the next commit has to grow a file on the full disk.
  const side = new BetterSqlite3(db);
  side.pragma('busy_timeout = 5000');
  side.pragma('wal_checkpoint(TRUNCATE)');
  side.close();
  const filler = join(mnt, 'filler');
  fill(filler);

  const degraded = await until(20_000, 'healthz degraded', async () => {
    const h = await health(s);
    return h.status === 'degraded' && h.db.droppedWrites >= 3 ? h : null;
  });
  assert.match(degraded.db.error, /SQLITE_FULL|full/);
  assert.equal(degraded.libvirt.connected, true);
  const r0 = await engineRounds(s);
  await until(20_000, 'the engine keeps running rounds on a full disk', async () => (await engineRounds(s)) >= r0 + 5);
  const put = await http('PUT', `/v1/vms/${domain.uuid}/policy`, { ...FAST_POLICY, migration: { maxMBps: 77 } });
  assert.equal(put.status, 503);
  assert.equal(put.body.error.code, 'STORE_UNAVAILABLE');
  assert.equal(typeof put.body.error.message, 'string');
  const metrics = await (await fetch(`${s.url}/metrics`)).text();
  assert.match(metrics, /vmtier_store_healthy 0/);
  const dropped = Number(/vmtier_store_dropped_writes_total (\d+)/.exec(metrics)?.[1]);
  assert.ok(dropped >= 3, `dropped writes counted (${dropped})`);
  assert.ok(s.lines().some((l) => l.msg === 'store degraded: history writes are dropped until the fault is gone' && /full/.test(String(l.storeError))));
  assert.equal(s.child.exitCode, null, 'still running');

  rmSync(filler);
  const tFree = Date.now();
  await until(20_000, 'healthy again', async () => (await health(s)).status === 'ok');
  await until(20_000, 'rounds stored again', () => roundTimes(db, tFree).length >= 2);
  assert.equal(await s.stop(), 0);
  assert.equal(integrity(db), 'ok');
  const after = new Set(roundTimes(db, 0));
  assert.ok(beforeFault.every((t) => after.has(t)), 'every round stored before the fault is still there');
  umount(mnt);
});

test('read-only file system at start: serves degraded (policies readable, writes dropped), engine runs; read-write again once remounted', async () => {
  const base = join(dir, 'ro-base');
  const view = join(dir, 'ro-view');
  mkdirSync(base, { recursive: true });
  mkdirSync(view, { recursive: true });
  const seed = Store.open(join(base, 'vmtier.db'));
  seed.putPolicy(domain.uuid, (await import('../../src/policy/schema.js')).parsePolicy({ ...FAST_POLICY, migration: { maxMBps: 42 } } as never));
  seed.insertSamples([{ t: Date.now() - 120_000, vmUuid: domain.uuid, guestNode: 0, hostNode: 0, hostTier: 'top', hotBytes: 4096, warmBytes: 0, coldBytes: 8192, scannedBytes: 0, scanMs: 1, movedBytes: 0, failures: 0 }]);
  seed.db.pragma('wal_checkpoint(TRUNCATE)');
  seed.close();
  execFileSync('mount', ['--bind', base, view]);
  mounts.push(view);
  execFileSync('mount', ['-o', 'remount,bind,ro', view]);
  const db = join(view, 'vmtier.db');
  await dropPolicyMetadata();
  const s = await serveWith(db, { VMTIER_STORE_REOPEN_MS: '500' });
  const http = apiClient(() => s.url, TOKEN);
  const h = await health(s);
  assert.equal(h.status, 'degraded');
  assert.notEqual(h.db.mode, 'read-write');
  assert.match(h.db.error, /read-only|readonly|unable to open|READONLY|CANTOPEN/i);
  if (h.db.mode === 'read-only') {
    const p = await http('GET', `/v1/vms/${domain.uuid}/policy`);
    assert.equal(p.status, 200);
    assert.equal(p.body.policy.migration.maxMBps, 42, 'the stored policy is read from the read-only file');
  }
  await until(20_000, 'the engine runs rounds', async () => (await engineRounds(s)) >= 3);
  assert.ok((await health(s)).db.droppedWrites >= 1);
  assert.equal((await http('PUT', `/v1/vms/${domain.uuid}/policy`, FAST_POLICY)).status, 503);

  execFileSync('mount', ['-o', 'remount,bind,rw', view]);
  const tRw = Date.now();
  await until(20_000, 'reopened read-write', async () => (await health(s)).db.mode === 'read-write');
  assert.equal((await health(s)).status, 'ok');
  await until(20_000, 'rounds stored', () => roundTimes(db, tRw).length >= 2);
  const p = await http('GET', `/v1/vms/${domain.uuid}/policy`);
  assert.equal(p.body.policy.migration.maxMBps, 42, 'the policy from before the fault is current');
  assert.equal(await s.stop(), 0);
  assert.equal(integrity(db), 'ok');
  assert.equal(roundTimes(db, 0).length >= 3, true);
  umount(view);
});

test('corrupted file at start: never written, serves degraded on a stand-in, engine runs; the repaired file is picked up intact', async () => {
  const db = join(dir, 'corrupt', 'vmtier.db');
  const seed = Store.open(db);
  seed.putPolicy(domain.uuid, (await import('../../src/policy/schema.js')).parsePolicy({ ...FAST_POLICY, migration: { maxMBps: 43 } } as never));
  seed.insertSamples([{ t: Date.now() - 120_000, vmUuid: domain.uuid, guestNode: 0, hostNode: 0, hostTier: 'top', hotBytes: 4096, warmBytes: 0, coldBytes: 8192, scannedBytes: 0, scanMs: 1, movedBytes: 0, failures: 0 }]);
  seed.db.pragma('wal_checkpoint(TRUNCATE)');
  seed.close();
  const good = readFileSync(db);
  const bad = Buffer.from(good);
  bad.fill(0x42, 0, 100); // the header: "file is not a database"
  writeFileSync(db, bad);
  await dropPolicyMetadata();

  const s = await serveWith(db, { VMTIER_STORE_REOPEN_MS: '500' });
  const http = apiClient(() => s.url, TOKEN);
  const h = await health(s);
  assert.equal(h.status, 'degraded');
  assert.equal(h.db.mode, 'unavailable');
  assert.match(h.db.error, /not a database|NOTADB/);
  assert.ok(s.lines().some((l) => l.level === 50 && /store degraded/.test(String(l.msg))), 'an error line names the fault');
  await until(20_000, 'the engine runs rounds', async () => (await engineRounds(s)) >= 3);
  assert.equal((await http('PUT', `/v1/vms/${domain.uuid}/policy`, FAST_POLICY)).status, 503);
  assert.deepEqual(readFileSync(db), bad, 'the corrupted file is left as it was');
  assert.equal(existsSync(`${db}-wal`) && readFileSync(`${db}-wal`).length > 0, false);

  writeFileSync(db, good); // the operator restores it
  await until(20_000, 'reopened', async () => (await health(s)).status === 'ok');
  const p = await http('GET', `/v1/vms/${domain.uuid}/policy`);
  assert.equal(p.body.policy.migration.maxMBps, 43);
  const tOk = Date.now();
  await until(20_000, 'rounds stored', () => roundTimes(db, tOk).length >= 2);
  assert.equal(await s.stop(), 0);
  assert.equal(integrity(db), 'ok');
});
