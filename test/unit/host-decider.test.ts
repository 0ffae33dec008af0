// One decision for the host per round (src/daemon/host-decider.ts): the tiered VMs whose rounds
// are due are decided in one src/policy decide() — the call the simulator makes for all its VMs —
// in the policy thread; loops that start apart are aligned; a VM that stops submitting is not
// waited for; one VM's bad input does not fail the others; the pool a batch gets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HostDecider, batchCapacity, inProcessRunner, type DecisionRequest, type PolicyRunner } from '../../src/daemon/host-decider.js';
import { TIER_DRAM, TIER_SLOW, TieringPolicy, parsePolicy, type RoundInput, type TierPolicy, type VmRoundInput } from '../../src/policy/index.js';

const P = 4096;
const PAGES = 4096;

function tierPolicy(over: { mode?: 'observe' | 'tier' } = {}): TierPolicy {
  return parsePolicy({ mode: 'tier', ...over });
}

/** A VM's round: a hot set (seen in every scan) that starts in the slow tier; the rest cold in DRAM. */
function vmInput(vmId: string, hotFirst: number, hotPages: number, round: number, policy = tierPolicy()): VmRoundInput {
  const counts = new Uint8Array(PAGES);
  const tiers = new Uint8Array(PAGES).fill(TIER_DRAM);
  // A hot set that moves every 3 rounds, so decisions differ round to round.
  const shift = Math.floor(round / 3) * 256;
  for (let p = 0; p < hotPages; p++) counts[(hotFirst + shift + p) % PAGES] = 4;
  for (let p = PAGES / 2; p < PAGES; p++) tiers[p] = TIER_SLOW;
  return { vmId, policy, counts, tiers, plan: { scansPerRound: 4, intervalMultiplier: 1 } };
}

const req = (vm: VmRoundInput, round: number): DecisionRequest => ({ vm, fresh: round === 0, dramBytes: (PAGES / 2) * P, demandBytes: 512 * P });
const pool = (dramCapacityBytes: number) => ({ capacity: () => ({ dramCapacityBytes, dramShort: false }) });

test('VMs due together are decided in one policy call (the policy thread), exactly as one decide() over all of them', async () => {
  const cap = 1500 * P;
  const decider = new HostDecider({ pool: pool(cap) });
  const reference = new TieringPolicy();
  let moved = 0;
  try {
    for (let round = 0; round < 6; round++) {
      const a = vmInput('a', 2100, 600, round);
      const b = vmInput('b', 2500, 900, round);
      const signal = new AbortController().signal;
      const [da, db] = await Promise.all([decider.submit(req(a, round), signal), decider.submit(req(b, round), signal)]);
      const want = reference.decide({ dramCapacityBytes: cap, dramShort: false, vms: [vmInput('a', 2100, 600, round), vmInput('b', 2500, 900, round)] });
      for (const [got, exp] of [[da, want.vms[0]!], [db, want.vms[1]!]] as const) {
        assert.equal(got.batchVms, 2, `round ${round}: both in one call`);
        assert.equal(got.dramCapacityBytes, cap);
        assert.deepEqual([...got.decision.promote], [...exp.promote], `round ${round} ${exp.vmId}: promotions`);
        assert.deepEqual([...got.decision.demote], [...exp.demote], `round ${round} ${exp.vmId}: demotions`);
        assert.equal(got.decision.stats.shareBytes, exp.stats.shareBytes);
      }
      moved += da.decision.promote.length + db.decision.promote.length + da.decision.demote.length + db.decision.demote.length;
    }
    assert.ok(moved > 0, 'the rounds move something (the comparison is not vacuous)');
    // The shares came from one split: together they are the pool.
    assert.equal(decider.stats.decisions, 6);
    assert.equal(decider.stats.jointRounds, 12);
    assert.equal(decider.stats.maxBatchVms, 2);
    // Decided alone, each VM would have been given the whole pool: the joint call is what differs.
    const alone = new TieringPolicy().decide({ dramCapacityBytes: cap, vms: [vmInput('a', 2100, 600, 0)] });
    assert.ok(alone.vms[0]!.stats.shareBytes > reference.decide({ dramCapacityBytes: cap, vms: [vmInput('a', 2100, 600, 6), vmInput('b', 2500, 900, 6)] }).vms[0]!.stats.shareBytes);
    assert.ok((decider.threadHeap?.stateBytes ?? 0) > 0, 'the policy thread reports its state');
  } finally {
    await decider.close();
  }
});

/** An in-process runner that records which VMs each call decided. */
async function recording(): Promise<{ runner: PolicyRunner; calls: string[][] }> {
  const inner = inProcessRunner();
  const calls: string[][] = [];
  return { calls, runner: (forget, input: RoundInput) => (calls.push(input.vms.map((v) => v.vmId).sort()), inner(forget, input)) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A loop as the engine runs one: scan for `periodMs`, submit, wait for the decision, again. */
async function loop(decider: HostDecider, vmId: string, startMs: number, periodMs: number, rounds: number, log: Array<{ vmId: string; batch: number }>): Promise<void> {
  await sleep(startMs);
  for (let r = 0; r < rounds; r++) {
    await sleep(periodMs);
    const d = await decider.submit(req(vmInput(vmId, 2100, 300, r), r), new AbortController().signal);
    log.push({ vmId, batch: d.batchVms });
  }
}

test('loops that start apart are aligned: after the first rounds both are decided together', async () => {
  const { runner, calls } = await recording();
  const decider = new HostDecider({ pool: pool(1500 * P), runner });
  const log: Array<{ vmId: string; batch: number }> = [];
  try {
    // B starts 230 ms after A: neither waits at first (no round length known), then the one
    // ahead waits for the other once.
    await Promise.all([loop(decider, 'a', 0, 400, 8, log), loop(decider, 'b', 230, 400, 8, log)]);
  } finally {
    await decider.close();
  }
  const joint = calls.filter((c) => c.length === 2).length;
  assert.ok(joint >= 5, `most rounds decided together (calls: ${JSON.stringify(calls)})`);
  // Once aligned they stay aligned: the last four calls are all joint.
  assert.deepEqual(calls.slice(-4), [['a', 'b'], ['a', 'b'], ['a', 'b'], ['a', 'b']]);
});

test('a VM that stops submitting is not waited for; a late one delays the others by at most half a round', async () => {
  const { runner, calls } = await recording();
  const decider = new HostDecider({ pool: pool(1500 * P), runner });
  const log: Array<{ vmId: string; batch: number }> = [];
  const waits: number[] = [];
  try {
    const b = loop(decider, 'b', 0, 300, 3, log);
    // A keeps going after B stops; each of its submissions is timed.
    for (let r = 0; r < 12; r++) {
      await sleep(300);
      const t = Date.now();
      await decider.submit(req(vmInput('a', 2100, 300, r), r), new AbortController().signal);
      waits.push(Date.now() - t);
    }
    await b;
  } finally {
    await decider.close();
  }
  assert.ok(calls.some((c) => c.length === 2), 'they were decided together while both ran');
  assert.ok(Math.max(...waits) < 150 + 100, `no wait longer than half a round (+ slack): ${waits.join(', ')} ms`);
  // Three of B's rounds after it stopped, A is decided at once.
  assert.ok(waits.slice(-3).every((w) => w < 60), `A no longer waits for B: ${waits.join(', ')} ms`);
});

test('observe mode is decided alone at once; a bad input fails only its own VM', async () => {
  const { runner, calls } = await recording();
  const decider = new HostDecider({ pool: pool(1500 * P), runner });
  try {
    const observe = vmInput('o', 2100, 300, 0, tierPolicy({ mode: 'observe' }));
    const d = await decider.submit(req(observe, 0), new AbortController().signal);
    assert.equal(d.batchVms, 1);
    assert.deepEqual(calls, [['o']]);
    calls.length = 0;
    const good = vmInput('g', 2100, 300, 0);
    const bad = { ...vmInput('x', 2100, 300, 0), tiers: new Uint8Array(10) };
    const s = new AbortController().signal;
    const [g, x] = await Promise.allSettled([decider.submit(req(good, 0), s), decider.submit(req(bad, 0), s)]);
    assert.equal(g.status, 'fulfilled');
    assert.equal(x.status, 'rejected');
    assert.match(String((x as PromiseRejectedResult).reason), /counts has 4096 pages but tiers has 10/);
    assert.equal(decider.stats.retriedAlone, 1);
    // The joint call failed; each VM was then decided alone.
    assert.deepEqual(calls, [['g', 'x'], ['g'], ['x']]);
  } finally {
    await decider.close();
  }
});

test('a batch gets the pool less the shares of the tiered VMs outside it; below the watermark the shortfall comes out', () => {
  const pol = tierPolicy();
  const vm = (vmId: string, dramBytes: number, demandBytes: number, policy = pol) => ({ vmId, policy, dramBytes, demandBytes });
  // Pool: 6 + 2 GiB held + 4 GiB free - 1 GiB watermark = 11 GiB; B outside demands 2 GiB.
  const G = 2 ** 30;
  const c = batchCapacity({ topFreeBytes: 4 * G, watermarkBytes: G, outside: [vm('b', 2 * G, 2 * G)], batch: [vm('a', 6 * G, 20 * G)] });
  assert.equal(c.dramShort, false);
  // Demands 20 and 2 GiB of 11: water-filling gives B its 2 GiB (equal weights), A the rest.
  assert.equal(c.dramCapacityBytes, 9 * G);
  // Everyone in the batch: the whole pool, for the policy to split.
  assert.equal(batchCapacity({ topFreeBytes: 4 * G, watermarkBytes: G, outside: [], batch: [vm('a', 6 * G, 20 * G), vm('b', 2 * G, 2 * G)] }).dramCapacityBytes, 11 * G);
  // Free below the watermark: DRAM is short, and the pool shrinks by the shortfall.
  const short = batchCapacity({ topFreeBytes: G / 2, watermarkBytes: G, outside: [], batch: [vm('a', 6 * G, 20 * G)] });
  assert.deepEqual(short, { dramCapacityBytes: 5.5 * G, dramShort: true });
  // An observe VM alone gets the share it would have beside the tiered ones.
  const obs = batchCapacity({ topFreeBytes: 4 * G, watermarkBytes: G, outside: [vm('b', 2 * G, 2 * G)], batch: [vm('o', 6 * G, 20 * G, tierPolicy({ mode: 'observe' }))] });
  assert.equal(obs.dramCapacityBytes, 9 * G);
});
