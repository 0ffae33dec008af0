/**
 * The mover (memtierd's Mover): executes one round's decision for one VM — picks the target
 * nodes, takes a budget lease, moves demotions first then promotions, grouped per guest node in
 * the policy's order, and records each group's outcome — and settles the lease with what it
 * really attempted. The move itself runs wherever `movePages` runs (the daemon: the VM's worker
 * thread); the mover knows no thread, store or metrics, only the callbacks it is given.
 */
import type { HostTopology } from '../host/topology.js';
import { PAGE_SIZE } from '../units.js';
import type { MigrationBudget } from './budget.js';
import { addMoveCounts, emptyMoveCounts, type MoveCounts } from './counts.js';

export type Direction = 'promote' | 'demote';

/** The VM's page numbering, as far as the mover needs it. */
export interface MovablePages {
  movable(page: number): boolean;
  guestNodeOf(page: number): number;
  addrOf(page: number): number;
}

/** One guest node's batch of one direction, moved: what the migration log records. */
export interface MoveRecord {
  guestNode: number;
  target: number;
  direction: Direction;
  counts: MoveCounts;
  durationMs: number;
}

export interface MoverDeps {
  budget: MigrationBudget;
  /** Moves addresses to `target`; 1 in `reached` for each that ended there. */
  movePages(addrs: Float64Array, target: number): Promise<{ counts: MoveCounts; reached: Uint8Array }>;
  /** Where the moved pages are now (vmtier knows what it moved). */
  onMoved?(pages: readonly number[], reached: Uint8Array, target: number): void;
  /** One record per guest node and direction. */
  record?(r: MoveRecord): void;
}

export interface MoveRequest {
  vmId: string;
  promote: ArrayLike<number>;
  demote: ArrayLike<number>;
  host: HostTopology;
  /** Destination overrides (serve --promote-node/--demote-node); else the freest node of the tier. */
  targetNodes?: { top?: number; slow?: number };
  migration: { maxMBps: number; maxBytesPerRound: number | null };
}

export interface MoveRound {
  promote: MoveCounts;
  demote: MoveCounts;
  promotionPaused: boolean;
  /** Decided moves not attempted, by reason. */
  skipped: Record<string, number>;
  /** Pages whose demotion was attempted (the rest of the decided ones stay in DRAM this round). */
  leaving: number[];
}

/** Destinations: the overrides, else the node with the most free memory of each tier (null: no such node). */
export function chooseTargets(host: HostTopology, override?: { top?: number; slow?: number }): { top: number | null; slow: number | null } {
  const freest = (cls: 'top' | 'slow') => {
    const ns = host.nodes.filter((n) => n.tier.class === cls);
    return ns.length === 0 ? null : ns.reduce((a, b) => (b.memFreeBytes > a.memFreeBytes ? b : a)).node;
  };
  return { top: override?.top ?? freest('top'), slow: override?.slow ?? freest('slow') };
}

export class Mover {
  constructor(private readonly d: MoverDeps) {}

  async run(pages: MovablePages, req: MoveRequest): Promise<MoveRound> {
    const out: MoveRound = { promote: emptyMoveCounts(), demote: emptyMoveCounts(), promotionPaused: false, skipped: {}, leaving: [] };
    const skip = (why: string, n: number) => {
      if (n > 0) out.skipped[why] = (out.skipped[why] ?? 0) + n;
    };
    const movable = (list: ArrayLike<number>, dir: Direction): number[] => {
      const ok: number[] = [];
      let unmovable = 0;
      for (let i = 0; i < list.length; i++) {
        const p = list[i]!;
        if (pages.movable(p)) ok.push(p);
        else unmovable++;
      }
      skip(`${dir}: unmovable backing`, unmovable);
      return ok;
    };
    const targets = chooseTargets(req.host, req.targetNodes);
    let dem = movable(req.demote, 'demote');
    let pro = movable(req.promote, 'promote');
    if (targets.slow === null) {
      skip('demote: no slow-tier node', dem.length);
      dem = [];
    }
    if (targets.top === null) {
      skip('promote: no top-tier node', pro.length);
      pro = [];
    }
    const dramFree = req.host.nodes.reduce((s, n) => s + (n.tier.class === 'top' ? n.memFreeBytes : 0), 0);
    const perRound = req.migration.maxBytesPerRound ?? Infinity;
    const demWant = Math.min(dem.length * PAGE_SIZE, perRound);
    const proWant = Math.min(pro.length * PAGE_SIZE, Math.max(0, perRound - demWant));
    const lease = this.d.budget.lease(req.vmId, req.migration.maxMBps, { demoteBytes: demWant, promoteBytes: proWant, dramFreeBytes: dramFree });
    out.promotionPaused = lease.promotionPaused;
    const demN = Math.min(dem.length, Math.floor(lease.demoteBytes / PAGE_SIZE));
    const proN = Math.min(pro.length, Math.floor(lease.promoteBytes / PAGE_SIZE));
    skip('demote: budget', dem.length - demN);
    skip(lease.promotionPaused ? 'promote: DRAM below watermark' : 'promote: budget', pro.length - proN);
    out.leaving = dem.slice(0, demN);
    let attempted = 0;
    try {
      if (demN > 0) out.demote = await this.moveTo(pages, out.leaving, targets.slow!, 'demote', (n) => (attempted += n));
      if (proN > 0) out.promote = await this.moveTo(pages, pro.slice(0, proN), targets.top!, 'promote', (n) => (attempted += n));
    } finally {
      // Settled with the batches really attempted, also when a later one failed or the round was aborted.
      lease.settle(attempted * PAGE_SIZE);
    }
    return out;
  }

  /** Moves pages grouped by guest node, in the policy's order. */
  private async moveTo(pages: MovablePages, list: number[], target: number, direction: Direction, attempted: (n: number) => void): Promise<MoveCounts> {
    const byGuest = new Map<number, number[]>();
    for (const p of list) {
      const g = pages.guestNodeOf(p);
      let l = byGuest.get(g);
      if (!l) byGuest.set(g, (l = []));
      l.push(p);
    }
    const total = emptyMoveCounts();
    for (const [guestNode, group] of byGuest) {
      const t0 = performance.now();
      const addrs = new Float64Array(group.length);
      for (let i = 0; i < group.length; i++) addrs[i] = pages.addrOf(group[i]!);
      const r = await this.d.movePages(addrs, target);
      attempted(r.counts.requested);
      this.d.onMoved?.(group, r.reached, target);
      this.d.record?.({ guestNode, target, direction, counts: r.counts, durationMs: performance.now() - t0 });
      addMoveCounts(total, r.counts);
    }
    return total;
  }
}
