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
import { KMOD_DEVICE, KmodTracker } from './kmod.js';

export type { Tracker, ScannedRange, ScanRequest, ScanResult } from './tracker.js';

export const TRACKER_NAMES = ['kmod', 'damon', 'replay', 'auto'] as const;
export type TrackerName = (typeof TRACKER_NAMES)[number];

export { KMOD_DEVICE };

export interface TrackerOptions {
  damon?: DamonTrackerOptions;
  /** Required for 'replay'. */
  replay?: ReplayOptions;
  /** Device path for 'kmod' and for the 'auto' choice (default /dev/vmtier_idle). */
  kmodDevice?: string;
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
      return new KmodTracker({ device: opts.kmodDevice ?? KMOD_DEVICE });
    }
    case 'damon':
      return new DamonTracker(opts.damon);
    case 'replay':
      if (!opts.replay) throw new VmtierError('INVALID_INPUT', 'the replay tracker needs a trace');
      return new ReplayTracker(opts.replay);
  }
}
