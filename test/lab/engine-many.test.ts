// Issue 13's lab proof: one `vmtier serve` on several domains at once with the real trackers —
// three tracked by DAMON (a kdamond each) and three by the kernel module (KVM's NPT) — while API
// clients poll it: every domain tiered with the tracker it asked for, and no event-loop stall of
// 100 ms of the main thread's CPU (lab/guest/engine-many.ts).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LabSession } from '../../lab/index.js';
import { startLabLibvirt, type LabVirt } from '../../lab/guest/engine-lab.js';
import { manyTable, runManyScenario } from '../../lab/guest/engine-many.js';
import { buildKmod } from '../helpers/kmod-lab.js';

describe('vmtier serve on six domains in the lab: DAMON and the kernel module at once', { timeout: 2_400_000 }, () => {
  let lab: LabSession;
  let virt: LabVirt;
  const progress = (line: string) => console.log(line);

  before(async () => {
    const ko = buildKmod('6.12');
    lab = await LabSession.start({ cpu: 'EPYC,+svm,+npt', append: ['maxcpus=1'], onProgress: progress });
    virt = await startLabLibvirt(lab);
    await lab.check(['insmod', ko], { timeoutMs: 60_000 });
  });

  after(async () => {
    await lab?.close();
  });

  test('every domain tiered by its own tracker, API clients answered, no 100 ms stall of the main thread', async () => {
    const r = await runManyScenario(lab, virt, progress, ['damon', 'kmod'], 3);
    console.log(`\nlab (${virt.domainType === 'kvm' ? 'nested KVM' : 'TCG'} guests, TCG lab host):\n${manyTable(r)}\n`);
    assert.equal(r.vms.length, 6);
    for (const v of r.vms) {
      assert.equal(v.engine.tracker, v.tracker, `${v.name}: tracker ${v.engine.tracker}, asked ${v.tracker}`);
      assert.equal(v.engine.trackerError, null, `${v.name}: tracker error ${v.engine.trackerError}`);
      assert.equal(v.engine.lastRoundMode, 'tier', `${v.name}: last round ${v.engine.lastRoundMode}`);
      assert.notEqual(v.seconds, null, `${v.name}: hot set ${JSON.stringify(v.hot)} never 95 % on node 0`);
      assert.ok(v.hot.node0 >= v.hot.pages * 0.95, `${v.name}: hot set at the end ${JSON.stringify(v.hot)}`);
    }
    assert.ok(r.requests >= 50, `only ${r.requests} API answers`);
    assert.deepEqual(Object.keys(r.statuses), ['200'], `API answers by status: ${JSON.stringify(r.statuses)}`);
    assert.equal(r.stalls, 0, `event-loop stalls of ≥ 100 ms main-thread CPU (longest gap seen ${r.blockedMaxMs.toFixed(0)} ms)`);
    assert.deepEqual(r.serveLogErrors, [], 'error-level lines in the serve log');
  });
});
