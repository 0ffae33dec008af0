/**
 * Trackers chosen by name (memtierd's registry idea): 'kmod' (the vmtier_idle kernel
 * module), 'damon' (DAMON vaddr through sysfs), 'replay' (a recorded trace), and 'auto'
 * (kmod when its device exists, else damon). Callers see only the Tracker interface.
 */
import { existsSync } from 'node:fs';
import { VmtierError } from '../errors.js';
import { DamonTracker, type DamonTrackerOptions } from './damon.js';
import { ReplayTracker, type ReplayOptions } from './replay.js';
import type { Tracker } from './tracker.js';
import './kmod.js';

export type { Tracker, HvaRange, RangeCounts, ScanRequest, ScanResult } from './tracker.js';
export { PAGE_SIZE } from './tracker.js';

export const TRACKER_NAMES = ['kmod', 'damon', 'replay', 'auto'] as const;
export type TrackerName = (typeof TRACKER_NAMES)[number];

/** The character device the vmtier_idle module creates (kmod/vmtier_idle_uapi.h). */
export const KMOD_DEVICE = '/dev/vmtier_idle';

export interface TrackerOptions {
  damon?: DamonTrackerOptions;
  /** Required for 'replay'. */
  replay?: ReplayOptions;
  /** Device path for 'kmod' and for the 'auto' choice (default /dev/vmtier_idle). */
  kmodDevice?: string;
}

type KmodFactory = (opts: { device: string }) => Tracker;
// `var` without initializer on purpose: kmod.ts registers itself while this module is still
// being evaluated (the import cycle below), which a `let` (TDZ) or an initializer would break.
// eslint-disable-next-line no-var
var kmodFactory: KmodFactory | undefined;

/** The kmod backend registers itself here (src/scan/kmod.ts), keeping this registry free of its internals. */
export function registerKmodTracker(factory: KmodFactory): void {
  kmodFactory = factory;
}

export function isTrackerName(s: string): s is TrackerName {
  return (TRACKER_NAMES as readonly string[]).includes(s);
}

/** Resolves 'auto' to the backend it would pick on this host. */
export function resolveTrackerName(name: TrackerName, opts: TrackerOptions = {}): Exclude<TrackerName, 'auto'> {
  if (name !== 'auto') return name;
  return existsSync(opts.kmodDevice ?? KMOD_DEVICE) ? 'kmod' : 'damon';
}

export function createTracker(name: string, opts: TrackerOptions = {}): Tracker {
  if (!isTrackerName(name)) {
    throw new VmtierError('INVALID_INPUT', `unknown tracker "${name}" (choose one of ${TRACKER_NAMES.join(', ')})`);
  }
  const chosen = resolveTrackerName(name, opts);
  switch (chosen) {
    case 'kmod': {
      const device = opts.kmodDevice ?? KMOD_DEVICE;
      if (!kmodFactory) throw new VmtierError('TRACKER_UNAVAILABLE', 'the kmod tracker is not built into this vmtier');
      return kmodFactory({ device });
    }
    case 'damon':
      return new DamonTracker(opts.damon);
    case 'replay':
      if (!opts.replay) throw new VmtierError('INVALID_INPUT', 'the replay tracker needs a trace');
      return new ReplayTracker(opts.replay);
  }
}
