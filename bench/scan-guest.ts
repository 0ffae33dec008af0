/**
 * The part of bench:scan that runs INSIDE the lab guest (bench/scan.ts boots the lab and runs
 * this): for one workload footprint, the CPU time of a kmod read-and-clear pass against the
 * kernel's own clear_refs walk (`echo 1 > /proc/PID/clear_refs`) over the same process, plus
 * the share of the kmod pass spent decoding in TypeScript and the cost of the TLB flush.
 * Prints one JSON line.
 *
 *   node dist/bench/scan-guest.js <workload binary> <MiB> <on|off> <repeats>
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { KmodTracker } from '../src/scan/kmod.js';

const [workload, mibArg, thpArg, repArg] = process.argv.slice(2);
const mib = Number(mibArg);
const repeats = Number(repArg ?? 5);
const gib = mib / 1024;

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

// --rate 0: the whole footprint is touched once, then left alone; every pass below walks the
// same populated page tables with the A bits already clear (a scanner's steady state).
const child = spawn(workload!, ['--size', `${mib}m`, '--hot', `${mib}m`, '--rate', '0', '--thp', thpArg!], { stdio: ['ignore', 'pipe', 'inherit'] });
const first = await new Promise<string>((resolve, reject) => {
  createInterface({ input: child.stdout! }).once('line', resolve);
  child.once('exit', (c) => reject(new Error(`workload exited ${c}`)));
});
const layout = JSON.parse(first) as { pid: number; base: string; bytes: number };
const pid = layout.pid;
const range = { start: parseInt(layout.base, 16), end: parseInt(layout.base, 16) + layout.bytes };

async function kmodRun(flush: boolean): Promise<{ cpuMsPerPass: number; decodeShare: number; kernelMsPerPass: number; hugeShare: number }> {
  const t = new KmodTracker({ flush });
  try {
    await t.track(pid, [range]);
    await t.scan({ scans: 1, intervalMs: 0 }); // warm-up: JIT, and every A bit cleared
    const cpu: number[] = [];
    const share: number[] = [];
    const kern: number[] = [];
    let huge = 0;
    let walk0 = t.lastRoundStats()!.kernelWalkNs;
    for (let i = 0; i < repeats; i++) {
      const c0 = cpuMs();
      const res = await t.scan({ scans: 1, intervalMs: 0 }); // 2 passes: the clearing pass and scan 1
      const c1 = cpuMs();
      const st = t.lastRoundStats()!;
      cpu.push((c1 - c0) / 2);
      share.push(st.decodeMs / (st.decodeMs + st.readMs));
      kern.push((st.kernelWalkNs - walk0) / 2 / 1e6);
      walk0 = st.kernelWalkNs;
      const r = res.ranges[0]!;
      huge = r.pageShift.filter((s) => s === 21).length / r.pageShift.length;
    }
    return { cpuMsPerPass: median(cpu), decodeShare: median(share), kernelMsPerPass: median(kern), hugeShare: huge };
  } finally {
    await t.close();
  }
}

function clearRefsRun(): number {
  const cpu: number[] = [];
  writeFileSync(`/proc/${pid}/clear_refs`, '1'); // warm-up
  for (let i = 0; i < repeats; i++) {
    const c0 = cpuMs();
    writeFileSync(`/proc/${pid}/clear_refs`, '1');
    cpu.push(cpuMs() - c0);
  }
  return median(cpu);
}

try {
  const kmod = await kmodRun(true);
  const noflush = await kmodRun(false);
  const clearRefs = clearRefsRun();
  process.stdout.write(`${JSON.stringify({
    mib, thp: thpArg === 'on', repeats, hugeShare: kmod.hugeShare,
    kmodCpuMsPerGiB: kmod.cpuMsPerPass / gib,
    kmodKernelMsPerGiB: kmod.kernelMsPerPass / gib,
    kmodNoFlushCpuMsPerGiB: noflush.cpuMsPerPass / gib,
    clearRefsCpuMsPerGiB: clearRefs / gib,
    ratioKmodToClearRefs: kmod.cpuMsPerPass / clearRefs,
    decodeShare: kmod.decodeShare,
  })}\n`);
} finally {
  child.kill('SIGKILL');
}
