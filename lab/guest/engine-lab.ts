/**
 * The tiering engine end to end in the lab, driven from this machine: libvirtd inside the lab, a
 * two-node domain running the guest payload with its RAM first on the slow node, then either
 * `vmtier serve` in tier mode or Linux's own tiering (NUMA balancing mode 2 + demotion) on the
 * same workload. Placement is witnessed independently by lab/guest/pagenodes.c (move_pages query
 * on the QEMU process), sampled every couple of seconds. test/lab/engine.test.ts asserts on what
 * these functions return; bench/engine.ts prints the figures.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmtierError } from '../../src/errors.js';
import { ensureLabBinary } from '../build.js';
import type { LabProcess, LabSession } from '../session.js';
import { ensurePayload, parsePayloadLayout, payloadDomainXml, type GpaRange, type PayloadLayout } from './payload.js';

const MiB = 2 ** 20;
const PAGE = 4096;
/** Guest pages are written 50 times a second: the vCPU sleeps in hlt between passes. */
const PAYLOAD_HZ = 50;
export const NODE_BYTES = 64 * MiB;
/** Hot set in both guest nodes (16 MiB), a second one of the same size for phase 1, and cold ranges written once. */
export const LAYOUT: PayloadLayout = {
  hz: PAYLOAD_HZ,
  hot: [{ start: 24 * MiB, end: 32 * MiB }, { start: 80 * MiB, end: 88 * MiB }],
  hot1: [{ start: 40 * MiB, end: 48 * MiB }, { start: 96 * MiB, end: 104 * MiB }],
  once: [{ start: 40 * MiB, end: 56 * MiB }, { start: 96 * MiB, end: 112 * MiB }],
};
export const TOKEN = 'vmtier-lab-engine-token-0001';
const API = 'http://127.0.0.1:8477';
const XCHG_IN_GUEST = '/run/lab/xchg';
const SAMPLE_MS = 2000;
/** The VM's DRAM ceiling in the tier policy. */
export const DRAM_CEILING = 18 * MiB;
/** Share of the old hot set that must leave DRAM: all of it but what the 2 MiB slack may keep. */
export const RETIER_OLD_HOT_DEMOTED = 0.85;

export type Progress = (line: string) => void;

/** Where the lab's libvirt runs its domains: nested KVM when kvm_amd gives /dev/kvm, else TCG. */
export interface LabVirt {
  domainType: 'kvm' | 'qemu';
  npt: boolean;
  libvirtVersion: string;
}

/** Loads kvm_amd (a CPU with svm+npt gives /dev/kvm), starts libvirtd, picks the domain type. */
export async function startLabLibvirt(lab: LabSession): Promise<LabVirt> {
  await lab.run('modprobe kvm_amd', { timeoutMs: 60_000 });
  const kvm = (await lab.run('test -c /dev/kvm && cat /sys/module/kvm_amd/parameters/npt', { timeoutMs: 30_000 }));
  const version = await lab.check(['sh', 'lab/guest/libvirt-up.sh'], { timeoutMs: 300_000 });
  const domainType = kvm.status === 0 ? 'kvm' : 'qemu';
  return { domainType, npt: kvm.stdout.trim() === 'Y', libvirtVersion: version.trim().split('\n')[0] ?? '' };
}

/** A guest page range as the witness sees it: one node digit per 4 KiB page ('-' absent). */
function countOn(map: string, node: number): number {
  let n = 0;
  const c = String(node);
  for (let i = 0; i < map.length; i++) if (map[i] === c) n++;
  return n;
}

function subtract(a: GpaRange[], b: GpaRange[]): GpaRange[] {
  let out = a.map((r) => ({ ...r }));
  for (const x of b) {
    out = out.flatMap((r) => {
      if (x.end <= r.start || x.start >= r.end) return [r];
      const parts: GpaRange[] = [];
      if (x.start > r.start) parts.push({ start: r.start, end: x.start });
      if (x.end < r.end) parts.push({ start: x.end, end: r.end });
      return parts;
    });
  }
  return out;
}

/** The witnessed page sets: the payload's hot sets, its cold pages (written once) and its warm set. */
type SetName = 'hot' | 'hot1' | 'cold' | 'warm';
export type SetCount = { pages: number; node0: number; node1: number };

/** A payload domain in the lab: its QEMU pid and the HVA of each guest-physical range. */
export class LabDomain {
  readonly pagenodes: string;
  uuid = '';
  pid = 0;
  layout!: PayloadLayout;
  /** Per tracked page (hot ∪ hot1 ∪ once, in that order): node in the previous sample and changes. */
  private lastNode: Int8Array = new Int8Array(0);
  readonly changes: { count: Uint16Array } = { count: new Uint16Array(0) };
  private sets: { name: SetName; ranges: GpaRange[]; hva: Array<{ start: number; end: number }>; offset: number; pages: number }[] = [];

  constructor(private readonly lab: LabSession, readonly name: string, readonly serialLog: string) {
    this.pagenodes = ensureLabBinary('pagenodes', 'lab/guest/pagenodes.c');
  }

  static async create(
    lab: LabSession, virt: LabVirt, name: string, bindHostNode: number | null, layout: PayloadLayout = LAYOUT,
    extra: { nodeBytes?: number; metadataXml?: string } = {},
  ): Promise<LabDomain> {
    const d = new LabDomain(lab, name, `/tmp/${name}.serial`);
    const xml = payloadDomainXml({
      name, payload: ensurePayload(), type: virt.domainType, nodeBytes: extra.nodeBytes ?? NODE_BYTES, bindHostNode, layout, serialLog: d.serialLog,
      metadataXml: extra.metadataXml,
    });
    writeFileSync(join(lab.xchg, `${name}.xml`), xml);
    await lab.check(['virsh', 'create', `${XCHG_IN_GUEST}/${name}.xml`], { timeoutMs: 120_000 });
    const started = Date.now();
    let line = '';
    while (!line) {
      if (Date.now() - started > 120_000) throw new VmtierError('LAB_ERROR', `${name}: the payload printed no layout in 120 s`);
      await sleep(500);
      // The serial port is slow: a line without its newline may still be being written.
      const out = (await lab.run(['head', '-n1', d.serialLog], { timeoutMs: 30_000 })).stdout;
      if (out.endsWith('\n')) line = out.trim();
    }
    d.layout = parsePayloadLayout(line);
    d.uuid = (await lab.check(['virsh', 'domuuid', name], { timeoutMs: 30_000 })).trim();
    d.pid = Number((await lab.check(['cat', `/run/libvirt/qemu/${name}.pid`], { timeoutMs: 30_000 })).trim());
    await d.mapRanges();
    return d;
  }

  /** HMP gpa2hva per range: each range lies inside one ramblock, so its HVAs are contiguous. */
  private async mapRanges(): Promise<void> {
    const cold = subtract(this.layout.once, this.layout.hot1);
    let offset = 0;
    for (const [name, ranges] of [['hot', this.layout.hot], ['hot1', this.layout.hot1], ['cold', cold], ['warm', this.layout.warm ?? []]] as const) {
      const hva: Array<{ start: number; end: number }> = [];
      for (const r of ranges) {
        const out = await this.lab.check(['virsh', 'qemu-monitor-command', '--hmp', this.name, `gpa2hva 0x${r.start.toString(16)}`], { timeoutMs: 30_000 });
        const m = /is (0x[0-9a-f]+)/.exec(out);
        if (!m) throw new VmtierError('LAB_ERROR', `gpa2hva 0x${r.start.toString(16)}: ${out}`);
        const start = Number.parseInt(m[1]!.slice(2), 16);
        hva.push({ start, end: start + (r.end - r.start) });
      }
      const pages = ranges.reduce((s, r) => s + (r.end - r.start) / PAGE, 0);
      this.sets.push({ name, ranges, hva, offset, pages });
      offset += pages;
    }
    this.lastNode = new Int8Array(offset).fill(-1);
    this.changes.count = new Uint16Array(offset);
  }

  /** One witness sample: pages of each set per node; every node change of a page is counted. */
  async sample(): Promise<Record<SetName, SetCount>> {
    const args = this.sets.flatMap((s) => s.hva.map((h) => `${h.start.toString(16)}-${h.end.toString(16)}`));
    const out = (await this.lab.check([this.pagenodes, String(this.pid), ...args], { timeoutMs: 60_000 })).trim().split('\n');
    const res = {} as Record<SetName, SetCount>;
    let line = 0;
    for (const s of this.sets) {
      const map = out.slice(line, line + s.hva.length).join('');
      line += s.hva.length;
      if (map.length !== s.pages) throw new VmtierError('LAB_ERROR', `pagenodes: ${map.length} pages for ${s.name}, expected ${s.pages}`);
      for (let i = 0; i < map.length; i++) {
        const ch = map.charCodeAt(i) - 48;
        const node = ch >= 0 && ch <= 9 ? ch : -1;
        const k = s.offset + i;
        if (node >= 0) {
          if (this.lastNode[k]! >= 0 && this.lastNode[k] !== node) this.changes.count[k]!++;
          this.lastNode[k] = node;
        }
      }
      res[s.name] = { pages: s.pages, node0: countOn(map, 0), node1: countOn(map, 1) };
    }
    return res;
  }

  /** Most node changes of any page in a set since the first sample. */
  maxChanges(set: SetName): number {
    const s = this.sets.find((x) => x.name === set)!;
    let m = 0;
    for (let i = s.offset; i < s.offset + s.pages; i++) m = Math.max(m, this.changes.count[i]!);
    return m;
  }

  async pressKey(): Promise<void> {
    await this.lab.check(['virsh', 'send-key', this.name, 'KEY_A'], { timeoutMs: 30_000 });
  }

  async serial(): Promise<string> {
    return (await this.lab.run(['cat', this.serialLog], { timeoutMs: 30_000 })).stdout;
  }

  async destroy(): Promise<void> {
    await this.lab.run(['virsh', 'destroy', this.name], { timeoutMs: 60_000 });
  }
}

/** utime+stime ticks (USER_HZ) of a pid, and of kernel threads by name pattern. */
export async function cpuTicks(lab: LabSession, pids: number[]): Promise<{ pids: Record<number, number>; kthreads: Record<string, number> }> {
  // comm may contain spaces: fields are counted after the closing parenthesis.
  const script = `for f in /proc/[0-9]*/stat; do s=$(cat "$f" 2>/dev/null) || continue; p=\${f#/proc/}; p=\${p%/stat}; c=\${s#*(}; c=\${c%)*}; r=\${s##*) }; set -- $r; echo "$p|$c|$(( \${12} + \${13} ))"; done`;
  const out = await lab.check(script, { timeoutMs: 60_000 });
  const res = { pids: {} as Record<number, number>, kthreads: {} as Record<string, number> };
  for (const l of out.trim().split('\n')) {
    const [p, comm, ticks] = l.split('|');
    const pid = Number(p);
    if (pids.includes(pid)) res.pids[pid] = Number(ticks);
    // kswapd0, kdamond.0, kcompactd0 ... summed per kind.
    const k = /^(kswapd|kdamond|kcompactd)\.?\d*$/.exec(comm ?? '');
    if (k) res.kthreads[k[1]!] = (res.kthreads[k[1]!] ?? 0) + Number(ticks);
  }
  return res;
}

export async function vmstat(lab: LabSession): Promise<Record<string, number>> {
  const out = await lab.check(['cat', '/proc/vmstat'], { timeoutMs: 30_000 });
  const r: Record<string, number> = {};
  for (const l of out.split('\n')) {
    const [k, v] = l.split(' ');
    if (k && v) r[k] = Number(v);
  }
  return r;
}

/** `vmtier serve` running inside the lab; its log lines (pino JSON) are collected here. */
export class LabServe {
  readonly log: Array<Record<string, any>> = [];
  pid = 0;
  private proc: LabProcess | null = null;
  private partial = '';
  private done: Promise<unknown> | null = null;

  constructor(private readonly lab: LabSession) {}

  async start(progress: Progress, timeoutMs = 420_000, extraArgs = '', nodeArgs = ''): Promise<void> {
    // The session reads a command's output only while someone waits for it: wait from the start.
    this.proc = this.lab.start(
      `ip link set lo up; echo $$ >/tmp/vmtier-serve.pid; exec node ${nodeArgs} bin/vmtier.js serve --listen 127.0.0.1:8477 --token ${TOKEN} --manage '^vmtier-test-i-' ${extraArgs} 2>&1`,
      {
        timeoutMs: 3_600_000,
        env: { VMTIER_DB: '/tmp/vmtier-engine-lab.db' },
        onStdout: (chunk) => {
          const lines = (this.partial + chunk).split('\n');
          this.partial = lines.pop() ?? '';
          for (const l of lines) {
            try {
              this.log.push(JSON.parse(l) as Record<string, any>);
            } catch {
              this.log.push({ level: 0, raw: l });
            }
          }
        },
      },
    );
    let ended = false;
    this.done = this.proc.wait().catch(() => null).finally(() => { ended = true; });
    const started = Date.now();
    while (!this.log.some((l) => l.msg === 'vmtier serving')) {
      if (ended) throw new VmtierError('LAB_ERROR', `vmtier serve exited before serving: ${JSON.stringify(this.log.slice(-5))}`);
      if (Date.now() - started > timeoutMs) throw new VmtierError('LAB_ERROR', `vmtier serve did not start in ${timeoutMs} ms: ${JSON.stringify(this.log.slice(-5))}`);
      await sleep(1000);
    }
    this.pid = Number((await this.lab.check(['cat', '/tmp/vmtier-serve.pid'], { timeoutMs: 30_000 })).trim());
    progress(`engine-lab: vmtier serve up after ${((Date.now() - started) / 1000).toFixed(0)} s (pid ${this.pid})`);
  }

  /** One HTTP request inside the lab (curl); returns status and parsed JSON body (or text). */
  async http(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const args = ['curl', '-sS', '-m', '60', '-o', '-', '-w', '\\n%{http_code}', '-X', method, '-H', `Authorization: Bearer ${TOKEN}`];
    if (body !== undefined) args.push('-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(body));
    args.push(`${API}${path}`);
    const out = await this.lab.check(args, { timeoutMs: 90_000 });
    const nl = out.lastIndexOf('\n');
    const text = out.slice(0, nl);
    let parsed: any = text;
    try {
      parsed = JSON.parse(text);
    } catch { /* /metrics is text */ }
    return { status: Number(out.slice(nl + 1)), body: parsed };
  }

  rounds(uuid: string): Array<Record<string, any>> {
    return this.log.filter((l) => l.msg === 'round' && l.vm === uuid);
  }

  errors(): Array<Record<string, any>> {
    return this.log.filter((l) => typeof l.level === 'number' && l.level >= 50);
  }

  async stop(): Promise<void> {
    this.proc?.kill();
    await this.done;
    this.proc = null;
  }
}

/** Samples until `done` holds for a sample or the time runs out; returns the last sample and seconds. */
export async function sampleUntil(
  d: LabDomain, timeoutMs: number, done: (s: Awaited<ReturnType<LabDomain['sample']>>) => boolean, progress: Progress, what: string,
): Promise<{ seconds: number | null; last: Awaited<ReturnType<LabDomain['sample']>> }> {
  const t0 = Date.now();
  for (;;) {
    const s = await d.sample();
    const secs = (Date.now() - t0) / 1000;
    progress(`engine-lab: ${what} t=${secs.toFixed(0)}s hot ${s.hot.node0}/${s.hot.pages} on node 0, hot1 ${s.hot1.node0}/${s.hot1.pages}, cold ${s.cold.node0}/${s.cold.pages}`);
    if (done(s)) return { seconds: secs, last: s };
    if (Date.now() - t0 > timeoutMs) return { seconds: null, last: s };
    await sleep(SAMPLE_MS);
  }
}

export const fraction = (x: { pages: number; node0: number; node1: number }, node: 0 | 1): number => (node === 0 ? x.node0 : x.node1) / x.pages;

const CLK_TCK = 100;
const GUEST_GB = (2 * NODE_BYTES) / 2 ** 30;

export interface CpuUse {
  /** The tiering agent: vmtier's process, or none for Linux. */
  agentSeconds: number;
  /** Kernel threads: kdamond (vmtier's DAMON tracker), kswapd (demotion), kcompactd. */
  kthreadSeconds: Record<string, number>;
  /** QEMU's own CPU (its vCPU thread also takes Linux's NUMA hinting faults and migrations). */
  qemuSeconds: number;
}

function cpuDelta(a: Awaited<ReturnType<typeof cpuTicks>>, b: Awaited<ReturnType<typeof cpuTicks>>, agent: number | null, qemu: number): CpuUse {
  const k: Record<string, number> = {};
  for (const name of new Set([...Object.keys(a.kthreads), ...Object.keys(b.kthreads)])) k[name] = ((b.kthreads[name] ?? 0) - (a.kthreads[name] ?? 0)) / CLK_TCK;
  return {
    agentSeconds: agent === null ? 0 : ((b.pids[agent] ?? 0) - (a.pids[agent] ?? 0)) / CLK_TCK,
    kthreadSeconds: k,
    qemuSeconds: ((b.pids[qemu] ?? 0) - (a.pids[qemu] ?? 0)) / CLK_TCK,
  };
}

type Sample = Awaited<ReturnType<LabDomain['sample']>>;

export interface VmtierRun {
  domainType: 'kvm' | 'qemu';
  initial: Sample;
  promote: { seconds: number | null; rounds: number; last: Sample; cpu: CpuUse; movedBytes: number };
  /** After `observe` was PUT and the hot set changed (key press): rounds and what moved meanwhile. */
  observe: { putAfterRound: number; roundsAfter: Array<Record<string, any>>; before: Sample; after: Sample };
  /** Back to `tier`: the new hot set promoted, the old one demoted. */
  retier: { seconds: number | null; rounds: number; last: Sample; /** After 3 more rounds. */ final: Sample };
  maxChanges: { hot: number; hot1: number; cold: number };
  history: any;
  metrics: string;
  engineStatus: any;
  /** Daemon CPU per GB of managed guest memory per round, over the tier rounds (after start-up). */
  cpuPerGbRound: { seconds: number; rounds: number; cpuSeconds: number; kdamondSeconds: number };
  afterDestroy: { engine: number; vm: { status: number; running: boolean | null }; list: string[]; engineAll: number; host: number; metrics: number; errors: Array<Record<string, any>>; inRound: boolean; sinceRoundEndMs: number; shortestRoundMs: number; loopEnded: boolean };
  serveLogErrors: Array<Record<string, any>>;
  serial: string;
}

const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);

/** The vmtier half: serve in the lab manages a domain whose RAM starts bound to the slow node. */
export async function runVmtierScenario(lab: LabSession, virt: LabVirt, progress: Progress): Promise<VmtierRun> {
  const d = await LabDomain.create(lab, virt, 'vmtier-test-i-tier', 1);
  progress(`engine-lab: domain ${d.name} (${virt.domainType}) pid ${d.pid}, RAM bound to host node 1 (memnode strict)`);
  const initial = await d.sample();
  const serve = new LabServe(lab);
  try {
    await serve.start(progress);
    const st = Date.now();
    while ((await serve.http('GET', `/v1/vms/${d.uuid}/engine`)).status !== 200) {
      if (Date.now() - st > 120_000) throw new VmtierError('LAB_ERROR', `the engine did not pick up ${d.name}`);
      await sleep(1000);
    }
    // vmtier demotes only under DRAM pressure: a ceiling of the hot set plus 2 MiB (the payload's own
    // code and stack below 2 MiB are hot too) makes the phase-1 hot set push the old one out.
    const policy = { mode: 'tier', scan: { intervalMs: 500, scansPerRound: 4, autoTune: false }, thresholds: { coldConfirmRounds: 2, hotConfirmRounds: 2 }, dram: { maxBytes: DRAM_CEILING } };
    const put = await serve.http('PUT', `/v1/vms/${d.uuid}/policy`, policy);
    if (put.status !== 200) throw new VmtierError('LAB_ERROR', `PUT policy: ${put.status} ${JSON.stringify(put.body)}`);
    const roundsAtPut = serve.rounds(d.uuid).length;
    const c0 = await cpuTicks(lab, [serve.pid, d.pid]);
    const p = await sampleUntil(d, 300_000, (s) => fraction(s.hot, 0) >= 0.95, progress, 'vmtier promote');
    const c1 = await cpuTicks(lab, [serve.pid, d.pid]);
    const promoteRounds = serve.rounds(d.uuid).slice(roundsAtPut);
    const movedBytes = sum(promoteRounds.map((r) => (r.promoted ?? 0) + (r.demoted ?? 0))) * PAGE;

    // tier → observe, then the hot set changes: no round after the next one may move a page.
    const before = await d.sample();
    const obs = await serve.http('PUT', `/v1/vms/${d.uuid}/policy`, { ...policy, mode: 'observe' });
    if (obs.status !== 200) throw new VmtierError('LAB_ERROR', `PUT observe: ${obs.status}`);
    const putAfterRound = serve.rounds(d.uuid).at(-1)?.round ?? 0;
    await d.pressKey();
    const ost = Date.now();
    while (serve.rounds(d.uuid).filter((r) => r.round > putAfterRound + 1).length < 3) {
      if (Date.now() - ost > 180_000) throw new VmtierError('LAB_ERROR', 'no observe rounds within 180 s');
      await sleep(1000);
    }
    const after = await d.sample();
    const roundsAfter = serve.rounds(d.uuid).filter((r) => r.round > putAfterRound);

    // Back to tier: phase 1's hot set is promoted, phase 0's (now cold) demoted.
    const r0 = serve.rounds(d.uuid).length;
    const c2 = await cpuTicks(lab, [serve.pid, d.pid]);
    const t2 = Date.now();
    await serve.http('PUT', `/v1/vms/${d.uuid}/policy`, policy);
    const rt = await sampleUntil(d, 300_000, (s) => fraction(s.hot1, 0) >= 0.95 && fraction(s.hot, 1) >= RETIER_OLD_HOT_DEMOTED, progress, 'vmtier re-tier');
    const c3 = await cpuTicks(lab, [serve.pid, d.pid]);
    const retierRounds = serve.rounds(d.uuid).length - r0;
    // A few quiet rounds more: a page that would bounce back would do it now.
    const quietFrom = serve.rounds(d.uuid).length;
    while (serve.rounds(d.uuid).length < quietFrom + 3) await sleep(1000);
    const final = await d.sample();
    const maxChanges = { hot: d.maxChanges('hot'), hot1: d.maxChanges('hot1'), cold: d.maxChanges('cold') };

    const from = new Date(Date.now() - 3_600_000).toISOString();
    const history = (await serve.http('GET', `/v1/vms/${d.uuid}/history?from=${encodeURIComponent(from)}&step=10s`)).body;
    const metrics = String((await serve.http('GET', '/metrics')).body);
    const engineStatus = (await serve.http('GET', `/v1/vms/${d.uuid}/engine`)).body;
    const serial = await d.serial();

    // Destroyed mid-round: rounds run back to back and each scans for 4 × 500 ms, so a destroy
    // issued less than the shortest round after the newest round's end lands inside the next one.
    // The lab's clock (pino's `time`) dates both the destroy and the rounds.
    const n = serve.rounds(d.uuid).length;
    while (serve.rounds(d.uuid).length === n) await sleep(100);
    const destroyAt = Number((await lab.check(`date +%s%3N; virsh destroy ${d.name} >/dev/null`, { timeoutMs: 60_000 })).trim());
    const endedBefore = serve.rounds(d.uuid).filter((r) => r.time <= destroyAt);
    const lastEnd = endedBefore.at(-1)?.time ?? 0;
    const shortest = Math.min(...serve.rounds(d.uuid).map((r) => Number(r.ms)));
    const inRound = destroyAt - lastEnd < shortest;
    await sleep(5000);
    const engine = (await serve.http('GET', `/v1/vms/${d.uuid}/engine`)).status;
    const vm = await serve.http('GET', `/v1/vms/${d.uuid}`);
    const list = ((await serve.http('GET', '/v1/vms')).body?.vms ?? []).filter((v: any) => v.running).map((v: any) => v.name as string);
    const engineAll = (await serve.http('GET', '/v1/engine')).status;
    const host = (await serve.http('GET', '/v1/host')).status;
    const metricsStatus = (await serve.http('GET', '/metrics')).status;
    const tierRounds = promoteRounds.length + retierRounds;
    const promoteCpu = cpuDelta(c0, c1, serve.pid, d.pid);
    const retierCpu = cpuDelta(c2, c3, serve.pid, d.pid);
    return {
      domainType: virt.domainType,
      initial,
      promote: { seconds: p.seconds, rounds: promoteRounds.length, last: p.last, cpu: promoteCpu, movedBytes },
      observe: { putAfterRound, roundsAfter, before, after },
      retier: { seconds: rt.seconds, rounds: retierRounds, last: rt.last, final },
      maxChanges,
      history,
      metrics,
      engineStatus,
      cpuPerGbRound: {
        seconds: (c1.pids[serve.pid]! - c0.pids[serve.pid]! + c3.pids[serve.pid]! - c2.pids[serve.pid]!) / CLK_TCK / tierRounds / GUEST_GB,
        rounds: tierRounds,
        cpuSeconds: promoteCpu.agentSeconds + retierCpu.agentSeconds,
        kdamondSeconds: (promoteCpu.kthreadSeconds.kdamond ?? 0) + (retierCpu.kthreadSeconds.kdamond ?? 0),
      },
      afterDestroy: {
        engine, vm: { status: vm.status, running: typeof vm.body?.running === 'boolean' ? vm.body.running : null }, list, engineAll, host, metrics: metricsStatus,
        errors: serve.errors(), inRound, sinceRoundEndMs: destroyAt - lastEnd, shortestRoundMs: shortest,
        loopEnded: serve.log.some((l) => l.vm === d.uuid && l.msg === 'loop ended'),
      },
      serveLogErrors: serve.errors(),
      serial,
    };
  } finally {
    await serve.stop();
    await d.destroy();
  }
}

export interface LinuxRun {
  initial: Sample;
  promote: { seconds: number | null; last: Sample; cpu: CpuUse; movedBytes: number; vmstat: Record<string, number> };
  /** After the hot set changed: how much of the old hot set the kernel demoted in the same time. */
  demote: { seconds: number; last: Sample; vmstat: Record<string, number> };
  settings: { numaBalancing: string; demotion: string };
}

const VMSTAT_KEYS = ['pgpromote_success', 'pgpromote_candidate', 'pgdemote_kswapd', 'pgdemote_direct', 'pgdemote_khugepaged', 'numa_pages_migrated', 'numa_hint_faults', 'pgmigrate_success'];

function vmstatDelta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  return Object.fromEntries(VMSTAT_KEYS.map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]));
}

/**
 * The Linux half, in the lab only: NUMA balancing in tiering mode (2) and demotion on, no vmtier.
 * The domain is not bound (a strict binding keeps NUMA balancing from promoting out of the bound
 * node); its memory is moved to the slow node with migratepages once the payload is running.
 */
export async function runLinuxScenario(lab: LabSession, virt: LabVirt, progress: Progress, demoteWindowMs: number): Promise<LinuxRun> {
  await lab.check('echo 2 >/proc/sys/kernel/numa_balancing && echo 1 >/sys/kernel/mm/numa/demotion_enabled', { timeoutMs: 30_000 });
  const settings = {
    numaBalancing: (await lab.check(['cat', '/proc/sys/kernel/numa_balancing'])).trim(),
    demotion: (await lab.check(['cat', '/sys/kernel/mm/numa/demotion_enabled'])).trim(),
  };
  const d = await LabDomain.create(lab, virt, 'vmtier-test-i-linux', null);
  try {
    await lab.check(['migratepages', String(d.pid), '0', '1'], { timeoutMs: 120_000 });
    const initial = await d.sample();
    progress(`engine-lab: Linux tiering (numa_balancing=${settings.numaBalancing}, demotion_enabled=${settings.demotion}), ${d.name} pid ${d.pid} moved to node 1`);
    const v0 = await vmstat(lab);
    const c0 = await cpuTicks(lab, [d.pid]);
    const p = await sampleUntil(d, 240_000, (s) => fraction(s.hot, 0) >= 0.95, progress, 'linux promote');
    const c1 = await cpuTicks(lab, [d.pid]);
    const v1 = await vmstat(lab);
    const dv = vmstatDelta(v0, v1);
    await d.pressKey();
    const t = Date.now();
    const dm = await sampleUntil(d, demoteWindowMs, (s) => fraction(s.hot, 1) >= 0.95 && fraction(s.hot1, 0) >= 0.95, progress, 'linux re-tier');
    const v2 = await vmstat(lab);
    return {
      initial,
      promote: {
        seconds: p.seconds, last: p.last, cpu: cpuDelta(c0, c1, null, d.pid),
        movedBytes: (dv.pgpromote_success! + dv.pgdemote_kswapd! + dv.pgdemote_direct! + dv.pgdemote_khugepaged!) * PAGE,
        vmstat: dv,
      },
      demote: { seconds: (Date.now() - t) / 1000, last: dm.last, vmstat: vmstatDelta(v1, v2) },
      settings,
    };
  } finally {
    await d.destroy();
    await lab.run('echo 0 >/proc/sys/kernel/numa_balancing; echo 0 >/sys/kernel/mm/numa/demotion_enabled', { timeoutMs: 30_000 });
  }
}

/** The side-by-side table (plain text) both the test and bench/engine print. */
export function comparisonTable(v: VmtierRun, l: LinuxRun): string {
  const f = (x: number | null, d = 1) => (x === null ? 'not reached' : x.toFixed(d));
  const mb = (b: number) => (b / MiB).toFixed(1);
  const k = (c: CpuUse) => Object.entries(c.kthreadSeconds).filter(([, s]) => s > 0).map(([n, s]) => `${n} ${s.toFixed(2)}`).join(', ') || '0';
  const rows = [
    ['', 'vmtier (tier mode)', 'Linux (numa_balancing=2 + demotion)'],
    ['time to 95 % hot-set residency (s)', f(v.promote.seconds), f(l.promote.seconds)],
    ['rounds to 95 %', String(v.promote.rounds), 'n/a (NUMA scan periods)'],
    ['hot set on node 0 at the end', `${v.promote.last.hot.node0}/${v.promote.last.hot.pages}`, `${l.promote.last.hot.node0}/${l.promote.last.hot.pages}`],
    ['bytes moved until then (MiB)', mb(v.promote.movedBytes), `${mb(l.promote.movedBytes)} (pgpromote_success ${l.promote.vmstat.pgpromote_success})`],
    ['agent CPU (s)', v.promote.cpu.agentSeconds.toFixed(2), '0 (no agent)'],
    ['kernel threads CPU (s)', k(v.promote.cpu), k(l.promote.cpu)],
    ['QEMU process CPU (s, incl. hinting faults)', v.promote.cpu.qemuSeconds.toFixed(2), l.promote.cpu.qemuSeconds.toFixed(2)],
    ['old hot set demoted after the hot set changed', `${v.retier.final.hot.node1}/${v.retier.final.hot.pages} in ${f(v.retier.seconds)} s`,
      `${l.demote.last.hot.node1}/${l.demote.last.hot.pages} in ${l.demote.seconds.toFixed(0)} s (pgdemote_kswapd ${l.demote.vmstat.pgdemote_kswapd})`],
    ['new hot set promoted after the change', `${v.retier.final.hot1.node0}/${v.retier.final.hot1.pages}`, `${l.demote.last.hot1.node0}/${l.demote.last.hot1.pages}`],
  ];
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join(' | ')).join('\n');
}

/**
 * Issue 12's lab proof: a working set larger than the VM's DRAM share, all of it touched within
 * every second (the policy's scan interval), with a known frequency skew. The frequent part (the
 * payload's `hot`, 8 MiB) is written on every pass at 50 Hz, the rest (`warm`, 32 MiB) on every
 * 16th pass (~3 Hz): 20 % of the pages take 80 % of the writes (8 × 50 against 32 × 50 / 16).
 * At the policy's own interval every page is seen in every scan, so the counts rank nothing; the
 * auto-tuned plan has to scan faster than the policy's interval to tell the two apart
 * (`vmtier-fixed`: the same policy with autoTune off, the control).
 */
export const SKEW_LAYOUT: PayloadLayout = {
  hz: PAYLOAD_HZ,
  // The frequent pages come after the warm ones in each node, so a policy that cannot rank them
  // gains nothing from ties broken by address.
  hot: [{ start: 40 * MiB, end: 44 * MiB }, { start: 96 * MiB, end: 100 * MiB }],
  hot1: [],
  once: [],
  warm: [{ start: 24 * MiB, end: 40 * MiB }, { start: 80 * MiB, end: 96 * MiB }],
  every: 16,
};
/** The frequent 8 MiB, the payload's own low 2 MiB (code and stack, written every pass) and 2 MiB to spare. */
export const SKEW_CEILING = 12 * MiB;
/** Share of the frequent pages that must reach DRAM. */
export const SKEW_FREQUENT_ON_DRAM = 0.9;
const SKEW_POLICY_INTERVAL_MS = 1000;

export type SkewArm = 'vmtier' | 'vmtier-fixed' | 'linux';

export interface SkewRun {
  who: SkewArm;
  initial: Sample;
  /** Seconds from the policy PUT (Linux: from migratepages) until ≥ 90 % of the frequent pages are on node 0. */
  seconds: number | null;
  /** vmtier rounds until then (Linux: none). */
  rounds: number;
  reached: Sample;
  /** vmtier: three rounds later; Linux: the same sample. */
  final: Sample;
  maxChanges: { frequent: number; warm: number };
  /** vmtier: each tier round's scan time (ms) and moves, from serve's log. */
  roundLog: Array<{ round: number; scans: number; intervalMs: number; scanMs: number; promoted: number; demoted: number; hotMB: number }>;
  vmstat: Record<string, number>;
  serveLogErrors: Array<Record<string, any>>;
}

async function sampleSkewUntil(d: LabDomain, timeoutMs: number, progress: Progress, what: string): Promise<{ seconds: number | null; last: Sample }> {
  const t0 = Date.now();
  for (;;) {
    const s = await d.sample();
    const secs = (Date.now() - t0) / 1000;
    progress(`engine-lab: ${what} t=${secs.toFixed(0)}s frequent ${s.hot.node0}/${s.hot.pages} on node 0, warm ${s.warm.node0}/${s.warm.pages}`);
    if (fraction(s.hot, 0) >= SKEW_FREQUENT_ON_DRAM) return { seconds: secs, last: s };
    if (Date.now() - t0 > timeoutMs) return { seconds: null, last: s };
    await sleep(SAMPLE_MS);
  }
}

/**
 * The skewed working set under vmtier serve (tier mode, auto-tuned scan plan from a 1 s interval,
 * DRAM ceiling 12 MiB; RAM first bound to the slow node) or under Linux's own tiering (NUMA
 * balancing mode 2 + demotion, the unbound domain moved to node 1 with migratepages; node 0 has
 * ample free memory, so nothing limits what Linux promotes).
 */
export async function runSkewScenario(lab: LabSession, virt: LabVirt, progress: Progress, who: SkewArm, fixedWaitMs = 90_000): Promise<SkewRun> {
  if (who === 'linux') await lab.check('echo 2 >/proc/sys/kernel/numa_balancing && echo 1 >/sys/kernel/mm/numa/demotion_enabled', { timeoutMs: 30_000 });
  const d = await LabDomain.create(lab, virt, `vmtier-test-i-skew-${who}`, who === 'linux' ? null : 1, SKEW_LAYOUT);
  const serve = who === 'linux' ? null : new LabServe(lab);
  try {
    if (who === 'linux') await lab.check(['migratepages', String(d.pid), '0', '1'], { timeoutMs: 120_000 });
    const initial = await d.sample();
    progress(`engine-lab: skew (${who}) domain ${d.name} pid ${d.pid}: frequent ${initial.hot.pages} pages, warm ${initial.warm.pages} pages, on node 1: ${initial.hot.node1 + initial.warm.node1}`);
    const v0 = await vmstat(lab);
    let roundsAtPut = 0;
    if (serve) {
      await serve.start(progress);
      const st = Date.now();
      while ((await serve.http('GET', `/v1/vms/${d.uuid}/engine`)).status !== 200) {
        if (Date.now() - st > 120_000) throw new VmtierError('LAB_ERROR', `the engine did not pick up ${d.name}`);
        await sleep(1000);
      }
      const policy = { mode: 'tier', scan: { intervalMs: SKEW_POLICY_INTERVAL_MS, scansPerRound: 4, autoTune: who === 'vmtier' }, dram: { maxBytes: SKEW_CEILING } };
      const put = await serve.http('PUT', `/v1/vms/${d.uuid}/policy`, policy);
      if (put.status !== 200) throw new VmtierError('LAB_ERROR', `PUT policy: ${put.status} ${JSON.stringify(put.body)}`);
      roundsAtPut = serve.rounds(d.uuid).length;
    }
    // The control cannot rank the pages: it gets a fixed time, then its placement is read.
    const reached = await sampleSkewUntil(d, who === 'vmtier' ? 300_000 : who === 'linux' ? 240_000 : fixedWaitMs, progress, `skew ${who}`);
    const rounds = serve ? serve.rounds(d.uuid).length - roundsAtPut : 0;
    let final = reached.last;
    if (serve && reached.seconds !== null) {
      // Three rounds more: what is promoted stays, and the ceiling holds.
      const from = serve.rounds(d.uuid).length;
      const st = Date.now();
      while (serve.rounds(d.uuid).length < from + 3 && Date.now() - st < 120_000) await sleep(1000);
      final = await d.sample();
    }
    const roundLog = serve
      ? serve.rounds(d.uuid).slice(roundsAtPut).map((r) => ({ round: r.round, scans: r.scans, intervalMs: r.intervalMs, scanMs: r.scanMs, promoted: r.promoted ?? 0, demoted: r.demoted ?? 0, hotMB: r.hotMB }))
      : [];
    return {
      who, initial, seconds: reached.seconds, rounds, reached: reached.last, final,
      maxChanges: { frequent: d.maxChanges('hot'), warm: d.maxChanges('warm') },
      roundLog, vmstat: vmstatDelta(v0, await vmstat(lab)), serveLogErrors: serve?.errors() ?? [],
    };
  } finally {
    await serve?.stop();
    await d.destroy();
    if (who === 'linux') await lab.run('echo 0 >/proc/sys/kernel/numa_balancing; echo 0 >/sys/kernel/mm/numa/demotion_enabled', { timeoutMs: 30_000 });
  }
}

/** The skew runs side by side (plain text), printed by the test and bench/engine. */
export function skewTable(runs: SkewRun[]): string {
  const f = (x: number | null) => (x === null ? 'not reached' : x.toFixed(1));
  const on0 = (c: SetCount) => `${c.node0}/${c.pages} (${((100 * c.node0) / c.pages).toFixed(1)} %)`;
  const title: Record<SkewArm, string> = {
    vmtier: 'vmtier (tier, auto-tuned plan from 1 s, 12 MiB DRAM ceiling)',
    'vmtier-fixed': 'control: vmtier, plan fixed at 4 × 1 s',
    linux: 'Linux (numa_balancing=2 + demotion, node 0 unlimited)',
  };
  const vm = (r: SkewRun, x: string) => (r.who === 'linux' ? 'n/a' : x);
  const rows: string[][] = [
    ['skewed working set: 8 MiB at 50 Hz + 32 MiB at ~3 Hz', ...runs.map((r) => title[r.who])],
    [`time to ${SKEW_FREQUENT_ON_DRAM * 100} % of the frequent pages on node 0 (s)`, ...runs.map((r) => f(r.seconds))],
    ['tier rounds until then (or until the end)', ...runs.map((r) => vm(r, String(r.rounds)))],
    ['scans × interval (ms) of those rounds', ...runs.map((r) => vm(r, r.roundLog.slice(0, Math.max(1, r.rounds)).map((x) => `${x.scans}×${x.intervalMs}`).join(', ')))],
    ['frequent pages on node 0 at the end', ...runs.map((r) => on0(r.final.hot))],
    ['warm pages on node 0 at the end', ...runs.map((r) => on0(r.final.warm))],
    ['most node changes of one frequent / warm page', ...runs.map((r) => `${r.maxChanges.frequent} / ${r.maxChanges.warm}`)],
    ['pgpromote_success / numa_hint_faults', ...runs.map((r) => `${r.vmstat.pgpromote_success} / ${r.vmstat.numa_hint_faults}`)],
  ];
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join(' | ')).join('\n');
}
