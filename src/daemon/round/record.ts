/**
 * Round stage 5, record: what the account stage observed and the move stage did goes into the
 * store (one sample per guest node x host node, one heatmap frame), then into the metrics and one
 * log line at info.
 */
import type { Logger } from 'pino';
import type { HostTopology } from '../../host/topology.js';
import { recordHeat } from '../../store/heat-history.js';
import type { HotnessSample, Store } from '../../store/store.js';
import { PAGE_SIZE } from '../../units.js';
import type { EngineMetrics } from '../metrics.js';
import type { PageMap } from '../page-map.js';
import type { RoundSummary } from '../status.js';
import type { NodeCells } from './account.js';

export interface RecordInput {
  vmId: string;
  /** End of the round, ms since epoch. */
  t: number;
  cells: NodeCells;
  host: HostTopology;
  pm: PageMap;
  /** Scans that saw each page; null when no tracker ran (placement only: nothing was scanned). */
  counts: Uint8Array | null;
  scans: number;
  scanMs: number;
  /** Tier of every page after the move stage. */
  tiers: Uint8Array;
}

/** The store's samples of a round: one per guest node x host node the VM has pages on. */
export function hotnessSamples(input: Omit<RecordInput, 'pm' | 'tiers' | 'scans'>): HotnessSample[] {
  const classOf = new Map<number, 'top' | 'slow'>(input.host.nodes.map((n) => [n.node, n.tier.class]));
  const samples: HotnessSample[] = [];
  for (const { guestNode, hostNode, cell: c } of input.cells.entries()) {
    samples.push({
      t: input.t,
      vmUuid: input.vmId,
      guestNode,
      hostNode,
      hostTier: classOf.get(hostNode) ?? 'top',
      hotBytes: c.hot * PAGE_SIZE,
      warmBytes: c.warm * PAGE_SIZE,
      coldBytes: c.cold * PAGE_SIZE,
      scannedBytes: input.counts ? c.resident * PAGE_SIZE : 0,
      scanMs: input.scanMs,
      movedBytes: c.moved * PAGE_SIZE,
      failures: c.failures,
    });
  }
  return samples;
}

export function record(store: Store, input: RecordInput): void {
  const samples = hotnessSamples(input);
  if (samples.length > 0) store.insertSamples(samples);
  // The dashboard's heatmap: placement after this round's moves (read, then updated with what moved), heat if scanned.
  const { pm } = input;
  recordHeat(store, input.vmId, input.t, { segments: pm.segments, totalPages: pm.totalPages, pageSize: PAGE_SIZE, counts: input.counts, scans: input.scans, tiers: input.tiers });
}

/** The round's metrics and its one line at info (details stay at debug elsewhere). */
export function report(
  out: { metrics: Pick<EngineMetrics, 'round'>; log: Logger; vmId: string; vmName: string },
  summary: RoundSummary,
  tracker: string,
  phasesMs: Record<string, number>,
  /** What the placement cache holds (runs, bytes): its cost per VM, for bench:scale. */
  placement?: { runs: number; bytes: number },
): void {
  out.metrics.round(out.vmId, out.vmName, summary);
  out.log.info(
    {
      round: summary.round,
      mode: summary.mode,
      tracker,
      // The scan plan the round ran (auto-tuning shortens it below the policy's interval).
      scans: summary.scans,
      intervalMs: summary.intervalMs,
      plan: summary.planReason,
      ...(summary.recurrencePeriodRounds > 0 ? { periodRounds: summary.recurrencePeriodRounds } : {}),
      decidedWith: summary.decidedWithVms,
      shareMB: +(summary.shareBytes / 2 ** 20).toFixed(1),
      scanMs: Math.round(summary.scanMs),
      ms: Math.round(summary.durationMs),
      residentMB: +(summary.residentBytes / 2 ** 20).toFixed(1),
      hotMB: +(summary.hotBytes / 2 ** 20).toFixed(1),
      coldMB: +(summary.coldBytes / 2 ** 20).toFixed(1),
      promoted: summary.moves.promote.byClass.moved,
      demoted: summary.moves.demote.byClass.moved,
      skipped: summary.skipped,
      phasesMs,
      longestSyscallMs: summary.longestSyscallMs,
      ...(placement ? { placementRuns: placement.runs, placementBytes: placement.bytes } : {}),
    },
    'round',
  );
}
