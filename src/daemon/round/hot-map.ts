/**
 * The hot map in the domain's metadata, at both ends of a round: before the loop's first round
 * its units are placed in DRAM (the map was left by the source of a live migration, or by this
 * host before a restart), and every few rounds this round's hot units are written back, so the
 * map is there when a migration starts (libvirt refuses metadata changes while the migration job
 * holds the domain).
 */
import type { Logger } from 'pino';
import { chooseTargets } from '../../migrate/mover.js';
import type { VmInventory } from '../../vm/inventory.js';
import { HOTMAP_KEY, HOTMAP_NS, HOT_UNIT_BYTES, hotMapElement, parseHotMapElement } from '../../vm/vm-metadata.js';
import type { HotUnits } from '../hot-units.js';
import type { HotMapStatus, SeedStatus } from '../status.js';
import { errInfo, isGone } from '../vm-errors.js';
import { move, type MoveInput } from './move.js';

function bitsSet(bits: Uint8Array): number {
  let n = 0;
  for (const b of bits) for (let v = b; v; v &= v - 1) n++;
  return n;
}

export interface SeedInput {
  inventory: Pick<VmInventory, 'metadata'>;
  log: Logger;
  units: HotUnits;
  mode: 'observe' | 'tier';
  /** The round the seed runs in (1 = the loop's first). */
  round: number;
  now(): number;
  /** The move of the hot units (promote only); the seed's move tells no round's accounting. */
  move: Omit<MoveInput, 'promote' | 'demote' | 'accounted'>;
}

/** Places the hot map's units in DRAM (tier mode). Null when there is no usable map. */
export async function seedFromHotMap(input: SeedInput): Promise<SeedStatus | null> {
  const { log, units } = input;
  let xml: string | null;
  try {
    xml = await input.inventory.metadata(input.move.vmId, HOTMAP_NS);
  } catch (e) {
    if (isGone(e)) throw e;
    log.warn({ err: e }, 'cannot read the hot map from the domain metadata: learning from scratch');
    return null;
  }
  if (xml === null) return null;
  let map;
  try {
    map = parseHotMapElement(xml);
  } catch (e) {
    log.warn({ err: e }, 'ignoring the hot map in the domain metadata');
    return null;
  }
  if (map.pages !== units.pages) {
    log.warn({ mapPages: map.pages, pages: units.pages }, 'ignoring the hot map in the domain metadata: it describes a different memory layout');
    return null;
  }
  const pages = units.pagesOf(map.bits);
  const hot = bitsSet(map.bits);
  const seed: SeedStatus = {
    round: input.round,
    t: input.now(),
    map: Buffer.from(map.bits).toString('base64'),
    units: units.units,
    hotUnits: hot,
    pages: pages.length,
    promote: null,
    target: chooseTargets(input.move.host, input.move.targetNodes).top,
    skipped: {},
  };
  if (input.mode === 'tier' && pages.length > 0) {
    const r = await move({ ...input.move, promote: pages, demote: new Int32Array(0) });
    seed.promote = r.promote;
    for (const [why, n] of Object.entries(r.skipped)) if (n > 0) seed.skipped[why] = (seed.skipped[why] ?? 0) + n;
  }
  log.info({ hotUnits: hot, pages: pages.length, moved: seed.promote?.byClass.moved ?? null, target: seed.target, mapRound: map.round }, 'placed the hot units of the metadata hot map');
  return seed;
}

export interface PublishInput {
  inventory: Pick<VmInventory, 'setMetadata'>;
  vmId: string;
  log: Logger;
  units: HotUnits;
  counts: Uint8Array;
  hotMin: number;
  round: number;
  t: number;
  /** The map last written (base64): an unchanged map is not written again. */
  last: string | null;
}

/** Writes the units with hot pages this round into the live metadata; null when the map did not change. */
export async function publishHotMap(input: PublishInput): Promise<HotMapStatus | null> {
  const { units } = input;
  const bits = units.hotBits(input.counts, input.hotMin);
  const b64 = Buffer.from(bits).toString('base64');
  if (b64 === input.last) return null;
  const xml = hotMapElement({ pages: units.pages, unitBytes: HOT_UNIT_BYTES, bits, round: input.round, t: input.t });
  const hot = bitsSet(bits);
  try {
    // Live only: the map describes this run of the VM; rewriting the persistent definition
    // every few rounds would churn the domain's XML file for nothing.
    await input.inventory.setMetadata(input.vmId, HOTMAP_NS, HOTMAP_KEY, xml, { config: false });
    input.log.debug({ units: units.units, hotUnits: hot }, 'hot map written to the domain metadata');
    return { round: input.round, t: input.t, units: units.units, hotUnits: hot, map: b64, error: null };
  } catch (e) {
    if (isGone(e)) throw e;
    input.log.warn({ err: e }, 'cannot write the hot map into the domain metadata');
    return { round: input.round, t: input.t, units: units.units, hotUnits: hot, map: b64, error: errInfo(e) };
  }
}
