/**
 * `vmtier serve` applies retention every `retention.intervalSeconds`, not only at start: the real
 * CLI process (API only, --no-engine) on a real SQLite file, with rows written into that file by a
 * second connection after the service has started (so after its start-time pass). With a 2-second
 * interval the old rows, superseded policy versions, unseen VMs and old heat frames are gone
 * within a few seconds, without a restart, and again for a second batch; with an hourly interval
 * (the control) the same rows are still there after the same wait.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store, type HotnessSample } from '../../src/store/store.js';
import { heatHistoryOf } from '../../src/store/heat-history.js';
import { parsePolicy } from '../../src/policy/schema.js';
import { killAllServed, startServe } from '../helpers/serve.js';

const TOKEN = 'serve-retention-token-0123456789';
const VM = '0a1f6a7e-9a53-4c1e-9d2b-0c3a4b5c6d7e';
const GONE = '0b1f6a7e-9a53-4c1e-9d2b-0c3a4b5c6d7e';
const dir = mkdtempSync(join(tmpdir(), 'vmtier-serve-retention-'));
after(() => {
  killAllServed();
  rmSync(dir, { recursive: true, force: true });
});

/** Retention of the tests: raw rows 30 s, everything dropped after 60 s. */
const MAX_AGE_MS = 60_000;

function sample(t: number, vmUuid: string, hotBytes: number): HotnessSample {
  return { t, vmUuid, guestNode: 0, hostNode: 0, hostTier: 'top', hotBytes, warmBytes: 0, coldBytes: 0, scannedBytes: 0, scanMs: 0, movedBytes: 0, failures: 0 };
}

/**
 * Writes, through a connection of the test's own (opened for this batch: a Store caches series
 * ids, and the service's retention has dropped the previous batch's series meanwhile), rows that
 * retention must drop and rows it must keep.
 */
function writeOld(db: string, batch: number): void {
  const s = Store.open(db);
  try {
    write(s, batch);
  } finally {
    s.close();
  }
}

function write(s: Store, batch: number): void {
  const now = Date.now();
  const old = now - 10 * MAX_AGE_MS;
  for (let i = 0; i < 3; i++) s.putPolicy(VM, parsePolicy({ mode: 'observe', scan: { intervalMs: 500 + batch * 10 + i } }), old + i);
  s.putPolicy(VM, parsePolicy({ mode: 'observe', scan: { intervalMs: 999 + batch } }), old + 10); // the newest: stays whatever its age
  s.recordVmSeen(VM, 'kept', now);
  s.recordVmSeen(GONE, 'gone', old);
  s.insertSamples([sample(old, GONE, 1)]);
  s.insertSamples([sample(old, VM, 2), sample(now, VM, 3)]);
  heatHistoryOf(s).record(GONE, { t: old, samples: 1, bucketBytes: 4096, totalBytes: 8192, nodes: [{ guestNode: 0, start: 0, end: 8192 }], hot: null, dram: new Uint8Array(2), resident: new Uint8Array(2) });
}

interface Left { policies: number; gone: number; oldSamples: number; freshSamples: number; heat: number }

function left(s: Store): Left {
  const n = (sql: string, ...args: unknown[]) => (s.db.prepare(sql).get(...args) as { n: number }).n;
  const before = Date.now() - 5 * MAX_AGE_MS;
  return {
    policies: n('SELECT COUNT(*) AS n FROM policies WHERE vm_uuid = ?', VM),
    gone: n('SELECT COUNT(*) AS n FROM vms WHERE uuid = ?', GONE),
    oldSamples: n('SELECT COUNT(*) AS n FROM samples WHERE t < ?', before),
    freshSamples: n('SELECT COUNT(*) AS n FROM samples s JOIN series x ON x.id = s.series_id WHERE x.vm_uuid = ? AND s.t >= ?', VM, before),
    heat: n('SELECT COUNT(*) AS n FROM heat_frames WHERE vm_uuid = ?', GONE),
  };
}

const DROPPED: Left = { policies: 1, gone: 0, oldSamples: 0, freshSamples: 1, heat: 0 };

async function serveWith(name: string, intervalSeconds: number) {
  const config = join(dir, `${name}.yaml`);
  writeFileSync(config, `retention:\n  fullResolutionHours: ${30 / 3600}\n  coarseStepSeconds: 60\n  maxAgeDays: ${MAX_AGE_MS / 86_400_000}\n  intervalSeconds: ${intervalSeconds}\n`);
  const db = join(dir, `${name}.db`);
  const served = await startServe(['--no-engine', '--config', config, '--db', db], { VMTIER_TOKEN: TOKEN });
  return { served, db, store: Store.open(db) };
}

/** Polls until `want` holds or `ms` have passed; returns the elapsed time and the last counts. */
async function waitFor(s: Store, ms: number, want: (l: Left) => boolean): Promise<{ elapsed: number; last: Left }> {
  const t0 = Date.now();
  let last = left(s);
  while (!want(last) && Date.now() - t0 < ms) {
    await new Promise((r) => setTimeout(r, 100));
    last = left(s);
  }
  return { elapsed: Date.now() - t0, last };
}

test('vmtier serve applies retention every retention.intervalSeconds: rows written after start are dropped within the interval, twice, without a restart', async () => {
  const INTERVAL_S = 2;
  const { served, db, store } = await serveWith('periodic', INTERVAL_S);
  try {
    for (const batch of [1, 2]) {
      writeOld(db, batch);
      assert.deepEqual(left(store), { policies: 4 * batch - (batch - 1) * 3, gone: 1, oldSamples: 2, freshSamples: batch, heat: 1 }, `batch ${batch} written`);
      const { elapsed, last } = await waitFor(store, 3 * INTERVAL_S * 1000 + 3000, (l) => l.gone === 0 && l.oldSamples === 0 && l.policies === 1 && l.heat === 0);
      assert.deepEqual(last, { ...DROPPED, freshSamples: batch }, `batch ${batch}: dropped by the periodic pass (${elapsed} ms)`);
      // One interval plus scheduling slack on this shared machine.
      assert.ok(elapsed <= INTERVAL_S * 1000 + 2500, `batch ${batch} dropped after ${elapsed} ms, interval ${INTERVAL_S} s`);
      assert.equal(store.currentPolicy(VM)!.policy.scan.intervalMs, 999 + batch, 'the newest policy version stays');
      assert.equal(served.child.exitCode, null, 'the same process, not restarted');
    }
    const r = await fetch(`${served.url}/v1/vms/${VM}/policy`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as { version: number }).version, 8, 'the policy in force is the newest version (4 per batch)');
  } finally {
    store.close();
    await served.stop();
  }
});

test('control: with an hourly interval the same rows stay after the same wait (only the start-time pass ran)', async () => {
  const { served, db, store } = await serveWith('hourly', 3600);
  try {
    writeOld(db, 1);
    const { last } = await waitFor(store, 2 * 1000 + 2500, (l) => l.gone === 0);
    assert.deepEqual(last, { policies: 4, gone: 1, oldSamples: 2, freshSamples: 1, heat: 1 });
  } finally {
    store.close();
    await served.stop();
  }
});
