// The tiering engine end to end in the lab (issue 7's proof): libvirtd runs inside the lab, a
// two-node domain runs the freestanding guest payload (lab/guest/payload/) with its RAM bound to
// the slow host node, and `vmtier serve` in tier mode, driven over HTTP, brings the hot set to the
// DRAM node, leaves cold pages where they are, stops moving when the policy turns to observe,
// demotes the old hot set when the workload's hot set changes, and survives the domain being
// destroyed mid-round. Then the same workload under Linux's own tiering (NUMA balancing mode 2 +
// demotion), side by side. Placement is witnessed by lab/guest/pagenodes.c, not by vmtier.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LabSession } from '../../lab/index.js';
import {
  RETIER_OLD_HOT_DEMOTED, SKEW_CEILING, SKEW_FREQUENT_ON_DRAM, comparisonTable, fraction, runLinuxScenario, runSkewScenario, runVmtierScenario, skewTable,
  startLabLibvirt, type LabVirt, type LinuxRun, type VmtierRun,
} from '../../lab/guest/engine-lab.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
describe('tiering engine in the lab (libvirt domain running the guest payload)', { timeout: 1_500_000 }, () => {
  let lab: LabSession;
  let virt: LabVirt;
  let v: VmtierRun | null = null;
  let l: LinuxRun | null = null;
  const progress = (line: string) => console.log(line);

  before(async () => {
    // SVM + NPT for nested KVM; one lab CPU, as in the kmod KVM test (with two, TCG sometimes ran a
    // stale int3 of the kernel's text patching when KVM flipped its static keys).
    lab = await LabSession.start({ cpu: 'EPYC,+svm,+npt', append: ['maxcpus=1'], onProgress: progress });
    virt = await startLabLibvirt(lab);
    progress(`engine-lab: ${virt.libvirtVersion}; domains run as type '${virt.domainType}' (${virt.domainType === 'kvm' ? `nested KVM, npt=${virt.npt ? 'Y' : 'N'}` : 'TCG inside TCG'})`);
  });

  after(async () => {
    await lab?.close();
  });

  test('vmtier serve (tier): hot set to DRAM in a few rounds, no ping-pong, observe stops moves, destroy mid-round is clean', async (t) => {
    v = await runVmtierScenario(lab, virt, progress);
    t.diagnostic(`domain type: ${v.domainType}`);
    assert.match(v.serial, /"payload":"vmtier-lab"/);
    // RAM first on the slow node: the memnode strict binding put every touched page there.
    assert.equal(v.initial.hot.node1, v.initial.hot.pages, 'hot set starts on host node 1');
    assert.equal(v.initial.cold.node1, v.initial.cold.pages, 'cold pages start on host node 1');

    assert.notEqual(v.promote.seconds, null, `hot set never reached 95 % on node 0: ${JSON.stringify(v.promote.last)}`);
    assert.ok(fraction(v.promote.last.hot, 0) >= 0.95);
    assert.ok(v.promote.rounds <= 8, `took ${v.promote.rounds} rounds`);
    assert.ok(v.promote.last.cold.node0 <= v.promote.last.cold.pages * 0.05, `cold pages promoted: ${v.promote.last.cold.node0}`);

    // tier → observe: every round after the one in flight at the PUT moved nothing, although the
    // hot set changed (the payload's phase 1 runs on the slow node meanwhile).
    assert.match(v.serial, /"phase":1/, 'the key press switched the payload to phase 1');
    const later = v.observe.roundsAfter.filter((r) => r.round > v!.observe.putAfterRound + 1);
    assert.ok(later.length >= 3);
    for (const r of later) {
      assert.equal(r.mode, 'observe', `round ${r.round}`);
      assert.equal(r.promoted, 0, `round ${r.round} promoted in observe mode`);
      assert.equal(r.demoted, 0, `round ${r.round} demoted in observe mode`);
    }
    assert.ok(later.some((r) => r.hotMB > 0), 'observe rounds still scan');
    assert.deepEqual(v.observe.after.hot1, v.observe.before.hot1, 'no page of the new hot set moved in observe mode');
    assert.ok(fraction(v.observe.after.hot1, 1) >= 0.95, 'the new hot set stayed on the slow node while observing');

    // Back to tier: the new hot set is promoted and the old one, now cold, demoted to keep the VM
    // under its DRAM ceiling (vmtier demotes under pressure, not merely because a page is cold).
    assert.notEqual(v.retier.seconds, null, `re-tier incomplete: ${JSON.stringify(v.retier.last)}`);
    assert.ok(fraction(v.retier.final.hot1, 0) >= 0.95, `new hot set on node 0: ${JSON.stringify(v.retier.final.hot1)}`);
    assert.ok(fraction(v.retier.final.hot, 1) >= RETIER_OLD_HOT_DEMOTED, `old hot set demoted: ${JSON.stringify(v.retier.final.hot)}`);
    // No page went back and forth: the old hot set moved up once and down once, the new one up
    // once, the cold pages never (counted over every witness sample, 3 quiet rounds at the end).
    assert.ok(v.maxChanges.hot <= 2, `old hot set page changed node ${v.maxChanges.hot} times`);
    assert.ok(v.maxChanges.hot1 <= 1, `new hot set page changed node ${v.maxChanges.hot1} times`);
    assert.equal(v.maxChanges.cold, 0, 'a cold page moved');
    // The engine's own totals agree: about one promotion per hot page of both phases and one
    // demotion per page of the old hot set, nothing moved twice in the same direction.
    const hotPages = v.initial.hot.pages;
    const hot1Pages = v.initial.hot1.pages;
    // Slack: the payload's own pages below 2 MiB (code, stack), hot as well.
    const slack = 512;
    assert.ok(v.engineStatus.totals.promote.byClass.moved <= (hotPages + hot1Pages) * 1.05 + slack, `promoted ${v.engineStatus.totals.promote.byClass.moved} pages`);
    assert.ok(v.engineStatus.totals.demote.byClass.moved <= hotPages * 1.05 + slack, `demoted ${v.engineStatus.totals.demote.byClass.moved} pages`);

    // History and metrics over HTTP show it.
    const series = v.history.series as Array<{ hostTier: string; buckets: Array<{ hotBytes: number; movedBytes: number }> }>;
    const top = series.filter((s) => s.hostTier === 'top').flatMap((s) => s.buckets);
    const slow = series.filter((s) => s.hostTier === 'slow').flatMap((s) => s.buckets);
    assert.ok(top.some((b) => b.hotBytes > 0), 'history: hot bytes on the top tier');
    assert.ok(slow.some((b) => b.hotBytes > 0), 'history: hot bytes on the slow tier (before promotion)');
    assert.ok([...top, ...slow].reduce((s, b) => s + b.movedBytes, 0) > 0, 'history: moved bytes');
    const moved = (dir: string) => [...v!.metrics.matchAll(new RegExp(`^vmtier_engine_moved_bytes_total\\{[^}]*direction="${dir}"[^}]*\\} (\\d+)`, 'gm'))]
      .reduce((s, m) => s + Number(m[1]), 0);
    assert.ok(moved('promote') >= 16 * 2 ** 20 * 0.95, `metrics: promoted bytes ${moved('promote')}`);
    assert.ok(moved('demote') > 0, 'metrics: demoted bytes');
    assert.equal(v.engineStatus.totals.promote.byClass.other, 0);

    // Destroyed mid-round: the domain disappears from the API, nothing else goes wrong.
    assert.ok(v.afterDestroy.inRound, `destroyed ${v.afterDestroy.sinceRoundEndMs} ms after a round ended; the shortest round took ${v.afterDestroy.shortestRoundMs} ms`);
    assert.ok(v.afterDestroy.loopEnded, 'the VM loop logged its end');
    assert.equal(v.afterDestroy.engine, 404, 'the engine forgot the VM');
    assert.ok(v.afterDestroy.vm.status === 404 || v.afterDestroy.vm.running === false, `GET /v1/vms/{uuid}: ${JSON.stringify(v.afterDestroy.vm)}`);
    assert.ok(!v.afterDestroy.list.includes('vmtier-test-i-tier'));
    assert.deepEqual([v.afterDestroy.engineAll, v.afterDestroy.host, v.afterDestroy.metrics], [200, 200, 200]);
    assert.deepEqual(v.serveLogErrors, [], 'error-level lines in the serve log');
    console.log(`engine-lab: vmtier CPU per GB of guest memory per round: ${(v.cpuPerGbRound.seconds * 1000).toFixed(1)} ms (${v.cpuPerGbRound.cpuSeconds.toFixed(2)} s over ${v.cpuPerGbRound.rounds} rounds, 0.125 GB; kdamond ${v.cpuPerGbRound.kdamondSeconds.toFixed(2)} s)`);
  });

  test('the same workload under Linux tiering (numa_balancing=2 + demotion), side by side', async () => {
    const window = Math.min(120_000, Math.max(60_000, (v?.retier.seconds ?? 60) * 1000));
    l = await runLinuxScenario(lab, virt, progress, window);
    if (v) console.log(`\nlab (${virt.domainType === 'kvm' ? 'nested KVM' : 'TCG'} guest, TCG lab host):\n${comparisonTable(v, l)}\n`);
    console.log(`engine-lab: linux vmstat during promotion ${JSON.stringify(l.promote.vmstat)}; after the hot-set change ${JSON.stringify(l.demote.vmstat)}`);
    assert.deepEqual(l.settings, { numaBalancing: '2', demotion: 'true' });
    assert.ok(fraction(l.initial.hot, 1) >= 0.95, `migratepages left the hot set on node 0: ${JSON.stringify(l.initial.hot)}`);
    // The kernel's counters moved over the run: NUMA balancing was at work on this domain.
    assert.ok(l.promote.vmstat.numa_hint_faults! > 0 || l.promote.vmstat.pgpromote_candidate! > 0, JSON.stringify(l.promote.vmstat));
  });

  // Issue 12: the whole working set (40 MiB, over the 12 MiB ceiling) is touched within every 1 s
  // policy interval, 20 % of it taking 80 % of the writes. Scanning at the policy's interval sees
  // every page in every scan; the auto-tuned plan must scan faster to rank them. The frequent pages
  // lie above the warm ones in each node, so ties broken by address favour the wrong pages.
  // bench:engine runs the control (plan fixed at 1 s) and Linux's tiering beside it.
  test('skewed working set touched in every interval: the auto-tuned plan puts the frequent pages on DRAM', async () => {
    const s = await runSkewScenario(lab, virt, progress, 'vmtier');
    console.log(`\nlab (${virt.domainType === 'kvm' ? 'nested KVM' : 'TCG'} guest, TCG lab host):\n${skewTable([s])}\n`);
    assert.equal(s.initial.hot.node1 + s.initial.warm.node1, s.initial.hot.pages + s.initial.warm.pages, 'the working set starts on host node 1');
    assert.notEqual(s.seconds, null, `frequent pages never reached ${SKEW_FREQUENT_ON_DRAM * 100} % on node 0: ${JSON.stringify(s.reached)}`);
    assert.ok(s.rounds <= 6, `took ${s.rounds} rounds`);
    // Three rounds later: still there, and the warm pages did not take the ceiling's room.
    assert.ok(fraction(s.final.hot, 0) >= SKEW_FREQUENT_ON_DRAM, `frequent pages on node 0 at the end: ${JSON.stringify(s.final.hot)}`);
    assert.ok(s.final.warm.node0 * 4096 <= SKEW_CEILING - s.final.hot.node0 * 4096, `warm pages on node 0: ${JSON.stringify(s.final.warm)}`);
    // Ranking needed scans shorter than the policy's interval before the promotion.
    const until = s.roundLog.slice(0, Math.max(1, s.rounds));
    assert.ok(until.some((r) => r.intervalMs < 1000), `scan intervals until then: ${JSON.stringify(until)}`);
    assert.ok(s.maxChanges.frequent <= 1, `a frequent page changed node ${s.maxChanges.frequent} times`);
    assert.deepEqual(s.serveLogErrors, [], 'error-level lines in the serve log');
  });
});
