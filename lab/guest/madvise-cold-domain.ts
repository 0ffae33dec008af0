/**
 * vmtier's MADV_COLD (policy `madviseCold`, issue 7) on a libvirt domain's QEMU process, driven
 * from this machine: the madvise-cold-lab.ts experiment (node 0 shrunk with hugetlb pages, then a
 * hog bound to node 0 so kswapd demotes) with engine-lab.ts's parts instead of a plain process —
 * libvirtd inside the lab, the guest payload keeping a known hot set hot, `vmtier serve` with the
 * real libvirt inventory, the policy PUT over HTTP. vmtier moves nothing
 * (`migration.maxBytesPerRound: 0`); what reaches node 1 is the kernel's reclaim alone. Placement
 * is read by lab/guest/pagenodes.c (move_pages query on the QEMU process), not by vmtier.
 */
import type { PressureArmFigures } from './madvise-cold-lab.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmtierError } from '../../src/errors.js';
import { ensureWorkload } from '../build.js';
import type { LabSession } from '../session.js';
import { LabDomain, vmstat, type LabServe, type LabVirt, type Progress } from './engine-lab.js';
import type { PayloadLayout } from './payload.js';

const MiB = 2 ** 20;
const HUGEPAGES = '/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages';
/** Free memory node 0 keeps when the hog starts (before it, everything of the domain is on node 0). */
const HEADROOM_MB = 160;
const COLD_CONFIRM_ROUNDS = 2;
/**
 * 16 MiB hot (8 MiB in each guest node) and 96 MiB written once, then cold. No range crosses the
 * 64 MiB boundary of the two guest nodes (two ramblocks). Below 8 MiB sit the payload's own code
 * and stack, hot as well and counted in neither set.
 */
export const MADVISE_LAYOUT: PayloadLayout = {
  hz: 50,
  hot: [{ start: 24 * MiB, end: 32 * MiB }, { start: 80 * MiB, end: 88 * MiB }],
  hot1: [],
  once: [{ start: 8 * MiB, end: 24 * MiB }, { start: 32 * MiB, end: 64 * MiB }, { start: 64 * MiB, end: 80 * MiB }, { start: 88 * MiB, end: 120 * MiB }],
};

/** One MGLRU generation of a node as /sys/kernel/debug/lru_gen prints it (summed over memcgs). */
export interface LruGen {
  seq: number;
  ageMs: number;
  anonPages: number;
  filePages: number;
}

/** The generations of `node` in a /sys/kernel/debug/lru_gen dump, oldest first, summed over memcgs. */
export function parseLruGen(text: string, node: number): LruGen[] {
  const bySeq = new Map<number, LruGen>();
  let inNode = false;
  for (const line of text.split('\n')) {
    const w = line.trim().split(/\s+/);
    if (w[0] === 'memcg') inNode = false;
    else if (w[0] === 'node') inNode = Number(w[1]) === node;
    else if (inNode && w.length >= 4 && /^\d+$/.test(w[0]!)) {
      const seq = Number(w[0]);
      const g = bySeq.get(seq) ?? { seq, ageMs: Number(w[1]), anonPages: 0, filePages: 0 };
      g.anonPages += Number(w[2]) || 0;
      g.filePages += Number(w[3]) || 0;
      bySeq.set(seq, g);
    }
  }
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

/** What lay on node 0 when the hog started, and the generations before and after it. */
export interface Node0Context {
  /** kB per node-0 meminfo field (Activeanon, Inactiveanon, Activefile, Inactivefile, Shmem, FilePages). */
  meminfoKB: Record<string, number>;
  lruGenBefore: LruGen[];
  lruGenAfter: LruGen[];
}

type Placement = Record<'hot' | 'cold', { pages: number; node0: number; node1: number }>;

/** `rounds` and `lastRound`: after the PUT until the hog, from GET /v1/vms/{uuid}/engine. */
export interface DomainArmResult extends PressureArmFigures {
  domainType: 'kvm' | 'qemu';
  lastRound: { hotMB: number; coldMB: number; madvisedColdMB: number };
  before: Placement;
  after: Placement;
  node0: Node0Context;
  /** vmtier rounds that ended while the hog ran (each re-advises the cold pages unless frozen). */
  roundsDuringHog: number;
}

export interface DomainArmOptions {
  /**
   * Control the demand (issue 17): drop node 0's clean page cache before the hog and ask for the
   * domain's whole cold memory beyond free memory plus the pressure. The bench offers this and
   * `freezeAdvice`; the lab test still runs the experiment as first measured (README, madviseCold).
   */
  controlled?: boolean;
  /**
   * Control the timing of the advice against reclaim (issue 17): PUT the policy again with
   * `madviseCold: false` before the hog (in both arms) and wait for the round in flight to end,
   * so no MADV_COLD is given while reclaim runs. See the comment at the use.
   */
  freezeAdvice?: boolean;
}

/**
 * One arm: a fresh domain (RAM on node 0: unbound, first touch on the node of the lab's CPUs), the
 * policy PUT, rounds until the cold pages are confirmed cold (and, with the option, advised), then
 * node-0 pressure while serve keeps running its rounds (advising no more with `freezeAdvice`).
 */
export async function runDomainArm(
  lab: LabSession, virt: LabVirt, serve: LabServe, madviseCold: boolean, pressureMB: number, progress: Progress,
  opts: DomainArmOptions = {},
): Promise<DomainArmResult> {
  const d = await LabDomain.create(lab, virt, `vmtier-test-i-madv-${madviseCold ? 'on' : 'off'}`, null, MADVISE_LAYOUT);
  try {
    const t0 = Date.now();
    while ((await serve.http('GET', `/v1/vms/${d.uuid}/engine`)).status !== 200) {
      if (Date.now() - t0 > 240_000) throw new VmtierError('LAB_ERROR', `the engine did not pick up ${d.name}`);
      await sleep(1000);
    }
    const policy = {
      mode: 'tier',
      tracker: 'damon',
      scan: { intervalMs: 250, scansPerRound: 4, autoTune: false },
      thresholds: { coldConfirmRounds: COLD_CONFIRM_ROUNDS },
      migration: { maxBytesPerRound: 0 },
      madviseCold,
    };
    const put = await serve.http('PUT', `/v1/vms/${d.uuid}/policy`, policy);
    if (put.status !== 200) throw new VmtierError('LAB_ERROR', `PUT policy: ${put.status} ${JSON.stringify(put.body)}`);
    // The round in flight at the PUT ran under the old policy; then cold needs coldConfirmRounds.
    const r0 = serve.rounds(d.uuid).length;
    // A loaded host (other labs, CI neighbours) slows TCG-in-TCG rounds severalfold: a wait, not a speed check.
    while (serve.rounds(d.uuid).length < r0 + 1 + COLD_CONFIRM_ROUNDS + 2) {
      if (Date.now() - t0 > 480_000) throw new VmtierError('LAB_ERROR', `${d.name}: too few rounds after the PUT: ${serve.rounds(d.uuid).length - r0}`);
      await sleep(1000);
    }
    // The last round's figures while the advice was on (a frozen advice's later rounds advise nothing).
    const lr = (await serve.http('GET', `/v1/vms/${d.uuid}/engine`)).body.lastRound;
    if (opts.freezeAdvice) {
      // On 6.12's MGLRU, MADV_COLD puts an anonymous page not in swap cache in the second-YOUNGEST
      // generation (max_seq - 1; /sys/kernel/debug/lru_gen showed the advised 104 MiB there, the
      // second of four), and vmtier advises every cold page again in every round: a round that
      // ends while the hog runs, after reclaim has aged the lists, makes the cold guest pages not
      // yet demoted younger again than memory that came after them (the hog's first pages),
      // which reclaim then takes instead.
      const put2 = await serve.http('PUT', `/v1/vms/${d.uuid}/policy`, { ...policy, madviseCold: false });
      if (put2.status !== 200) throw new VmtierError('LAB_ERROR', `PUT policy: ${put2.status} ${JSON.stringify(put2.body)}`);
      const r2 = serve.rounds(d.uuid).length;
      while (serve.rounds(d.uuid).length < r2 + 1) {
        if (Date.now() - t0 > 600_000) throw new VmtierError('LAB_ERROR', `${d.name}: no round after the second PUT`);
        await sleep(500);
      }
    }
    const st = (await serve.http('GET', `/v1/vms/${d.uuid}/engine`)).body;
    const engineS = (Date.now() - t0) / 1000;
    progress(`madvise-cold-domain: madviseCold=${madviseCold}: ${st.rounds} rounds in ${engineS.toFixed(0)} s, last round hot ${(lr.hotBytes / MiB).toFixed(1)} MiB, cold ${(lr.coldBytes / MiB).toFixed(1)} MiB, advised ${(lr.madvisedColdBytes / MiB).toFixed(1)} MiB`);

    const before = await d.sample();
    const roundsBeforeHog = serve.rounds(d.uuid).length;
    const v0 = await vmstat(lab);
    // What the kernel demotes depends on what it has to reclaim and on what else is on node 0
    // (issue 17): with a demand of only 32 MiB beyond free memory, kswapd reclaimed anywhere from
    // 4 to 110 MiB per arm, and clean page cache in older MGLRU generations went first. The
    // controlled variant drops the clean page cache (inside the lab only) and asks for the
    // domain's whole cold memory beyond the free memory plus the pressure, so that a kernel that
    // takes the advised pages first must take them all.
    const coldBytes = opts.controlled ? before.cold.pages * 4096 : 0;
    // Shrink node 0 to the headroom, then the hog takes the free memory plus the demand; it
    // prints its layout once every page is touched, and kswapd may still be at work: 2 s more.
    const hogBin = ensureWorkload();
    const script = [
      'set -e',
      'mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug',
      `echo 0 >${HUGEPAGES}`,
      `free=$(( $(awk '/MemFree/ {print $4}' /sys/devices/system/node/node0/meminfo) * 1024 ))`,
      `echo $(( (free - ${HEADROOM_MB * MiB}) / ${2 * MiB} )) >${HUGEPAGES}`,
      ...(opts.controlled ? ['sync; echo 1 >/proc/sys/vm/drop_caches'] : []),
      `free=$(( $(awk '/MemFree/ {print $4}' /sys/devices/system/node/node0/meminfo) * 1024 ))`,
      `hog=$(( (free + ${coldBytes} + ${pressureMB * MiB} + ${2 * MiB - 1}) / ${2 * MiB} * 2 ))`,
      'echo "free=$free hogmb=$hog"',
      // What else lies on node 0 and in which MGLRU generation, just before the hog.
      `awk '/(Active|Inactive)\\((anon|file)\\)|Shmem:|FilePages/ {gsub(/[():]/, "", $3); print "before_" $3 "=" $4}' /sys/devices/system/node/node0/meminfo`,
      'echo "lrugen_before<<"; cat /sys/kernel/debug/lru_gen 2>/dev/null || true; echo ">>"',
      't0=$(date +%s%3N)',
      `${hogBin} --size \${hog}m --hot 64k --rate 0 --node 0 --policy bind --thp off >/tmp/madv-hog.out &`,
      'pid=$!',
      'until [ -s /tmp/madv-hog.out ]; do kill -0 $pid; sleep 0.2; done',
      'sleep 2',
      'echo "hogms=$(( $(date +%s%3N) - t0 ))"',
      'echo "lrugen_after<<"; cat /sys/kernel/debug/lru_gen 2>/dev/null || true; echo ">>"',
      'kill $pid; wait $pid || true',
    ].join('\n');
    let hogOut: string;
    try {
      hogOut = await lab.check(script, { timeoutMs: 300_000 });
    } finally {
      await lab.run(`echo 0 >${HUGEPAGES}`, { timeoutMs: 60_000 });
    }
    const num = (k: string) => Number(new RegExp(`${k}=(\\d+)`).exec(hogOut)?.[1] ?? Number.NaN);
    const roundsDuringHog = serve.rounds(d.uuid).length - roundsBeforeHog;
    const after = await d.sample();
    const v1 = await vmstat(lab);
    const st1 = (await serve.http('GET', `/v1/vms/${d.uuid}/engine`)).body;
    const block = (k: string) => new RegExp(`${k}<<\\n([\\s\\S]*?)>>`).exec(hogOut)?.[1] ?? '';
    const node0: Node0Context = {
      meminfoKB: Object.fromEntries([...hogOut.matchAll(/^before_(\w+)=(\d+)$/gm)].map((m) => [m[1]!, Number(m[2])])),
      lruGenBefore: parseLruGen(block('lrugen_before'), 0),
      lruGenAfter: parseLruGen(block('lrugen_after'), 0),
    };
    const res: DomainArmResult = {
      node0,
      roundsDuringHog,
      madviseCold,
      domainType: virt.domainType,
      rounds: st.rounds,
      tracker: st.tracker ? `${st.tracker.name}${st.tracker.available ? '' : ' (unavailable)'}` : null,
      lastRound: { hotMB: lr.hotBytes / MiB, coldMB: lr.coldBytes / MiB, madvisedColdMB: lr.madvisedColdBytes / MiB },
      madvisedColdMBTotal: st1.totals.madvisedColdBytes / MiB,
      vmtierMovedPages: st1.totals.promote.byClass.moved + st1.totals.demote.byClass.moved,
      before: { hot: before.hot, cold: before.cold },
      after: { hot: after.hot, cold: after.cold },
      hogMB: num('hogmb'),
      node0FreeBeforeHogMB: num('free') / MiB,
      vmstat: Object.fromEntries(['pgdemote_kswapd', 'pgdemote_direct', 'pgsteal_kswapd', 'pgsteal_direct'].map((k) => [k, (v1[k] ?? 0) - (v0[k] ?? 0)])),
      seconds: { engine: engineS, hog: num('hogms') / 1000 },
    };
    progress(`madvise-cold-domain: madviseCold=${madviseCold}: hog ${res.hogMB} MiB in ${res.seconds.hog.toFixed(0)} s; on node 1: hot ${after.hot.node1}/${after.hot.pages}, cold ${after.cold.node1}/${after.cold.pages}; pgdemote ${res.vmstat.pgdemote_kswapd! + res.vmstat.pgdemote_direct!}`);
    return res;
  } finally {
    await d.destroy();
  }
}
