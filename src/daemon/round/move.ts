/**
 * Round stage 3, move: hands the decision to the mover (src/migrate/mover.ts), which picks the
 * targets, leases from the host budget, and moves in batches per guest node. This stage only
 * wires the mover to the VM: the move itself in the VM's thread, what arrived into the placement
 * cache (and, in a round, into the tiers and cells accounted), one migration-log row per batch,
 * and the counts into the metrics.
 */
import type { HostTopology } from '../../host/topology.js';
import type { MigrationBudget } from '../../migrate/budget.js';
import type { MoveCounts } from '../../migrate/counts.js';
import { Mover, type MoveRound } from '../../migrate/mover.js';
import type { PlacementCache } from '../../migrate/placement-cache.js';
import { TIER_DRAM, type TierPolicy } from '../../policy/index.js';
import type { Store } from '../../store/store.js';
import { PAGE_SIZE } from '../../units.js';
import type { EngineMetrics } from '../metrics.js';
import type { PageMap } from '../page-map.js';
import { MAX_NODES, type NodeCells } from './account.js';

export interface MoveInput {
  vmId: string;
  vmName: string;
  pm: PageMap;
  policy: TierPolicy;
  promote: ArrayLike<number>;
  demote: ArrayLike<number>;
  host: HostTopology;
  targetNodes?: { top?: number; slow?: number };
  budget: MigrationBudget;
  /** move_pages of these addresses to `target` (the VM's thread). */
  movePages(addrs: Float64Array, target: number): Promise<{ counts: MoveCounts; reached: Uint8Array }>;
  /** Learns where moved pages are now: vmtier knows what it moved, no query needed. */
  placement: PlacementCache | null;
  /**
   * The round's accounting, told of what moved: the heatmap shows where heat lives after the
   * round (a page that reached its target is in the target's tier now), and the cells carry the
   * moved and failed pages of each guest node x target. Absent for the seed's placement.
   */
  accounted?: { cells: NodeCells; tiers: Uint8Array; tierOfNode: Uint8Array };
  store: Pick<Store, 'logMigration'>;
  metrics: Pick<EngineMetrics, 'moves'>;
  now(): number;
}

export async function move(input: MoveInput): Promise<MoveRound> {
  const { accounted } = input;
  const mover = new Mover({
    budget: input.budget,
    movePages: input.movePages,
    onMoved: (pages, reached, target) => {
      input.placement?.recordMoves(pages, reached, target);
      if (accounted) {
        const t = target >= 0 && target < MAX_NODES ? accounted.tierOfNode[target]! : TIER_DRAM;
        for (let i = 0; i < pages.length; i++) if (reached[i]) accounted.tiers[pages[i]!] = t;
      }
    },
    record: (r) => {
      const c = r.counts;
      if (accounted) {
        const cell = accounted.cells.cell(r.guestNode, r.target);
        cell.moved += c.byClass.moved;
        cell.failures += c.requested - c.byClass.moved;
      }
      input.store.logMigration({
        t: input.now(),
        vmUuid: input.vmId,
        guestNode: r.guestNode,
        fromNode: null,
        toNode: r.target,
        direction: r.direction,
        pages: c.requested,
        moved: c.byClass.moved,
        busy: c.byClass.busy,
        notPresent: c.byClass.notPresent,
        noMemory: c.byClass.noMemory,
        fault: c.byClass.fault,
        other: c.byClass.other,
        durationMs: r.durationMs,
      });
    },
  });
  const r = await mover.run(input.pm, { vmId: input.vmId, promote: input.promote, demote: input.demote, host: input.host, targetNodes: input.targetNodes, migration: input.policy.migration });
  if (r.demote.requested > 0) input.metrics.moves(input.vmId, input.vmName, 'demote', r.demote, PAGE_SIZE);
  if (r.promote.requested > 0) input.metrics.moves(input.vmId, input.vmName, 'promote', r.promote, PAGE_SIZE);
  return r;
}
