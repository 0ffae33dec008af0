/**
 * `vmtier scan`: run one round of N scans over a process (or a VM's guest RAM) with a
 * chosen tracker and print maximal runs of equal count. With --record, each scan is also
 * appended to a trace file in the simulator's format, so real workloads become traces.
 */
import { Command, Option } from 'commander';
import { ESRCH } from '../errno.js';
import { KernelError, VmtierError, isVmtierError } from '../errors.js';
import { createTracker, isTrackerName, resolveTrackerName, TRACKER_NAMES, type TrackerOptions } from '../scan/index.js';
import { defaultRanges, readMaps } from '../scan/procfs.js';
import { traceRanges } from '../scan/replay.js';
import { MAX_SCANS } from '../scan/request.js';
import { countRuns, hex, normalizeRanges, parseRange, totalPages } from '../scan/runs.js';
import { loadTrace, TraceRecorder } from '../scan/trace.js';
import { markPresent, zeroUnmapped } from '../scan/mapping-runs.js';
import type { ScanResult, Tracker } from '../scan/tracker.js';
import { PAGE_SIZE, type HvaRange } from '../units.js';

export interface ScanCliOptions {
  pid?: string;
  domain?: string;
  tracker: string;
  scans: string;
  intervalMs: string;
  range: string[];
  json?: boolean;
  record?: string;
  trace?: string;
  traceVm?: string;
  runDir?: string;
  minAccesses?: string;
  connect?: string;
}

export interface ScanOutput {
  tracker: string;
  scans: number;
  pageSize: number;
  ranges: { start: string; end: string; count: number }[];
}

function intOpt(name: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) throw new VmtierError('INVALID_INPUT', `--${name} must be an integer, not "${text}"`);
  const n = Number(text);
  if (n < min || n > max) throw new VmtierError('INVALID_INPUT', `--${name} must be in ${min}..${max}, not ${n}`);
  return n;
}

interface Target {
  pid: number;
  ranges: HvaRange[];
  /** Set for --domain: errors of a gone process become VM_GONE. */
  domain?: { name: string; uuid: string };
}

/** The VM's guest RAM ranges through the libvirt inventory. */
async function domainTarget(nameOrUuid: string, connect?: string): Promise<Target> {
  // Loaded only for --domain, so `vmtier scan --pid` never loads libvirt.
  const { createLibvirtInventory } = await import('../vm/libvirt-inventory.js');
  const inv = createLibvirtInventory({ uri: connect, events: false });
  try {
    const dom = await inv.resolve(nameOrUuid);
    const map = await inv.numaMap(dom.uuid);
    const ranges = map.nodes.flatMap((n) => n.hva);
    return { pid: map.domain.pid, ranges, domain: { name: dom.name, uuid: dom.uuid } };
  } finally {
    await inv.close();
  }
}

export async function runScan(o: ScanCliOptions, io: { stdout: (s: string) => void; stderr: (s: string) => void }): Promise<ScanOutput> {
  if (!isTrackerName(o.tracker)) {
    throw new VmtierError('INVALID_INPUT', `--tracker must be one of ${TRACKER_NAMES.join(', ')}, not "${o.tracker}"`);
  }
  const scans = intOpt('scans', o.scans, 1, MAX_SCANS);
  const intervalMs = intOpt('interval-ms', o.intervalMs, 0, 3_600_000);
  if (o.pid !== undefined && o.domain !== undefined) throw new VmtierError('INVALID_INPUT', 'give --pid or --domain, not both');
  const explicit = o.range.map(parseRange);

  const topts: TrackerOptions = {};
  if (o.tracker === 'replay') {
    if (!o.trace) throw new VmtierError('INVALID_INPUT', '--tracker replay needs --trace FILE');
    topts.replay = { trace: loadTrace(o.trace, { vm: o.traceVm }) };
  } else if (o.trace) {
    throw new VmtierError('INVALID_INPUT', '--trace is for --tracker replay');
  }
  if (o.runDir || o.minAccesses) {
    topts.damon = { runDir: o.runDir, minAccesses: o.minAccesses ? intOpt('damon-min-accesses', o.minAccesses, 1, 1000) : undefined };
  }

  let target: Target;
  if (o.domain !== undefined) {
    target = await domainTarget(o.domain, o.connect);
    if (explicit.length) target.ranges = explicit;
  } else if (o.pid !== undefined) {
    const pid = intOpt('pid', o.pid, 1, 2 ** 22);
    const ranges = explicit.length ? explicit : o.tracker === 'replay' ? traceRanges(topts.replay!.trace as ReturnType<typeof loadTrace>) : defaultRanges(readMaps(pid));
    target = { pid, ranges };
  } else if (o.tracker === 'replay') {
    target = { pid: 0, ranges: explicit.length ? explicit : traceRanges(topts.replay!.trace as ReturnType<typeof loadTrace>) };
  } else {
    throw new VmtierError('INVALID_INPUT', 'give --pid <pid> or --domain <name|uuid>');
  }
  target.ranges = normalizeRanges(target.ranges);
  if (target.ranges.length === 0) throw new VmtierError('INVALID_INPUT', 'nothing to track: no ranges');

  const name = resolveTrackerName(o.tracker, topts);
  const recorder = o.record ? new TraceRecorder(o.record, { vm: target.domain?.name }) : null;
  const pages = totalPages(target.ranges);
  const expectMs = scans * intervalMs;
  const progress = expectMs >= 2000 || pages >= 1 << 20;
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => ac.abort(new VmtierError('VM_GONE', `interrupted by ${sig}`));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let tracker: Tracker | null = null;
  try {
    tracker = createTracker(name, topts);
    if (progress) io.stderr(`scan: ${name} over ${target.ranges.length} range(s), ${pages} pages, ${scans} scans every ${intervalMs} ms\n`);
    await tracker.track(target.pid, target.ranges);
    const onScan = (i: number) => {
      if (progress) io.stderr(`scan ${i + 1}/${scans}\n`);
    };
    const counts = new Uint8Array(pages);
    let result: ScanResult;
    if (recorder) {
      // One scan per round, so each scan's own view can be written as one trace epoch.
      const sum = new Uint8Array(pages);
      let last: ScanResult | null = null;
      for (let i = 0; i < scans; i++) {
        const r = await tracker.scan({ scans: 1, intervalMs, counts, signal: ac.signal });
        const present = new Uint8Array(pages);
        for (const x of r.ranges) markPresent(x.mapped, present, x.firstPage);
        recorder.record(counts, present);
        for (let p = 0; p < pages; p++) sum[p]! += counts[p]!;
        last = r;
        onScan(i);
      }
      // As one round of `scans` would report them: a page not present at the end counts 0.
      for (const x of last!.ranges) zeroUnmapped(sum, x.firstPage, (x.end - x.start) / PAGE_SIZE, x.mapped);
      counts.set(sum);
      result = { ...last!, scans };
    } else {
      result = await tracker.scan({ scans, intervalMs, counts, signal: ac.signal, onScan });
    }
    const out: ScanOutput = {
      tracker: result.tracker,
      scans: result.scans,
      pageSize: PAGE_SIZE,
      ranges: countRuns(result.ranges, counts).map((r) => ({ start: hex(r.start), end: hex(r.end), count: r.count })),
    };
    if (o.json) io.stdout(JSON.stringify(out) + '\n');
    else io.stdout(humanReport(out, result, counts));
    return out;
  } catch (e) {
    if (target.domain && e instanceof KernelError && e.errno === ESRCH) {
      throw new VmtierError('VM_GONE', `domain ${target.domain.name} (QEMU pid ${target.pid}) went away during the scan`,
        { uuid: target.domain.uuid, pid: target.pid }, { cause: e });
    }
    throw e;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    if (tracker) await tracker.close().catch((e: unknown) => io.stderr(`scan: closing the tracker failed: ${isVmtierError(e) ? e.message : String(e)}\n`));
  }
}

function humanReport(out: ScanOutput, result: ScanResult, counts: Uint8Array): string {
  const hist = new Map<number, number>();
  let present = 0;
  for (const r of result.ranges) {
    const m = r.mapped;
    for (let k = 0; k < m.length; k += 3) {
      for (let i = r.firstPage + m[k]!; i < r.firstPage + m[k]! + m[k + 1]!; i++) {
        present++;
        hist.set(counts[i]!, (hist.get(counts[i]!) ?? 0) + 1);
      }
    }
  }
  const lines = [`tracker ${out.tracker}: ${out.scans} scans, ${present} present pages in ${result.elapsedMs.toFixed(0)} ms`];
  for (const [c, n] of [...hist.entries()].sort((a, b) => b[0] - a[0])) {
    lines.push(`  count ${String(c).padStart(3)}: ${String(n).padStart(9)} pages (${((n * PAGE_SIZE) / 2 ** 20).toFixed(1)} MiB)`);
  }
  for (const r of out.ranges) lines.push(`${r.start}-${r.end} ${r.count}`);
  return lines.join('\n') + '\n';
}

export function registerScan(program: Command): void {
  program
    .command('scan')
    .description('Scan accessed bits of a process or a VM and print runs of pages with equal access counts')
    .option('--pid <pid>', 'process to scan')
    .option('--domain <name|uuid>', "scan a running VM's guest RAM ranges")
    .addOption(new Option('--tracker <name>', 'tracker backend').choices([...TRACKER_NAMES]).default('auto'))
    .option('--scans <n>', 'scans per round (1..255)', '5')
    .option('--interval-ms <ms>', 'time between scans', '200')
    .option('--range <0xS-0xE>', 'half-open address range to track (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--json', 'print JSON')
    .option('--record <file>', 'append each scan to a trace CSV (epoch,page,accesses)')
    .option('--trace <file>', 'trace to replay (with --tracker replay)')
    .option('--trace-vm <name>', 'VM of a multi-VM trace')
    .option('--run-dir <dir>', 'where the DAMON tracker keeps its ownership state (default /run/vmtier)')
    .option('--damon-min-accesses <n>', 'DAMON: region nr_accesses needed to count a page as seen (default 1)')
    .option('--connect <uri>', 'libvirt URI for --domain')
    .action(async (opts: Record<string, unknown>) => {
      await runScan({
        pid: opts.pid as string | undefined,
        domain: opts.domain as string | undefined,
        tracker: opts.tracker as string,
        scans: opts.scans as string,
        intervalMs: opts.intervalMs as string,
        range: opts.range as string[],
        json: Boolean(opts.json),
        record: opts.record as string | undefined,
        trace: opts.trace as string | undefined,
        traceVm: opts.traceVm as string | undefined,
        runDir: opts.runDir as string | undefined,
        minAccesses: opts.damonMinAccesses as string | undefined,
        connect: opts.connect as string | undefined,
      }, { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) });
    });
}
