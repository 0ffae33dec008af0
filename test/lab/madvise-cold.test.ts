// vmtier's optional MADV_COLD (policy `madviseCold`, issue 7) against the kernel's own reclaim in the
// lab: vmtier's Engine manages the lab workload (a 32 MiB hot set it keeps writing, an old hot set
// that went cold, memory touched once) in tier mode with a zero migration budget, then a hog bound
// to node 0 forces reclaim, which with demotion enabled moves pages to node 1. Same workload with
// and without madviseCold; lab/guest/madvise-cold-lab.js runs both arms inside the guest and
// reports where every page ended up (move_pages query, cross-checked with numa_maps).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LabSession, ensureWorkload } from '../../lab/index.js';
import type { ArmResult, MadviseColdRun } from '../../lab/guest/madvise-cold-lab.js';
import { LabServe, startLabLibvirt, type LabVirt } from '../../lab/guest/engine-lab.js';
import { runDomainArm, type DomainArmResult } from '../../lab/guest/madvise-cold-domain.js';

const MiB = 2 ** 20;
const HOT_MB = 32;
const COLD_MB = 96;
/** The hog allocates node 0's free memory plus this. */
const PRESSURE_MB = 32;

describe('MADV_COLD from the engine vs kernel demotion (lab, tiered)', { timeout: 900_000 }, () => {
  let lab: LabSession;

  before(async () => {
    ensureWorkload();
    lab = await LabSession.start({ topology: 'tiered' });
  });
  after(async () => {
    await lab?.close();
  });

  test('with madviseCold the kernel demotes the cold pages vmtier marked before the hot set', async () => {
    const r = await lab.run(['node', 'dist/lab/guest/madvise-cold-lab.js', '--arms', 'on,off', '--lru', 'mglru', '--pressure-mb', String(PRESSURE_MB)], { timeoutMs: 600_000 });
    assert.equal(r.status, 0, `madvise-cold-lab exited ${r.status}: ${r.stderr.slice(-3000)}`);
    const run = JSON.parse(r.stdout.trim().split('\n').pop()!) as MadviseColdRun;
    assert.equal(run.demotion, 'true');
    // The advised arm first: its reclaim leaves other processes' pages on node 1, so the second arm
    // finds less competing memory on node 0, an order effect that can only favour the arm without.
    assert.deepEqual(run.arms.map((a) => a.madviseCold), [true, false]);
    const [on, off] = run.arms as [ArmResult, ArmResult];
    const demoted = (a: ArmResult, k: 'hot' | 'oldHot' | 'once') => a.after[k].node1;
    const cold = (a: ArmResult) => demoted(a, 'oldHot') + demoted(a, 'once');
    const coldPages = on.after.oldHot.pages + on.after.once.pages;
    for (const a of run.arms) {
      const line = `madviseCold=${a.madviseCold}, LRU ${run.lru}: hot set demoted ${demoted(a, 'hot')}/${a.after.hot.pages}, ` +
        `old hot set ${demoted(a, 'oldHot')}/${a.after.oldHot.pages}, once-touched ${demoted(a, 'once')}/${a.after.once.pages}; ` +
        `advised ${a.madvisedColdMBTotal.toFixed(1)} MiB in ${a.rounds} rounds; pgdemote ${a.vmstat.pgdemote_kswapd! + a.vmstat.pgdemote_direct!} ` +
        `(of them the hog's own ${a.hogDemotedPages}/${a.hogMB * 256}); hog ${a.seconds.hog.toFixed(0)} s`;
      process.stdout.write(`# madvise-cold lab (TCG) ${line}\n`);
      // The engine really ran: its DAMON tracker saw the phase-1 hot set, and it moved nothing.
      assert.equal(a.tracker, 'damon', `tracker ${a.tracker}`);
      assert.ok(Math.abs(a.lastRound.hotMB - HOT_MB) <= 4, `engine saw ${a.lastRound.hotMB} MiB hot`);
      assert.equal(a.vmtierMovedPages, 0, 'vmtier moved pages');
      // Everything started on node 0, and the hog made the kernel demote.
      for (const k of ['hot', 'oldHot', 'once'] as const) assert.equal(a.before[k].node0, a.before[k].pages, `${k} not all on node 0 before the hog`);
      assert.ok(a.vmstat.pgdemote_kswapd! + a.vmstat.pgdemote_direct! > 0, JSON.stringify(a.vmstat));
      // The witness agrees with the kernel's own per-VMA account.
      assert.equal(a.numaMapsNode1, demoted(a, 'hot') + cold(a), 'numa_maps N1 vs move_pages query');
    }
    // vmtier advised what it found cold (the old hot set and the once-touched memory), each page once
    // in the round it turned cold (the new hot set too, while it was still cold, before phase 1; not
    // again in every later round, which made the pages younger than what reclaim should take), and
    // nothing without the option.
    assert.equal(off.madvisedColdMBTotal, 0);
    assert.ok(on.madvisedColdMBTotal >= COLD_MB * 0.9 && on.madvisedColdMBTotal <= 1.5 * (COLD_MB + HOT_MB),
      `advised ${on.madvisedColdMBTotal} MiB over ${on.rounds} rounds (${COLD_MB} MiB cold, ${HOT_MB} MiB hot)`);
    // With MADV_COLD the kernel took the marked pages first: almost none of the hot set, strictly
    // more cold pages than hot ones, and most of the cold memory (the hog asks for 32 MiB beyond
    // node 0's free memory; the kernel demoted 70-130 MiB per arm, the cold memory is 96 MiB).
    assert.ok(demoted(on, 'hot') <= on.after.hot.pages * 0.05, `hot set demoted with MADV_COLD: ${demoted(on, 'hot')}`);
    assert.ok(cold(on) > demoted(on, 'hot'));
    assert.ok(cold(on) >= coldPages * 0.5, `cold demoted with MADV_COLD: ${cold(on)}/${coldPages}`);
    // The effect: under MGLRU (the lab kernel's default, forced here) the same pressure without the
    // advice demoted far less of the cold memory (0-36 % over 12 runs; the classic LRU demotes it
    // all either way, see bench:madvise). Asserted as a strict inequality only.
    assert.match(run.lru, /^mglru/);
    assert.ok(cold(on) > cold(off), `cold demoted: ${cold(on)} with MADV_COLD, ${cold(off)} without`);
    process.stdout.write(`# madvise-cold lab (TCG) cold memory demoted: ${(100 * cold(on) / coldPages).toFixed(1)} % with MADV_COLD vs ` +
      `${(100 * cold(off) / coldPages).toFixed(1)} % without; hot set ${(100 * demoted(on, 'hot') / on.after.hot.pages).toFixed(1)} % vs ` +
      `${(100 * demoted(off, 'hot') / off.after.hot.pages).toFixed(1)} % (${(on.after.hot.pages * 4096) / MiB} MiB hot, ${COLD_MB} MiB cold)\n`);
  });
});

// The same question on a libvirt domain's QEMU process, the way an operator runs it: libvirtd in
// the lab, the guest payload keeping a 16 MiB hot set hot and 96 MiB written once, `vmtier serve`
// with the real inventory and the policy PUT over HTTP (lab/guest/madvise-cold-domain.ts). Its own
// boot: nested KVM needs an SVM CPU and one lab CPU (as in test/lab/engine.test.ts), which would
// change the conditions of the process experiment above.
describe('MADV_COLD from vmtier serve on a libvirt domain vs kernel demotion (lab, tiered)', { timeout: 900_000 }, () => {
  let lab: LabSession;
  let virt: LabVirt;
  let serve: LabServe;
  const progress = (line: string) => console.log(line);

  before(async () => {
    ensureWorkload();
    lab = await LabSession.start({ cpu: 'EPYC,+svm,+npt', append: ['maxcpus=1'], onProgress: progress });
    virt = await startLabLibvirt(lab);
    await lab.check('echo 1 >/sys/kernel/mm/numa/demotion_enabled && echo y >/sys/kernel/mm/lru_gen/enabled', { timeoutMs: 30_000 });
    serve = new LabServe(lab);
    await serve.start(progress);
  });
  after(async () => {
    await serve?.stop();
    await lab?.close();
  });

  test('with madviseCold the kernel demotes the domain\'s cold guest pages before its hot set', async () => {
    const on = await runDomainArm(lab, virt, serve, true, PRESSURE_MB, progress);
    const off = await runDomainArm(lab, virt, serve, false, PRESSURE_MB, progress);
    const where = virt.domainType === 'kvm' ? 'nested KVM guest' : 'TCG guest';
    for (const a of [on, off]) {
      process.stdout.write(`# madvise-cold domain lab (TCG, ${where}) madviseCold=${a.madviseCold}: hot set demoted ${a.after.hot.node1}/${a.after.hot.pages}, ` +
        `cold ${a.after.cold.node1}/${a.after.cold.pages}; advised ${a.lastRound.madvisedColdMB.toFixed(1)} MiB (last round), ${a.madvisedColdMBTotal.toFixed(1)} MiB in all; ` +
        `pgdemote ${a.vmstat.pgdemote_kswapd! + a.vmstat.pgdemote_direct!} (kswapd ${a.vmstat.pgdemote_kswapd}, direct ${a.vmstat.pgdemote_direct}; ` +
        `pgsteal ${a.vmstat.pgsteal_kswapd! + a.vmstat.pgsteal_direct!}); hog ${a.hogMB} MiB in ${a.seconds.hog.toFixed(0)} s; ` +
        `node 0 before the hog: anon ${((a.node0.meminfoKB.Activeanon ?? 0) + (a.node0.meminfoKB.Inactiveanon ?? 0)) >> 10} MiB, ` +
        `file ${((a.node0.meminfoKB.Activefile ?? 0) + (a.node0.meminfoKB.Inactivefile ?? 0)) >> 10} MiB, MGLRU generations (oldest first, MiB) ` +
        `${a.node0.lruGenBefore.map((g) => ((g.anonPages + g.filePages) / 256).toFixed(0)).join('/')}, after the hog ` +
        `${a.node0.lruGenAfter.map((g) => ((g.anonPages + g.filePages) / 256).toFixed(0)).join('/')}\n`);
      // The engine ran on the domain: DAMON saw the payload's hot set, vmtier moved nothing.
      assert.equal(a.tracker, 'damon', `tracker ${a.tracker}`);
      assert.ok(a.lastRound.hotMB >= 16 * 0.9, `engine saw ${a.lastRound.hotMB} MiB hot`);
      assert.equal(a.vmtierMovedPages, 0, 'vmtier moved pages');
      for (const k of ['hot', 'cold'] as const) assert.equal(a.before[k].node0, a.before[k].pages, `${k} not all on node 0 before the hog`);
      assert.ok(a.vmstat.pgdemote_kswapd! + a.vmstat.pgdemote_direct! > 0, JSON.stringify(a.vmstat));
    }
    // vmtier advised the cold guest memory (96 MiB written once, plus what the payload's start-up
    // left below 8 MiB), each page once in the round it turned cold, and nothing without the option.
    // Advising every round, as before, gave at least 3 × 96 MiB here (the arm runs coldConfirmRounds
    // + 3 rounds after the PUT, then more during the hog).
    assert.equal(off.madvisedColdMBTotal, 0);
    assert.ok(on.madvisedColdMBTotal >= 96 * 0.9 && on.madvisedColdMBTotal <= 1.5 * (96 + 16 + 8), `advised ${on.madvisedColdMBTotal} MiB in all`);
    // With the advice the kernel took the marked guest pages and left the hot set; without it,
    // under the same pressure, it demoted less of the cold guest memory. HOW MUCH of the cold
    // memory is demoted is not asserted (issue 17): it depends on how much kswapd reclaims past
    // the demand and on what lies in older MGLRU generations than the advised pages; it ranged
    // 31-96 % over the runs (README, madviseCold). What held in every run is asserted: the hot set
    // stays, more cold pages than hot ones go, and more with the advice than without (the advised
    // arm runs first, as above).
    const cold = (a: DomainArmResult) => a.after.cold.node1;
    assert.ok(on.after.hot.node1 <= on.after.hot.pages * 0.05, `hot set demoted with MADV_COLD: ${on.after.hot.node1}`);
    assert.ok(cold(on) > on.after.hot.node1, `cold ${cold(on)} vs hot ${on.after.hot.node1} demoted with MADV_COLD`);
    assert.ok(cold(on) > cold(off), `cold demoted: ${cold(on)} with MADV_COLD, ${cold(off)} without`);
    process.stdout.write(`# madvise-cold domain lab (TCG, ${where}) cold guest memory demoted: ${(100 * cold(on) / on.after.cold.pages).toFixed(1)} % with MADV_COLD vs ` +
      `${(100 * cold(off) / off.after.cold.pages).toFixed(1)} % without; hot set ${(100 * on.after.hot.node1 / on.after.hot.pages).toFixed(1)} % vs ` +
      `${(100 * off.after.hot.node1 / off.after.hot.pages).toFixed(1)} % (16 MiB hot, 96 MiB cold)\n`);
  });
});
