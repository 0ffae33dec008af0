// DamonTracker against FakeDamonKernel (a model of DAMON's sysfs files over a temporary
// tree; the real writable DAMON sysfs must not be touched on this machine).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DamonTracker, DAMON_POOL_FILE, damonStateFile, type DamonOwnerRecord } from '../../src/scan/damon.js';
import { DamonKdamondPool, LEGACY_DAMON_STATE_FILE } from '../../src/scan/damon-pool.js';
import { DamonSysfs } from '../../src/scan/damon-sysfs.js';
import { isVmtierError, KernelError } from '../../src/errors.js';
import { FakeDamonKernel } from './fake-damon-kernel.js';

const MiB = 1024 * 1024;
const TARGET = 4242;
const BASE = 0x7f0000000000;
/** kdamond directories the pool creates in these tests. */
const SLOTS = 4;
const STATE0 = damonStateFile(0);

function setup(opts: { avail?: string[]; sync?: boolean } = {}) {
  const k = new FakeDamonKernel({ availOperations: opts.avail });
  k.addProcess(TARGET, 'workload');
  const runDir = mkdtempSync(join(tmpdir(), 'vmtier-damon-run-'));
  const mk = (extra: { pool?: DamonKdamondPool; kdamondSlots?: number } = {}) =>
    new DamonTracker({ sysfsRoot: k.root, io: k.io({ sync: opts.sync }), procRoot: k.procRoot, runDir, exitHook: false, kdamondSlots: SLOTS, ...extra });
  return { k, runDir, mk, done: () => { k.cleanup(); rmSync(runDir, { recursive: true, force: true }); } };
}

test('creates its own kdamond with fvaddr, fixed regions and a stat scheme that matches every region', async () => {
  const { k, mk, runDir, done } = setup();
  try {
    const t = mk();
    await t.track(TARGET, [{ start: BASE, end: BASE + 8 * MiB }]);
    assert.equal(k.get('kdamonds/nr_kdamonds'), String(SLOTS), 'the pool creates its directories at once');
    assert.equal(k.get('kdamonds/0/state'), 'on');
    assert.equal(k.get('kdamonds/1/state'), 'off');
    assert.ok(existsSync(join(runDir, DAMON_POOL_FILE)));
    assert.equal(k.get('kdamonds/0/contexts/0/operations'), 'fvaddr');
    assert.equal(k.get('kdamonds/0/contexts/0/targets/0/pid_target'), String(TARGET));
    // The stat scheme's maxima must be raised from the 6.12 default of 0.
    assert.notEqual(k.get('kdamonds/0/contexts/0/schemes/0/access_pattern/nr_accesses/max'), '0');
    assert.notEqual(k.get('kdamonds/0/contexts/0/schemes/0/access_pattern/sz/max'), '0');
    const nr = Number(k.get('kdamonds/0/contexts/0/targets/0/regions/nr_regions'));
    let covered = 0;
    for (let i = 0; i < nr; i++) {
      const s = Number(k.get(`kdamonds/0/contexts/0/targets/0/regions/${i}/start`));
      const e = Number(k.get(`kdamonds/0/contexts/0/targets/0/regions/${i}/end`));
      assert.ok(e > s);
      covered += e - s;
    }
    assert.equal(covered, 8 * MiB, 'init regions cover exactly the tracked range');
    const rec = JSON.parse(readFileSync(join(runDir, STATE0), 'utf8')) as DamonOwnerRecord;
    assert.equal(rec.kdamond, 0);
    assert.equal(rec.kdamondPid, Number(k.get('kdamonds/0/pid')));
    assert.equal(rec.ownerPid, process.pid);
    await t.close();
    assert.equal(k.get('kdamonds/nr_kdamonds'), '0', 'close removes the kdamond directory');
    assert.equal(existsSync(join(runDir, STATE0)), false, 'close removes the state file');
    assert.equal(existsSync(join(runDir, DAMON_POOL_FILE)), false, 'and the last one out the pool file');
    await t.close(); // idempotent
  } finally {
    done();
  }
});

for (const sync of [false, true]) test(`one scan per aggregation snapshot: a page counts when its region had nr_accesses >= 1 (${sync ? 'sync' : 'async'} bulk io)`, async () => {
  const { k, mk, done } = setup({ sync });
  try {
    // 4 MiB tracked, all present; hot: [1 MiB, 2 MiB) always, [3 MiB, 3 MiB+64 KiB) in updates 0 and 2 only.
    k.setPresent(TARGET, BASE, BASE + 4 * MiB);
    k.accessModel = (r, u) => {
      const off = r.start - BASE;
      if (off >= MiB && off < 2 * MiB) return 7;
      if (off === 3 * MiB) return u % 2 === 0 ? 1 : 0;
      return 0;
    };
    const t = mk();
    await t.track(TARGET, [{ start: BASE, end: BASE + 4 * MiB }]);
    const seenScans: number[] = [];
    const c = new Uint8Array(1024).fill(0xff);
    const res = await t.scan({ scans: 4, intervalMs: 50, counts: c, onScan: (i) => seenScans.push(i) });
    assert.deepEqual(seenScans, [0, 1, 2, 3]);
    assert.equal(c[0], 0);
    assert.equal(c[256], 4);
    assert.equal(c[511], 4);
    assert.equal(c[512], 0);
    assert.equal(c[768], 2);
    assert.equal(c[768 + 15], 2);
    assert.equal(c[768 + 16], 0);
    assert.deepEqual([...res.ranges[0]!.mapped], [0, 1024, 0], 'all present, as one run of unknown page size');
    // The interval change was applied to the running kdamond.
    assert.equal(k.get('kdamonds/0/contexts/0/monitoring_attrs/intervals/aggr_us'), '50000');
    assert.ok(k.writes.some((w) => w.path === 'kdamonds/0/state' && w.value === 'commit'));
    await t.close();
  } finally {
    done();
  }
});

test('not-present pages report count 0 even inside an accessed region', async () => {
  const { k, mk, done } = setup();
  try {
    k.setPresent(TARGET, BASE, BASE + 64 * 1024);
    k.accessModel = () => 3;
    const t = mk();
    await t.track(TARGET, [{ start: BASE, end: BASE + 128 * 1024 }]);
    const counts = new Uint8Array(32);
    const r = (await t.scan({ scans: 2, intervalMs: 10, counts })).ranges[0]!;
    assert.equal(counts[0], 2);
    assert.equal(counts[15], 2);
    assert.deepEqual([...r.mapped], [0, 16, 0], 'pages 16.. are in no run: not present');
    assert.deepEqual([...counts.subarray(16)], new Array(16).fill(0));
    await t.close();
  } finally {
    done();
  }
});

test('refuses with TRACKER_BUSY and writes nothing while a foreign kdamond runs', async () => {
  const { k, mk, runDir, done } = setup();
  try {
    k.addForeignKdamond('on');
    const t = mk();
    await assert.rejects(t.track(TARGET, [{ start: BASE, end: BASE + MiB }]), (e) => isVmtierError(e, 'TRACKER_BUSY'));
    assert.deepEqual(k.writes, []);
    assert.equal(existsSync(join(runDir, STATE0)), false);
    assert.equal(k.get('kdamonds/0/state'), 'on');
  } finally {
    done();
  }
});

test('refuses when foreign kdamond directories exist even if off (nr_kdamonds would erase them)', async () => {
  const { k, mk, done } = setup();
  try {
    k.addForeignKdamond('off', 'vaddr');
    await assert.rejects(mk().track(TARGET, [{ start: BASE, end: BASE + MiB }]), (e) => isVmtierError(e, 'TRACKER_BUSY'));
    assert.deepEqual(k.writes, []);
  } finally {
    done();
  }
});

test('refuses when a kdamond thread runs outside sysfs (DAMON_RECLAIM and the like)', async () => {
  const { k, mk, done } = setup();
  try {
    k.addProcess(555, 'kdamond.0');
    await assert.rejects(mk().track(TARGET, [{ start: BASE, end: BASE + MiB }]), (e) => isVmtierError(e, 'TRACKER_BUSY'));
    assert.deepEqual(k.writes, []);
  } finally {
    done();
  }
});

test('TRACKER_UNAVAILABLE without vaddr, and the probe kdamond is removed again', async () => {
  const { k, mk, runDir, done } = setup({ avail: ['paddr'] });
  try {
    await assert.rejects(mk().track(TARGET, [{ start: BASE, end: BASE + MiB }]), (e) => isVmtierError(e, 'TRACKER_UNAVAILABLE'));
    assert.equal(k.get('kdamonds/nr_kdamonds'), '0');
    assert.equal(existsSync(join(runDir, STATE0)), false);
  } finally {
    done();
  }
});

test('TRACKER_UNAVAILABLE when the sysfs root does not exist', async () => {
  const t = new DamonTracker({ sysfsRoot: '/nonexistent/damon/admin', runDir: tmpdir(), exitHook: false });
  await assert.rejects(t.track(process.pid, [{ start: BASE, end: BASE + MiB }]), (e) => isVmtierError(e, 'TRACKER_UNAVAILABLE'));
});

test('crash-restart: a stale kdamond of a dead owner is turned off and removed, then tracking proceeds', async () => {
  const { k, mk, runDir, done } = setup();
  try {
    // The crashed process: its own pool (this process's shared one must not know it).
    const crashedPool = new DamonKdamondPool(new DamonSysfs(k.root, k.io()), { procRoot: k.procRoot, runDir, slots: SLOTS });
    const crashed = mk({ pool: crashedPool });
    await crashed.track(TARGET, [{ start: BASE, end: BASE + MiB }]);
    const stalePid = Number(k.get('kdamonds/0/pid'));
    // Simulate the owner's death: the records now name a process that no longer exists.
    const path = join(runDir, STATE0);
    const rec = JSON.parse(readFileSync(path, 'utf8')) as DamonOwnerRecord;
    writeFileSync(path, JSON.stringify({ ...rec, ownerPid: 77777 }));
    const poolPath = join(runDir, DAMON_POOL_FILE);
    writeFileSync(poolPath, JSON.stringify({ ...JSON.parse(readFileSync(poolPath, 'utf8')), ownerPid: 77777 }));
    const fresh = mk();
    await fresh.track(TARGET, [{ start: BASE, end: BASE + MiB }]);
    assert.equal(k.get('kdamonds/nr_kdamonds'), String(SLOTS));
    assert.equal(fresh.kdamond, 0, 'the freed slot is taken again');
    assert.equal(k.get('kdamonds/0/state'), 'on');
    assert.notEqual(Number(k.get('kdamonds/0/pid')), stalePid, 'a new kdamond runs');
    assert.ok(k.writes.some((w) => w.path === 'kdamonds/0/state' && w.value === 'off'), 'the stale kdamond was turned off');
    assert.equal((JSON.parse(readFileSync(path, 'utf8')) as DamonOwnerRecord).ownerPid, process.pid);
    assert.equal(JSON.parse(readFileSync(poolPath, 'utf8')).ownerPid, process.pid, 'the pool is adopted');
    await fresh.close();
    assert.equal(k.get('kdamonds/nr_kdamonds'), '0');
  } finally {
    done();
  }
});

test('crash-restart with several VMs: every stale kdamond of the dead owner is turned off', async () => {
  const { k, mk, runDir, done } = setup();
  try {
    const crashedPool = new DamonKdamondPool(new DamonSysfs(k.root, k.io()), { procRoot: k.procRoot, runDir, slots: SLOTS });
    const pids = [TARGET, 4243, 4244];
    for (const p of pids.slice(1)) k.addProcess(p, 'qemu');
    for (const p of pids) await mk({ pool: crashedPool }).track(p, [{ start: BASE, end: BASE + MiB }]);
    assert.deepEqual([0, 1, 2].map((i) => k.get(`kdamonds/${i}/state`)), ['on', 'on', 'on']);
    for (const name of [STATE0, damonStateFile(1), damonStateFile(2), DAMON_POOL_FILE]) {
      const path = join(runDir, name);
      writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, 'utf8')), ownerPid: 77777 }));
    }
    const fresh = mk();
    await fresh.track(TARGET, [{ start: BASE, end: BASE + MiB }]);
    assert.deepEqual([1, 2].map((i) => k.get(`kdamonds/${i}/state`)), ['off', 'off']);
    assert.equal(existsSync(join(runDir, damonStateFile(1))), false);
    assert.equal(existsSync(join(runDir, damonStateFile(2))), false);
    await fresh.close();
    assert.equal(k.get('kdamonds/nr_kdamonds'), '0');
  } finally {
    done();
  }
});

test('crash-restart leaves alone a kdamond that no longer matches the record (state file of the one-kdamond layout)', async () => {
  const { k, mk, runDir, done } = setup();
  try {
    k.addForeignKdamond('on', 'vaddr');
    const foreignPid = k.get('kdamonds/0/pid');
    writeFileSync(join(runDir, LEGACY_DAMON_STATE_FILE), JSON.stringify({
      version: 1, sysfsRoot: k.root, kdamond: 0, kdamondPid: 12345, targetPid: TARGET, ownerPid: 77777, ownerStart: null, createdAt: '',
    }));
    await assert.rejects(mk().track(TARGET, [{ start: BASE, end: BASE + MiB }]), (e) => isVmtierError(e, 'TRACKER_BUSY'));
    assert.equal(k.get('kdamonds/0/state'), 'on');
    assert.equal(k.get('kdamonds/0/pid'), foreignPid);
    assert.deepEqual(k.writes, []);
  } finally {
    done();
  }
});

test('a live other vmtier process owning the kdamonds means TRACKER_BUSY, with nothing written', async () => {
  const { k, mk, runDir, done } = setup();
  try {
    k.addProcess(5555, 'node');
    writeFileSync(join(runDir, DAMON_POOL_FILE), JSON.stringify({
      version: 1, sysfsRoot: k.root, nrKdamonds: SLOTS, ownerPid: 5555, ownerStart: null, createdAt: '',
    }));
    await assert.rejects(mk().track(TARGET, [{ start: BASE, end: BASE + MiB }]), (e) => isVmtierError(e, 'TRACKER_BUSY') && /pid 5555/.test((e as Error).message));
    assert.deepEqual(k.writes, []);
  } finally {
    done();
  }
});

test('many VMs: one kdamond each, started at once; a VM beyond the slots is refused saying why, and gets a slot once one frees', async () => {
  const { k, mk, runDir, done } = setup();
  try {
    const vms = [TARGET, 4301, 4302, 4303].map((pid, i) => ({ pid, base: BASE + i * 64 * MiB }));
    for (const v of vms.slice(1)) k.addProcess(v.pid, 'qemu');
    for (const v of vms) k.setPresent(v.pid, v.base, v.base + 2 * MiB);
    // Every VM's first MiB is hot (nr_accesses 1 + its index), its second MiB never accessed.
    k.accessModel = (r) => {
      const i = Math.floor((r.start - BASE) / (64 * MiB));
      return r.start - (BASE + i * 64 * MiB) < MiB ? 1 + i : 0;
    };
    const trackers = vms.slice(0, 3).map(() => mk({ kdamondSlots: 3 }));
    await Promise.all(trackers.map((t, i) => t.track(vms[i]!.pid, [{ start: vms[i]!.base, end: vms[i]!.base + 2 * MiB }])));
    assert.deepEqual(trackers.map((t) => t.kdamond).sort(), [0, 1, 2], 'one kdamond per VM');
    for (const t of trackers) {
      const kd = t.kdamond!;
      assert.equal(k.get(`kdamonds/${kd}/state`), 'on');
      assert.equal(k.get(`kdamonds/${kd}/contexts/0/targets/0/pid_target`), String(t.owner!.targetPid));
      const rec = JSON.parse(readFileSync(join(runDir, damonStateFile(kd)), 'utf8')) as DamonOwnerRecord;
      assert.equal(rec.kdamondPid, Number(k.get(`kdamonds/${kd}/pid`)), 'one ownership file per kdamond');
    }
    // Scans run side by side, each on its own kdamond's regions.
    const counts = trackers.map(() => new Uint8Array(512));
    const results = await Promise.all(trackers.map((t, i) => t.scan({ scans: 2, intervalMs: 10, counts: counts[i]! })));
    for (const c of counts) {
      assert.equal(c[0], 2);
      assert.equal(c[255], 2);
      assert.equal(c[256], 0);
    }
    assert.deepEqual(results.map((r) => r.pid), vms.slice(0, 3).map((v) => v.pid));
    // The fourth VM: every slot is taken.
    const fourth = mk({ kdamondSlots: 3 });
    await assert.rejects(fourth.track(vms[3]!.pid, [{ start: vms[3]!.base, end: vms[3]!.base + 2 * MiB }]),
      (e) => isVmtierError(e, 'TRACKER_BUSY') && /all 3 kdamonds/.test((e as Error).message));
    const freed = trackers[1]!.kdamond;
    await trackers[1]!.close();
    assert.equal(k.get('kdamonds/nr_kdamonds'), '3', 'the others keep running: no directory is recreated');
    await fourth.track(vms[3]!.pid, [{ start: vms[3]!.base, end: vms[3]!.base + 2 * MiB }]);
    assert.equal(fourth.kdamond, freed);
    const fourthCounts = new Uint8Array(512);
    await fourth.scan({ scans: 1, intervalMs: 10, counts: fourthCounts });
    assert.equal(fourthCounts[0], 1);
    await Promise.all([trackers[0]!.close(), trackers[2]!.close(), fourth.close()]);
    assert.equal(k.get('kdamonds/nr_kdamonds'), '0', 'the last one out removes the directories');
    assert.equal(existsSync(join(runDir, DAMON_POOL_FILE)), false);
  } finally {
    done();
  }
});

test('a snapshot command refused EBUSY (another kdamond holds DAMON\'s one command slot) is retried', async () => {
  const { k, mk, done } = setup();
  try {
    k.setPresent(TARGET, BASE, BASE + MiB);
    k.accessModel = () => 1;
    const t = mk();
    await t.track(TARGET, [{ start: BASE, end: BASE + MiB }]);
    k.busyCommands = 5;
    const counts = new Uint8Array(256);
    await t.scan({ scans: 2, intervalMs: 10, counts });
    assert.equal(counts[0], 2, 'both scans counted');
    assert.equal(k.busyCommands, 0);
    assert.equal(t.sysfs.busyRetries, 5);
    await t.close();
  } finally {
    done();
  }
});

test('target exits during a scan: KERNEL_ERROR ESRCH and the kdamond is cleaned up', async () => {
  const { k, mk, runDir, done } = setup();
  try {
    k.setPresent(TARGET, BASE, BASE + MiB);
    k.accessModel = () => 1;
    const t = mk();
    await t.track(TARGET, [{ start: BASE, end: BASE + MiB }]);
    const p = t.scan({ scans: 5, intervalMs: 10, counts: new Uint8Array(256), onScan: (i) => { if (i === 1) k.removeProcess(TARGET); } });
    await assert.rejects(p, (e) => e instanceof KernelError && e.errno === 3);
    assert.equal(k.get('kdamonds/nr_kdamonds'), '0');
    assert.equal(existsSync(join(runDir, STATE0)), false);
  } finally {
    done();
  }
});

test('track of a gone pid is ESRCH before anything is written', async () => {
  const { k, mk, done } = setup();
  try {
    await assert.rejects(mk().track(31337, [{ start: BASE, end: BASE + MiB }]), (e) => e instanceof KernelError && e.errno === 3);
    assert.deepEqual(k.writes, []);
  } finally {
    done();
  }
});

test('an aborted scan rejects with the abort reason and close still cleans up', async () => {
  const { k, mk, done } = setup();
  try {
    const t = mk();
    await t.track(TARGET, [{ start: BASE, end: BASE + MiB }]);
    const ac = new AbortController();
    ac.abort(new Error('stopping'));
    await assert.rejects(t.scan({ scans: 2, intervalMs: 10, counts: new Uint8Array(256), signal: ac.signal }), /stopping/);
    await t.close();
    assert.equal(k.get('kdamonds/nr_kdamonds'), '0');
  } finally {
    done();
  }
});

test('DamonSysfs.readTriedRegions sorts regions and reports nr_accesses and age', async () => {
  const { k, done } = setup();
  try {
    const s = new DamonSysfs(k.root, k.io());
    await s.setNrKdamonds(1);
    await s.configure(0, {
      operations: 'vaddr', pid: TARGET, regions: [{ start: BASE, end: BASE + 256 * 1024 }],
      attrs: { sampleUs: 1000, aggrUs: 10000, updateUs: 1000000, minRegions: 10, maxRegions: 20 },
    });
    k.accessModel = (r) => ((r.start - BASE) / 65536) * 2;
    await s.command(0, 'on');
    const regions = await s.snapshotRegions(0);
    assert.deepEqual(regions.map((r) => [r.start - BASE, r.end - BASE, r.nrAccesses]), [
      [0, 65536, 0], [65536, 131072, 2], [131072, 196608, 4], [196608, 262144, 6],
    ]);
    await s.command(0, 'off');
  } finally {
    done();
  }
});

test('track() again replaces the tracked set on the same kdamond', async () => {
  const { k, mk, done } = setup();
  try {
    k.setPresent(TARGET, BASE, BASE + 4 * MiB);
    k.accessModel = (r) => (r.start - BASE >= 2 * MiB ? 1 : 0);
    const t = mk();
    await t.track(TARGET, [{ start: BASE, end: BASE + MiB }]);
    const first = Number(k.get('kdamonds/0/pid'));
    await t.track(TARGET, [{ start: BASE + 2 * MiB, end: BASE + 4 * MiB }]);
    assert.equal(k.get('kdamonds/nr_kdamonds'), String(SLOTS));
    assert.equal(t.kdamond, 0);
    assert.equal(k.get('kdamonds/0/state'), 'on');
    assert.notEqual(Number(k.get('kdamonds/0/pid')), first, 'restarted with the new regions');
    assert.equal(Number(k.get('kdamonds/0/contexts/0/targets/0/regions/0/start')), BASE + 2 * MiB);
    const counts = new Uint8Array(512);
    const r = await t.scan({ scans: 2, intervalMs: 10, counts });
    assert.equal(r.ranges.length, 1);
    assert.equal(r.ranges[0]!.start, BASE + 2 * MiB);
    assert.ok(counts.every((c) => c === 2));
    // The old set's size no longer fits.
    await assert.rejects(t.scan({ scans: 1, intervalMs: 10, counts: new Uint8Array(256) }), (e) => isVmtierError(e, 'INVALID_INPUT'));
    await t.close();
    assert.equal(k.get('kdamonds/nr_kdamonds'), '0');
  } finally {
    done();
  }
});
