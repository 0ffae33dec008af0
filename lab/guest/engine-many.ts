/**
 * Issue 13's lab proof for many VMs and the real trackers: one `vmtier serve` inside the lab
 * manages several payload domains at once, some tracked by DAMON (one kdamond each) and some by
 * the kernel module (KVM's NPT), while API clients poll it. What is checked: every domain is
 * tiered (its hot set reaches DRAM; none is left observe-only or refused), each VM reports the
 * tracker its policy asked for, and the main thread never holds the event loop for 100 ms of its
 * own CPU (vmtier_event_loop_stalls_total, src/daemon/loop-stall.ts). Placement is read by the
 * independent witness (lab/guest/pagenodes.c) as in engine-lab.ts.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { VmtierError } from '../../src/errors.js';
import type { LabProcess, LabSession } from '../session.js';
import { DRAM_CEILING, LabDomain, LabServe, TOKEN, fraction, type LabVirt, type Progress, type SetCount } from './engine-lab.js';

export type ManyTracker = 'damon' | 'kmod';

export interface ManyVm {
  name: string;
  uuid: string;
  tracker: ManyTracker;
  /** The witness's last sample of the hot set, and seconds from the policy PUTs to ≥ 95 % on node 0. */
  hot: SetCount;
  seconds: number | null;
  /** GET /v1/vms/{uuid}/engine at the end. */
  /** GET /v1/vms/{uuid}/engine at the end: policy mode, the last round's mode, tracker, failures. */
  engine: { mode: string; lastRoundMode: string | null; tracker: string | null; trackerError: string | null; trackerFailures: number; rounds: number; promoted: number };
}

export interface ManyRun {
  vms: ManyVm[];
  /** Event-loop stalls (≥ 100 ms of the main thread's CPU in one gap) counted over the run. */
  stalls: number;
  /** Largest value of vmtier_event_loop_blocked_max_seconds seen over the run, in ms. */
  blockedMaxMs: number;
  /** API clients' answers by HTTP status, and their wall times (s). */
  statuses: Record<string, number>;
  requests: number;
  p50s: number;
  p99s: number;
  seconds: number;
  serveLogErrors: Array<Record<string, unknown>>;
}

const metricValue = (text: string, name: string): number => {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
};

/** API clients inside the lab: curl in a loop over the routes a control plane polls, one line per answer. */
function startClients(lab: LabSession, uuids: string[]): LabProcess {
  const paths = ['/v1/engine', '/metrics', '/v1/vms', ...uuids.flatMap((u) => [`/v1/vms/${u}/engine`, `/v1/vms/${u}/history?from=2000-01-01T00:00:00Z&step=10s`])];
  const script = [
    'rm -f /tmp/many-clients.log',
    'while :; do',
    ...paths.map((p) => `  curl -s -m 30 -o /dev/null -w '%{http_code} %{time_total}\\n' -H 'Authorization: Bearer ${TOKEN}' 'http://127.0.0.1:8477${p}' >>/tmp/many-clients.log`),
    'done',
  ].join('\n');
  const proc = lab.start(script, { timeoutMs: 3_600_000 });
  proc.wait().catch(() => null);
  return proc;
}

/**
 * `perTracker` domains for each tracker, all bound to the slow node, one serve, the tier policy of
 * engine-lab.ts per VM with its tracker named in the policy.
 */
export async function runManyScenario(lab: LabSession, virt: LabVirt, progress: Progress, trackers: ManyTracker[], perTracker: number): Promise<ManyRun> {
  const doms: Array<{ d: LabDomain; tracker: ManyTracker }> = [];
  const serve = new LabServe(lab);
  let clients: LabProcess | null = null;
  try {
    for (const t of trackers) {
      for (let i = 0; i < perTracker; i++) {
        const d = await LabDomain.create(lab, virt, `vmtier-test-i-many-${t}-${i}`, 1);
        doms.push({ d, tracker: t });
        progress(`engine-many: ${d.name} pid ${d.pid} (${t})`);
      }
    }
    await serve.start(progress);
    for (const { d, tracker } of doms) {
      const st = Date.now();
      while ((await serve.http('GET', `/v1/vms/${d.uuid}/engine`)).status !== 200) {
        if (Date.now() - st > 180_000) throw new VmtierError('LAB_ERROR', `the engine did not pick up ${d.name}`);
        await sleep(1000);
      }
      const policy = { mode: 'tier', tracker, scan: { intervalMs: 500, scansPerRound: 4, autoTune: false }, thresholds: { coldConfirmRounds: 2, hotConfirmRounds: 2 }, dram: { maxBytes: DRAM_CEILING } };
      const put = await serve.http('PUT', `/v1/vms/${d.uuid}/policy`, policy);
      if (put.status !== 200) throw new VmtierError('LAB_ERROR', `PUT policy ${d.name}: ${put.status} ${JSON.stringify(put.body)}`);
    }
    const stalls0 = metricValue(String((await serve.http('GET', '/metrics')).body), 'vmtier_event_loop_stalls_total');
    clients = startClients(lab, doms.map((x) => x.d.uuid));
    const t0 = Date.now();
    const seconds = new Map<string, number>();
    const last = new Map<string, SetCount>();
    let blockedMaxMs = 0;
    while (seconds.size < doms.length && Date.now() - t0 < 600_000) {
      for (const { d } of doms) {
        if (seconds.has(d.uuid)) continue;
        const s = await d.sample();
        last.set(d.uuid, s.hot);
        if (fraction(s.hot, 0) >= 0.95) seconds.set(d.uuid, (Date.now() - t0) / 1000);
      }
      const m = String((await serve.http('GET', '/metrics')).body);
      blockedMaxMs = Math.max(blockedMaxMs, 1000 * (metricValue(m, 'vmtier_event_loop_blocked_max_seconds') || 0));
      progress(`engine-many: t=${((Date.now() - t0) / 1000).toFixed(0)}s hot pages on node 0: ${doms.map(({ d }) => `${last.get(d.uuid)?.node0 ?? 0}/${last.get(d.uuid)?.pages ?? '?'}`).join(' ')}; longest on-CPU gap ${blockedMaxMs.toFixed(0)} ms`);
      await sleep(2000);
    }
    // A few more rounds with the clients running, after the moves.
    await sleep(20_000);
    const metrics = String((await serve.http('GET', '/metrics')).body);
    blockedMaxMs = Math.max(blockedMaxMs, 1000 * (metricValue(metrics, 'vmtier_event_loop_blocked_max_seconds') || 0));
    const stalls = metricValue(metrics, 'vmtier_event_loop_stalls_total') - stalls0;
    const vms: ManyVm[] = [];
    for (const { d, tracker } of doms) {
      const e = (await serve.http('GET', `/v1/vms/${d.uuid}/engine`)).body;
      vms.push({
        name: d.name, uuid: d.uuid, tracker, hot: (await d.sample()).hot, seconds: seconds.get(d.uuid) ?? null,
        engine: {
          mode: String(e?.mode), lastRoundMode: e?.lastRound?.mode ?? null, tracker: e?.tracker?.name ?? null, trackerError: e?.tracker?.error?.code ?? null,
          trackerFailures: Number(e?.trackerFailures ?? 0), rounds: Number(e?.rounds ?? 0), promoted: Number(e?.totals?.promote?.byClass?.moved ?? 0),
        },
      });
    }
    clients.kill();
    clients = null;
    const lines = (await lab.run(['cat', '/tmp/many-clients.log'], { timeoutMs: 60_000 })).stdout.trim().split('\n').filter(Boolean);
    const statuses: Record<string, number> = {};
    const times: number[] = [];
    for (const l of lines) {
      const [code, t] = l.split(' ');
      statuses[code!] = (statuses[code!] ?? 0) + 1;
      times.push(Number(t));
    }
    times.sort((a, b) => a - b);
    const q = (f: number) => times[Math.min(times.length - 1, Math.floor(f * times.length))] ?? Number.NaN;
    return {
      vms, stalls, blockedMaxMs, statuses, requests: lines.length, p50s: q(0.5), p99s: q(0.99), seconds: (Date.now() - t0) / 1000, serveLogErrors: serve.errors(),
    };
  } finally {
    clients?.kill();
    await serve.stop();
    for (const { d } of doms) await d.destroy();
  }
}

/** One line per VM and a summary line (plain text), printed by the test. */
export function manyTable(r: ManyRun): string {
  const rows = r.vms.map((v) => `${v.name}: tracker ${v.engine.tracker} (asked ${v.tracker})${v.engine.trackerError ? ` error ${v.engine.trackerError}` : ''}, mode ${v.engine.mode} (last round ${v.engine.lastRoundMode}), ${v.engine.rounds} rounds, ${v.engine.trackerFailures} tracker failures, ` +
    `hot set ${v.hot.node0}/${v.hot.pages} on node 0${v.seconds === null ? ' (95 % not reached)' : ` (95 % after ${v.seconds.toFixed(0)} s)`}, ${v.engine.promoted} pages promoted`);
  rows.push(`event-loop stalls ≥ 100 ms of main-thread CPU: ${r.stalls}; longest on-CPU gap seen ${r.blockedMaxMs.toFixed(0)} ms; ` +
    `${r.requests} API answers in ${r.seconds.toFixed(0)} s ${JSON.stringify(r.statuses)}, p50 ${(r.p50s * 1000).toFixed(0)} ms, p99 ${(r.p99s * 1000).toFixed(0)} ms`);
  return rows.join('\n');
}
