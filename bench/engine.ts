/**
 * bench:engine — in the lab (TCG host, nested KVM guest where kvm_amd works): `vmtier serve` in tier
 * mode on a libvirt domain running the guest payload (16 MiB hot set, RAM first on the slow node),
 * then the same workload under Linux's own tiering (numa_balancing=2 + demotion). Prints the
 * daemon's CPU per GB of managed guest memory per round and the side-by-side table (README "The
 * tiering engine in the lab"). The same scenario as test/lab/engine.test.ts, without assertions.
 * Then issue 12's skewed working set (8 MiB written at 50 Hz, 32 MiB at ~3 Hz, all of it within
 * every second) under vmtier with its auto-tuned plan, under the control with the plan fixed at
 * the policy's 1 s interval, and under Linux's tiering.
 *
 *   npm run bench:engine [-- --skew-only]
 */
import { LabSession } from '../lab/index.js';
import { comparisonTable, runLinuxScenario, runSkewScenario, runVmtierScenario, skewTable, startLabLibvirt, type SkewRun } from '../lab/guest/engine-lab.js';

const progress = (l: string) => process.stderr.write(`${l}\n`);
const lab = await LabSession.start({ cpu: 'EPYC,+svm,+npt', append: ['maxcpus=1'], onProgress: progress });
try {
  const virt = await startLabLibvirt(lab);
  if (!process.argv.includes('--skew-only')) await hotSetChange(virt);
  const runs: SkewRun[] = [];
  for (const who of ['vmtier', 'vmtier-fixed', 'linux'] as const) runs.push(await runSkewScenario(lab, virt, progress, who));
  console.log(`\nskewed working set, lab (TCG host; guest domain type '${virt.domainType}'):\n${skewTable(runs)}`);
} finally {
  await lab.close();
}

async function hotSetChange(virt: Awaited<ReturnType<typeof startLabLibvirt>>): Promise<void> {
  const v = await runVmtierScenario(lab, virt, progress);
  const window = Math.min(120_000, Math.max(60_000, (v.retier.seconds ?? 60) * 1000));
  const l = await runLinuxScenario(lab, virt, progress, window);
  const c = v.cpuPerGbRound;
  console.log(`lab (TCG host; guest domain type '${virt.domainType}'${virt.domainType === 'kvm' ? ', nested KVM with NPT' : ''}), 2 × 64 MiB guest nodes, 16 MiB hot set written ${50}×/s\n`);
  console.log(`vmtier daemon CPU per GB of managed guest memory per round: ${(c.seconds * 1000).toFixed(0)} ms ` +
    `(${c.cpuSeconds.toFixed(2)} s over ${c.rounds} tier rounds of 4 scans × 500 ms, 0.125 GB; DAMON's kdamond another ${c.kdamondSeconds.toFixed(2)} s)\n`);
  console.log(comparisonTable(v, l));
  console.log(`\nLinux /proc/vmstat deltas until 95 %: ${JSON.stringify(l.promote.vmstat)}\nafter the hot-set change: ${JSON.stringify(l.demote.vmstat)}`);
}
