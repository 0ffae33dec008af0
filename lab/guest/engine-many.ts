/**
 * Issue 13's lab proof for several VMs and the real trackers: one `vmtier serve` inside the lab
 * manages payload domains at once, three tracked by DAMON (a kdamond each) and three by the kernel
 * module (KVM's NPT), while API clients poll it. What is checked: every domain is tiered (its hot
 * set reaches DRAM by vmtier's moves; none left observe-only, none refused with TRACKER_BUSY), each
 * VM runs the tracker its policy named, every API answer is 200, and the main thread never holds
 * the event loop for 100 ms of its own CPU (vmtier_event_loop_stalls_total, src/daemon/loop-stall.ts)
 * over the measured window. Placement is read by the independent witness (lab/guest/pagenodes.c:
 * move_pages queries on each QEMU process) as in engine-lab.ts.
 *
 * Why it is shaped this way: under TCG the lab has one CPU for everything (maxcpus=1 for nested
 * KVM). A serve started after six running guests did not print "vmtier serving" within 420 s (a
 * fresh node's JIT warm-up shares the CPU with every guest), so serve starts first, on an empty
 * inventory, and the domains come after. The domains are small (2 × 16 MiB) and their payload
 * writes 4 MiB at 20 Hz: a round's cost grows with the guest's pages and the guests' with what
 * they write, and both share the lab's one CPU with serve.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { labCacheDir } from '../paths.js';
import { VmtierError } from '../../src/errors.js';
import type { LabProcess, LabSession } from '../session.js';
import { LabDomain, LabServe, TOKEN, fraction, type LabVirt, type Progress, type SetCount } from './engine-lab.js';
import type { PayloadLayout } from './payload.js';
import { POLICY_NS } from '../../src/vm/vm-metadata.js';

const MiB = 2 ** 20;
export type ManyTracker = 'damon' | 'kmod';

/** Guest RAM per guest node: the payload's code sits in the low 2 MiB of node 0. */
export const MANY_NODE_BYTES = 16 * MiB;
/** 2 MiB hot per guest node (whole THP units), 4 MiB written once beside each (cold afterwards). */
export const MANY_LAYOUT: PayloadLayout = {
  hz: 20,
  hot: [{ start: 8 * MiB, end: 10 * MiB }, { start: 24 * MiB, end: 26 * MiB }],
  hot1: [],
  once: [{ start: 10 * MiB, end: 14 * MiB }, { start: 26 * MiB, end: 30 * MiB }],
};
/** The 4 MiB hot set, the payload's low 2 MiB (code, stack: written every pass) and 2 MiB to spare. */
export const MANY_CEILING = 8 * MiB;
/** Share of each hot set that must reach node 0. */
export const MANY_HOT_ON_DRAM = 0.95;

export interface ManyVm {
  name: string;
  uuid: string;
  /** The tracker the policy named. */
  asked: ManyTracker;
  phase: number;
  hot: SetCount;
  cold: SetCount;
  initialHotOnNode1: number;
  /** Seconds from the start of its domains' creation until the witness saw ≥ 95 % of the hot set on node 0. */
  seconds: number | null;
  /** Most node changes of any hot / cold page over the witness samples. */
  maxChanges: { hot: number; cold: number };
  /** GET /v1/vms/{uuid}/engine at the end of its phase. */
  engine: {
    mode: string; lastRoundMode: string | null; tracker: string | null; trackerAvailable: boolean | null; trackerError: string | null;
    trackerFailures: number; rounds: number; tierRounds: number; roundMs: number | null; promoted: number; demoted: number; failures: number; lastError: string | null;
  };
  /** This VM in GET /v1/engine's list at the end of its phase: its tracker name and error code. */
  engineList: { tracker: string | null; trackerError: string | null } | null;
}

export interface ManyRun {
  vms: ManyVm[];
  /** Seconds for `vmtier serve` to print "vmtier serving" (on no domain yet). */
  serveStartSeconds: number;
  /** Event-loop stalls (≥ 100 ms of the main thread's CPU in one gap) counted over the measured window. */
  stalls: number;
  /** Largest value of vmtier_event_loop_blocked_max_seconds seen over the window (ms; a 30–60 s rolling max). */
  blockedMaxMs: number;
  /** /metrics reads during the window (the gauge's samples). */
  metricSamples: number;
  /** API clients' answers by HTTP status ('000': no answer), per path kind, and their wall times (s). */
  statuses: Record<string, number>;
  byPath: Record<string, number>;
  requests: number;
  p50s: number;
  p99s: number;
  maxs: number;
  /** Measured window: from the first policy PUT to the last check (s). */
  windowSeconds: number;
  /** serve's CPU (all threads) and kdamonds' over the window (s). */
  serveCpuSeconds: number;
  kdamondCpuSeconds: number;
  serveLogErrors: Array<Record<string, unknown>>;
}

const metricValue = (text: string, name: string): number => {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
};

/** utime+stime (USER_HZ ticks) of one pid and of every kdamond thread. */
async function ticks(lab: LabSession, pid: number): Promise<{ serve: number; kdamond: number }> {
  const script = `s=$(cat /proc/${pid}/stat); r=\${s##*) }; set -- $r; echo "serve $(( \${12} + \${13} ))"; ` +
    `k=0; for f in /proc/[0-9]*/stat; do s=$(cat "$f" 2>/dev/null) || continue; case "$s" in *"(kdamond."*) r=\${s##*) }; set -- $r; k=$(( k + \${12} + \${13} ));; esac; done; echo "kdamond $k"`;
  const out = await lab.check(script, { timeoutMs: 60_000 });
  const get = (k: string) => Number(new RegExp(`^${k} (\\d+)$`, 'm').exec(out)?.[1] ?? Number.NaN);
  return { serve: get('serve'), kdamond: get('kdamond') };
}

/**
 * Two API clients inside the lab, curl in loops over what a control plane polls: one on
 * /v1/engine and /metrics, one on /v1/vms and each VM's engine status and history. One line per
 * answer: "<path kind> <status> <seconds>". The VM list file is re-read every pass, so VMs of a
 * later phase are polled too.
 */
function startClients(lab: LabSession): LabProcess[] {
  const curl = (kind: string, path: string) =>
    `curl -s -m 30 -o /dev/null -w '${kind} %{http_code} %{time_total}\\n' -H 'Authorization: Bearer ${TOKEN}' "http://127.0.0.1:8477${path}" >>/tmp/many-clients.log`;
  // A pause per pass, as a control plane polls: curl's fork and exec cost the lab's one CPU too.
  const a = ['while :; do', `  ${curl('engine', '/v1/engine')}`, `  ${curl('metrics', '/metrics')}`, '  sleep 1', 'done'].join('\n');
  const b = [
    'while :; do',
    `  ${curl('vms', '/v1/vms')}`,
    '  for u in $(cat /tmp/many-uuids 2>/dev/null); do',
    `    ${curl('vm-engine', '/v1/vms/$u/engine')}`,
    `    ${curl('history', '/v1/vms/$u/history?step=10s')}`,
    '  done',
    '  sleep 1',
    'done',
  ].join('\n');
  return [a, b].map((script) => {
    const p = lab.start(script, { timeoutMs: 3_600_000 });
    p.wait().catch(() => null);
    return p;
  });
}

/* eslint-disable @typescript-eslint/no-explicit-any */
function engineOf(e: any): ManyVm['engine'] {
  return {
    mode: String(e?.mode), lastRoundMode: e?.lastRound?.mode ?? null, tracker: e?.tracker?.name ?? null,
    trackerAvailable: typeof e?.tracker?.available === 'boolean' ? e.tracker.available : null, trackerError: e?.tracker?.error?.code ?? null,
    trackerFailures: Number(e?.trackerFailures ?? 0), rounds: Number(e?.rounds ?? 0), tierRounds: 0, roundMs: null,
    promoted: Number(e?.totals?.promote?.byClass?.moved ?? 0), demoted: Number(e?.totals?.demote?.byClass?.moved ?? 0),
    failures: Number(e?.failures ?? 0), lastError: e?.lastError?.code ?? null,
  };
}

/**
 * `phases`: the trackers of each phase's domains (one domain per entry, all bound to the slow
 * node). Each phase creates its domains, PUTs the tier policy with the tracker named, waits until
 * every hot set is on node 0 (or `phaseTimeoutMs`), checks a few rounds more, reads each VM's
 * engine status, and destroys its domains before the next phase. One serve and the API clients
 * run through all phases.
 */
export async function runManyScenario(lab: LabSession, virt: LabVirt, progress: Progress, phases: ManyTracker[][], phaseTimeoutMs = 240_000): Promise<ManyRun> {
  const serve = new LabServe(lab);
  let clients: LabProcess[] = [];
  const live: LabDomain[] = [];
  try {
    await lab.check('rm -f /tmp/many-clients.log /tmp/many-uuids /tmp/vmtier-engine-lab.db*', { timeoutMs: 30_000 });
    const s0 = Date.now();
    await serve.start(progress, 600_000, '', process.env.VMTIER_LAB_MANY_TRACE_GC === '1' ? '--trace-gc' : '');
    const serveStartSeconds = (Date.now() - s0) / 1000;
    clients = startClients(lab);
    const vms: ManyVm[] = [];
    let t0 = 0;
    let stalls0 = Number.NaN;
    let cpu0 = { serve: 0, kdamond: 0 };
    let blockedMaxMs = 0;
    let metricSamples = 0;
    const readGauge = async () => {
      const m = await serve.http('GET', '/metrics');
      if (m.status !== 200) throw new VmtierError('LAB_ERROR', `/metrics answered ${m.status}`);
      metricSamples++;
      blockedMaxMs = Math.max(blockedMaxMs, 1000 * (metricValue(String(m.body), 'vmtier_event_loop_blocked_max_seconds') || 0));
      return String(m.body);
    };
    for (const [pi, trackers] of phases.entries()) {
      if (t0 === 0) {
        t0 = Date.now();
        stalls0 = metricValue(await readGauge(), 'vmtier_event_loop_stalls_total');
        cpu0 = await ticks(lab, serve.pid);
      }
      // The policy is in each domain's metadata from the start (what `PUT /v1/vms/{uuid}/policy`
      // writes): the loop starts with the tracker it names, no switch from the default's 'auto'.
      const p0 = Date.now();
      const doms = await Promise.all(trackers.map(async (t, i) => {
        const policy = {
          mode: 'tier', tracker: t, scan: { intervalMs: 500, scansPerRound: 4, autoTune: false },
          thresholds: { coldConfirmRounds: 2, hotConfirmRounds: 2 }, dram: { maxBytes: MANY_CEILING },
        };
        const d = await LabDomain.create(lab, virt, `vmtier-test-i-many-${pi}-${t}-${i}`, 1, MANY_LAYOUT, {
          nodeBytes: MANY_NODE_BYTES, metadataXml: `<vmtier:policy xmlns:vmtier="${POLICY_NS}">${JSON.stringify(policy)}</vmtier:policy>`,
        });
        live.push(d);
        return { d, tracker: t };
      }));
      const initial = new Map<string, number>();
      for (const { d, tracker } of doms) {
        const s = await d.sample();
        initial.set(d.uuid, s.hot.node1);
        progress(`engine-many: phase ${pi} ${d.name} pid ${d.pid} (${tracker}): hot ${s.hot.node1}/${s.hot.pages} on node 1`);
      }
      await lab.check(`echo ${[...live.map((d) => d.uuid)].join(' ')} >/tmp/many-uuids`, { timeoutMs: 30_000 });
      const seconds = new Map<string, number>();
      const last = new Map<string, { hot: SetCount; cold: SetCount }>();
      while (seconds.size < doms.length && Date.now() - p0 < phaseTimeoutMs) {
        for (const { d } of doms) {
          if (seconds.has(d.uuid)) continue;
          const s = await d.sample();
          last.set(d.uuid, s);
          if (fraction(s.hot, 0) >= MANY_HOT_ON_DRAM) seconds.set(d.uuid, (Date.now() - p0) / 1000);
        }
        await readGauge();
        progress(`engine-many: phase ${pi} t=${((Date.now() - p0) / 1000).toFixed(0)}s hot on node 0: ` +
          `${doms.map(({ d }) => `${last.get(d.uuid)?.hot.node0 ?? 0}/${last.get(d.uuid)?.hot.pages ?? '?'}`).join(' ')}; longest on-CPU gap ${blockedMaxMs.toFixed(0)} ms`);
        if (seconds.size < doms.length) await sleep(2000);
      }
      // Two rounds more of each VM with the clients running, after the moves: placement holds.
      const roundsAt = new Map(doms.map(({ d }) => [d.uuid, serve.rounds(d.uuid).length]));
      const w = Date.now();
      while (doms.some(({ d }) => serve.rounds(d.uuid).length < roundsAt.get(d.uuid)! + 2) && Date.now() - w < 60_000) {
        await readGauge();
        await sleep(3000);
      }
      const list = (await serve.http('GET', '/v1/engine')).body;
      for (const { d, tracker } of doms) {
        const s = await d.sample();
        const e = (await serve.http('GET', `/v1/vms/${d.uuid}/engine`)).body;
        const inList = (list?.vms ?? []).find((v: any) => v.uuid === d.uuid);
        const engine = engineOf(e);
        const tierLog = serve.rounds(d.uuid).filter((r) => r.mode === 'tier');
        engine.tierRounds = tierLog.length;
        const ms = tierLog.map((r) => Number(r.ms)).filter(Number.isFinite).sort((a, b) => a - b);
        engine.roundMs = ms.length ? ms[Math.floor(ms.length / 2)]! : null;
        vms.push({
          name: d.name, uuid: d.uuid, asked: tracker, phase: pi, hot: s.hot, cold: s.cold, initialHotOnNode1: initial.get(d.uuid)!,
          seconds: seconds.get(d.uuid) ?? null, maxChanges: { hot: d.maxChanges('hot'), cold: d.maxChanges('cold') }, engine,
          engineList: inList ? { tracker: inList.tracker?.name ?? null, trackerError: inList.tracker?.error?.code ?? null } : null,
        });
      }
      if (pi < phases.length - 1) {
        for (const { d } of doms) {
          await d.destroy();
          live.splice(live.indexOf(d), 1);
        }
        await lab.check(`echo ${live.map((d) => d.uuid).join(' ')} >/tmp/many-uuids`, { timeoutMs: 30_000 });
      }
    }
    const metrics = await readGauge();
    const stalls = metricValue(metrics, 'vmtier_event_loop_stalls_total') - stalls0;
    const cpu1 = await ticks(lab, serve.pid);
    const windowSeconds = (Date.now() - t0) / 1000;
    for (const c of clients) c.kill();
    clients = [];
    const lines = (await lab.run(['cat', '/tmp/many-clients.log'], { timeoutMs: 60_000 })).stdout.trim().split('\n').filter(Boolean);
    const statuses: Record<string, number> = {};
    const byPath: Record<string, number> = {};
    const times: number[] = [];
    for (const l of lines) {
      const [kind, code, t] = l.split(' ');
      // A line cut by the kill is not an answer.
      if (!kind || !code || t === undefined || !/^\d{3}$/.test(code)) continue;
      statuses[code] = (statuses[code] ?? 0) + 1;
      byPath[kind] = (byPath[kind] ?? 0) + 1;
      times.push(Number(t));
    }
    times.sort((a, b) => a - b);
    const q = (f: number) => times[Math.min(times.length - 1, Math.floor(f * times.length))] ?? Number.NaN;
    return {
      vms, serveStartSeconds, stalls, blockedMaxMs, metricSamples, statuses, byPath, requests: times.length, p50s: q(0.5), p99s: q(0.99), maxs: times.at(-1) ?? Number.NaN,
      windowSeconds, serveCpuSeconds: (cpu1.serve - cpu0.serve) / 100, kdamondCpuSeconds: (cpu1.kdamond - cpu0.kdamond) / 100, serveLogErrors: serve.errors(),
    };
  } finally {
    for (const c of clients) c.kill();
    await serve.stop();
    // serve's whole log, for reading a failure afterwards (git-ignored).
    writeFileSync(join(labCacheDir, 'engine-many-serve.jsonl'), serve.log.map((l) => JSON.stringify(l)).join('\n') + '\n');
    for (const d of live) await d.destroy();
  }
}

/** One line per VM and a summary line (plain text), printed by the test. */
export function manyTable(r: ManyRun): string {
  const rows = r.vms.map((v) => `phase ${v.phase} ${v.name}: tracker ${v.engine.tracker} (asked ${v.asked})${v.engine.trackerError ? ` error ${v.engine.trackerError}` : ''}, ` +
    `mode ${v.engine.mode} (last round ${v.engine.lastRoundMode}), ${v.engine.tierRounds} tier rounds (median ${v.engine.roundMs ?? '?'} ms), ${v.engine.trackerFailures} tracker failures; ` +
    `hot ${v.hot.node0}/${v.hot.pages} on node 0${v.seconds === null ? ' (95 % not reached)' : ` (95 % after ${v.seconds.toFixed(0)} s)`}, ` +
    `cold ${v.cold.node0}/${v.cold.pages} on node 0; ${v.engine.promoted} pages promoted, ${v.engine.demoted} demoted`);
  rows.push(`serve up in ${r.serveStartSeconds.toFixed(0)} s; over ${r.windowSeconds.toFixed(0)} s: event-loop stalls ≥ 100 ms of main-thread CPU: ${r.stalls}; ` +
    `longest on-CPU gap seen ${r.blockedMaxMs.toFixed(0)} ms (${r.metricSamples} /metrics reads); serve CPU ${r.serveCpuSeconds.toFixed(1)} s, kdamonds ${r.kdamondCpuSeconds.toFixed(1)} s`);
  rows.push(`API clients: ${r.requests} answers ${JSON.stringify(r.statuses)} ${JSON.stringify(r.byPath)}, p50 ${(r.p50s * 1000).toFixed(0)} ms, p99 ${(r.p99s * 1000).toFixed(0)} ms, max ${(r.maxs * 1000).toFixed(0)} ms`);
  return rows.join('\n');
}
