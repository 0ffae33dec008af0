// The DAMON tracker on a real DAMON (Debian 6.12 in the lab): hot-set precision and recall
// on the lab workload (the same workload and parameters as the kmod lab test, so the
// figures sit side by side), the target exiting mid-scan, crash-restart cleanup, and
// `vmtier scan --tracker damon --json`. test/lab/damon-guest.ts runs inside the guest and
// prints what it saw; the assertions are here. Every case ends with the guest's dmesg checked.
import { before, after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LabSession, ensureWorkload } from '../../lab/index.js';
import { repoRoot } from '../../lab/paths.js';

const BAD_DMESG = /WARNING:|BUG:|Oops|general protection|Call Trace|RIP:|refcount_t:|list_(add|del) corruption|sleeping function called|soft lockup|rcu_\w+ (self-)?detected stall|hung_task|UBSAN|KASAN/;

describe('DAMON tracker in the lab (Debian 6.12)', { timeout: 1_800_000 }, () => {
  let lab: LabSession;
  let workload = '';

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async function guest(...args: string[]): Promise<Record<string, any>> {
    const r = await lab.run(['node', 'dist/test/lab/damon-guest.js', ...args], { timeoutMs: 400_000, env: { VMTIER_WORKLOAD: workload } });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    assert.equal(r.status, 0, `damon-guest ${args[0]} exited ${r.status}: ${line} ${r.stderr.slice(-2000)}`);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    return JSON.parse(line) as Record<string, any>;
  }

  async function assertCleanDmesg(): Promise<void> {
    const bad = (await lab.dmesg()).split('\n').filter((l) => BAD_DMESG.test(l));
    assert.deepEqual(bad, [], 'kernel warnings in the lab guest');
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  function assertNoKdamondLeft(state: any, what: string): void {
    assert.equal(state.nrKdamonds, 0, `${what}: kdamond directory left behind`);
    assert.deepEqual(state.threads, [], `${what}: kdamond thread left running`);
  }

  before(async () => {
    workload = ensureWorkload();
    lab = await LabSession.start({});
  });

  after(async () => {
    await lab?.close();
  });

  // Same workload as the kmod lab test: 64 MiB touched once, 8 MiB hot written 10x/s; 4 scans 1 s apart.
  const common = ['--size', '64m', '--hot', '8m', '--rate', '10'];
  const cases: { name: string; args: string[]; regions?: [string, string]; floor: { precision: number; recallSeen: number; recall?: number } }[] = [
    // Floors are what DAMON reached here, rounded down; contiguous sets are where DAMON must be exact.
    { name: '4 KiB pages, contiguous hot set', args: ['--layout', 'contiguous', '--thp', 'off'], floor: { precision: 0.95, recallSeen: 0.95, recall: 0.95 } },
    // THP: one run in four lost a whole scan (every hot page at 3 of 4), so recall over all scans is printed, not asserted.
    { name: 'THP, contiguous hot set', args: ['--layout', 'contiguous', '--thp', 'on'], floor: { precision: 0.95, recallSeen: 0.95 } },
    { name: 'THP, scattered hot set (2 MiB chunks)', args: ['--layout', 'scattered', '--thp', 'on'], floor: { precision: 0.9, recallSeen: 0.95 } },
    // 64 KiB chunks every 512 KiB are finer than default regions (64 MiB / 32..64 regions): every region
    // holds hot pages, so DAMON calls everything hot. Precision falls to the hot share (0.125); recall stays.
    { name: '4 KiB pages, scattered hot set (64 KiB chunks), default regions', args: ['--layout', 'scattered', '--thp', 'off'], floor: { precision: 0.12, recallSeen: 0.95 } },
    // With regions as small as the chunks (min 1024 regions = 64 KiB each), DAMON resolves them.
    { name: '4 KiB pages, scattered hot set (64 KiB chunks), 1024..2048 regions', args: ['--layout', 'scattered', '--thp', 'off'], regions: ['1024', '2048'], floor: { precision: 0.95, recallSeen: 0.95 } },
  ];
  for (const c of cases) {
    test(`hot set precision/recall: ${c.name}`, async () => {
      const [minR, maxR] = c.regions ?? ['-', '-'];
      const r = await guest('accuracy', '4', '1000', minR, maxR, '-', '--', workload, ...common, ...c.args);
      process.stdout.write(`# damon lab (TCG) ${c.name}: precision ${r.precision.toFixed(3)} recall(all scans) ${r.recall.toFixed(3)} ` +
        `recall(>=1 scan) ${r.recallSeen.toFixed(3)} precision(all scans) ${r.precisionFull.toFixed(3)} regions ${r.regionsAtEnd} ` +
        `scan ${(r.scanMs / 1000).toFixed(1)} s for ${r.scans} x ${r.intervalMs} ms; hot hist ${JSON.stringify(r.hotHist)} cold hist ${JSON.stringify(r.coldHist)}\n`);
      assert.equal(r.ops, 'fvaddr');
      assert.equal(r.hotPages, 2048);
      assert.equal(r.presentPages, r.pages, 'every page of the footprint was touched, so all are present');
      assert.ok(r.precision >= c.floor.precision, `precision ${r.precision} < ${c.floor.precision}`);
      assert.ok(r.recallSeen >= c.floor.recallSeen, `recall(>=1 scan) ${r.recallSeen} < ${c.floor.recallSeen}`);
      // recall as the kmod test defines it: hot pages seen in every scan.
      if (c.floor.recall !== undefined) assert.ok(r.recall >= c.floor.recall, `recall(all scans) ${r.recall} < ${c.floor.recall}`);
      await assertCleanDmesg();
    });
  }

  test('target exits during a scan: KERNEL_ERROR ESRCH, kdamond and state file gone', async () => {
    const r = await guest('exit');
    assert.ok(r.during.nrKdamonds >= 1, 'the tracker created its kdamond (a slot of the pool)');
    assert.equal(r.during.threads.length, 1);
    assert.equal(r.killedAfter, 1, 'the target was killed after the second scan');
    assert.equal(r.outcome.ok, false, JSON.stringify(r.outcome));
    assert.equal(r.outcome.code, 'KERNEL_ERROR');
    assert.equal(r.outcome.errno, 3);
    assertNoKdamondLeft(r.after, 'after exit');
    assert.deepEqual(r.stateFiles, []);
    await assertCleanDmesg();
  });

  test('crash-restart: a SIGKILLed owner leaves a kdamond; the next tracker removes it and works', async () => {
    const r = await guest('crash');
    assert.ok(r.held.nrKdamonds >= 1);
    assert.equal(r.held.record.kdamondPid, r.held.threads[0], 'the state file names the running kdamond');
    assert.equal(r.afterKill.threads.length, 1, 'SIGKILL leaves the kdamond running');
    assert.equal(r.outcome.ok, true, JSON.stringify(r.outcome));
    assert.notEqual(r.outcome.kdamondPid, r.held.record.kdamondPid, 'a new kdamond replaced the stale one');
    // Accuracy is measured by the cases above; here it is enough that the new kdamond monitors the target
    // (one run under a loaded host saw 0.92 of the hot set at 200 ms without a settle time).
    assert.ok(r.outcome.recallSeen >= 0.5, `the fresh tracker sees the hot set: ${r.outcome.recallSeen}`);
    assertNoKdamondLeft(r.after, 'after close');
    assert.deepEqual(r.stateFiles, []);
    await assertCleanDmesg();
  });

  test('three VMs at once: one kdamond each, each sees its own hot set; all gone after close', async () => {
    const r = await guest('many', '3');
    process.stdout.write(`# damon lab (TCG) 3 targets at once: kdamonds ${JSON.stringify(r.kdamonds)} threads ${r.during.threads.length} ` +
      `track ${Math.round(r.trackMs)} ms; recall(>=1) ${r.acc.map((a: any) => a.recallSeen.toFixed(3)).join(' ')} precision ${r.acc.map((a: any) => a.precision.toFixed(3)).join(" ")} region limit ${r.acc.map((a: any) => a.regionLimitPages).join(" ")} pages\n`);
    assert.equal(new Set(r.kdamonds).size, 3, 'three distinct kdamonds');
    assert.deepEqual(r.targetPids, r.pids, 'each kdamond monitors its own VM');
    assert.equal(r.during.threads.length, 3, 'three kdamond threads run at once');
    assert.equal(r.states.filter((f: string) => /^damon-kdamond-\d+\.json$/.test(f)).length, 3, 'one ownership file per kdamond');
    for (const a of r.acc) {
      assert.equal(a.hotPages, a.hotMiB * 256);
      assert.ok(a.recallSeen >= 0.95, `pid ${a.pid}: recall(>=1) ${a.recallSeen}`);
      // The hot set is not aligned to DAMON's regions (default sizes: at most 16 MiB / 10), so the region
      // holding each of its two ends may be partly cold and read as accessed; nothing else may. One CI run
      // saw 267 cold pages seen beside a 512-page hot set (precision 0.66): one boundary region, as DAMON works.
      const coldSeen = Math.round(a.seenPages - a.hotPages * a.recallSeen);
      assert.ok(a.regionLimitPages > 0 && a.regionLimitPages <= 512, `pid ${a.pid}: region limit ${a.regionLimitPages} pages`);
      assert.ok(coldSeen <= 2 * a.regionLimitPages, `pid ${a.pid}: ${coldSeen} cold pages seen, more than the two boundary regions ` +
        `(${2 * a.regionLimitPages} pages); precision ${a.precision}`);
    }
    assertNoKdamondLeft(r.after, 'after close');
    assert.deepEqual(r.stateFiles, []);
    await assertCleanDmesg();
  });

  // Issue 17, runtime faults: the daemon's Engine tracks the workload with DAMON
  // (test/lab/tracker-faults-guest.ts) and another writer turns its kdamond off mid-scan, twice.
  // What vmtier does, deliberately: the scan fails with a typed error naming the cause, counted;
  // the loop keeps its rounds (placement only) and starts a fresh kdamond at the first round
  // after the tracker backoff (5 s, doubling while no scan has succeeded since), never at once.
  test('engine\'s kdamond turned off by another writer mid-scan: counted, typed error, restarted after the backoff (5 s, then 10 s)', async (t) => {
    const run = await lab.run(['node', 'dist/test/lab/tracker-faults-guest.js', 'damon'], { timeoutMs: 900_000 });
    const r = JSON.parse(run.stdout.trim().split('\n').pop() || '{}');
    assert.equal(run.status, 0, `tracker-faults-guest exited ${run.status}: ${run.stderr.slice(-2000)}`);
    assert.equal(r.failed, undefined, `tracker-faults-guest failed: ${JSON.stringify(r)}`);
    t.diagnostic(`damon fault lab (TCG): noticed ${r.noticedMs} ms after the off; restarts ${r.restart1.afterMs} ms and ${r.restart2.afterMs} ms after each off; ` +
      `${r.roundsAtRestart2 - r.offRound} rounds meanwhile; tracker backoff ${r.failed1?.trackerBackoffMs} then ${r.failed2?.trackerBackoffMs} ms`);
    assert.equal(r.first.length, 1, `kdamonds on before: ${JSON.stringify(r.first)}`);
    // Noticed by the scan it interrupted (or the next one): within a round or two (rounds take
    // 1 s here and over 5 s on a loaded host: 11 s seen at load 20).
    assert.ok(r.noticedMs < 60_000, `noticed after ${r.noticedMs} ms`);
    const f1 = r.failed1;
    assert.equal(f1.tracker.available, false);
    assert.equal(f1.tracker.error.code, 'KERNEL_ERROR');
    assert.match(f1.tracker.error.message, /turned off by another writer during the scan/);
    assert.equal(f1.trackerFailures, 1);
    assert.equal(f1.trackerBackoffMs, 5000, 'the tracker backoff in force');
    assert.equal(f1.roundFailures, 0, 'the round itself went on (placement only)');
    // Not restarted in a loop: one new kdamond after the 5 s backoff, one start.
    assert.ok(r.restart1.afterMs >= 4500 && r.restart1.afterMs <= 180_000, `restart ${r.restart1.afterMs} ms after the off`);
    assert.equal(r.startsAtRestart1, r.up.trackerStarts + 1);
    // Turned off again before a scan of it succeeded: counted, and the next restart waits 10 s.
    assert.equal(r.failed2.trackerFailures, 2);
    // Doubled: the start in between did not reset it, only a successful scan does.
    assert.equal(r.failed2.trackerBackoffMs, 10_000, 'the tracker backoff in force');
    assert.equal(r.failed2.tracker.available, false);
    assert.equal(r.failed2.tracker.error.code, 'KERNEL_ERROR');
    assert.ok(r.restart2.afterMs >= 9500 && r.restart2.afterMs <= 240_000, `second restart ${r.restart2.afterMs} ms after the off`);
    assert.equal(r.startsAtRestart2, r.up.trackerStarts + 2);
    // Rounds went on meanwhile, more of them than starts (a retry per round would make them equal).
    assert.ok(r.roundsAtRestart2 - r.offRound > 2 * 2, `only ${r.roundsAtRestart2 - r.offRound} rounds while the tracker was down`);
    // Back: scanning, the hot 8 MiB seen, no further failure; the counter on /metrics agrees.
    assert.equal(r.recovered.tracker.available, true);
    assert.ok(r.recovered.scans > 0 && r.recovered.hotMB >= 8 * 0.9 && r.recovered.hotMB <= 12, JSON.stringify(r.recovered));
    assert.equal(r.recovered.trackerFailures, 2);
    assert.equal(r.recovered.trackerBackoffMs, null, 'a successful scan resets the tracker backoff');
    assert.equal(r.failuresMetric, 2, 'vmtier_engine_tracker_failures_total');
    assert.equal(r.engineRunning, true);
    assert.deepEqual(r.afterStop, { kdamonds: [], threads: [] }, 'the engine left a kdamond behind');
    await assertCleanDmesg();
  });

  test('vmtier scan --pid --tracker damon --json prints maximal runs over the process mappings', async () => {
    const r = await guest('cli', 'bin/vmtier.js');
    assert.equal(r.status, 0, r.stderr);
    for (const text of [r.stdout, r.ranged.stdout]) {
      const out = JSON.parse(text);
      assert.deepEqual(Object.keys(out), ['tracker', 'scans', 'pageSize', 'ranges']);
      assert.equal(out.tracker, 'damon');
      assert.equal(out.pageSize, 4096);
      let prevEnd = 0;
      let prevCount = -1;
      for (const run of out.ranges) {
        assert.match(run.start, /^0x[0-9a-f]+$/);
        assert.match(run.end, /^0x[0-9a-f]+$/);
        const s = parseInt(run.start, 16);
        const e = parseInt(run.end, 16);
        assert.ok(e > s && s >= prevEnd, 'runs are sorted and disjoint');
        assert.ok(Number.isInteger(run.count) && run.count >= 0 && run.count <= out.scans);
        assert.ok(!(s === prevEnd && run.count === prevCount), 'adjacent runs differ in count (maximal)');
        prevEnd = e;
        prevCount = run.count;
      }
    }
    // Without --range the workload's anonymous footprint is among the tracked mappings.
    const out = JSON.parse(r.stdout);
    const { base, bytes, hot } = r.layout;
    assert.ok(out.ranges.some((x: { start: string; end: string }) => parseInt(x.start, 16) <= base + bytes - 4096 && parseInt(x.end, 16) > base));
    // With --range over the footprint: the hot 8 MiB is one run seen in every scan, the rest one run seen never.
    const ranged = JSON.parse(r.ranged.stdout);
    assert.deepEqual(ranged.ranges, [
      { start: `0x${hot[0].start.toString(16)}`, end: `0x${hot[0].end.toString(16)}`, count: ranged.scans },
      { start: `0x${hot[0].end.toString(16)}`, end: `0x${(base + bytes).toString(16)}`, count: 0 },
    ]);
    // --record turned what DAMON saw into a trace; replaying it over the same range reproduces the output.
    assert.equal(r.recorded.status, 0, r.recorded.stderr);
    const dir = mkdtempSync(join(tmpdir(), 'vmtier-damon-rec-'));
    try {
      const trace = join(dir, 'rec.csv');
      writeFileSync(trace, r.recorded.trace);
      const rp = spawnSync(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'scan', '--tracker', 'replay', '--trace', trace,
        '--range', r.range, '--scans', '3', '--json'], { encoding: 'utf8' });
      assert.equal(rp.status, 0, rp.stderr);
      const replayed = JSON.parse(rp.stdout);
      const recorded = JSON.parse(r.recorded.stdout);
      assert.equal(recorded.tracker, 'damon');
      assert.deepEqual(replayed.ranges, recorded.ranges);
      assert.ok(recorded.ranges.some((x: { count: number }) => x.count > 0), 'the recording saw the hot set');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assertNoKdamondLeft(r.after, 'after the CLI');
    assert.deepEqual(r.stateFiles, []);
    await assertCleanDmesg();
  });
});
