/**
 * The lab's QEMU memory topology comes from qemu-profiles/lab-*.yaml (one source of truth): the lab
 * harness asks here for the -machine/-m/-smp/-object/-numa/-device args of its host.
 */
import { loadProfile } from './load.js';
import { resolveProfile, type GuestLayout } from './profile.js';
import { renderQemuArgs } from './render-qemu.js';

export interface LabTopology {
  layout: GuestLayout;
  /** -machine, -m, -smp, memory backends, -numa and -device nvdimm: no accelerator, kernel or disks. */
  args: string[];
  /** Backing files QEMU creates (sparse) under labDir; the harness removes them after the run. */
  files: Array<{ path: string; sizeBytes: number }>;
}

/** Renders lab profile `name` (lab-tiered, lab-three-tier) with its NVDIMM files under `labDir`. */
export function renderLabTopology(name: string, opts: { labDir: string; memory?: string | number; dramRatio?: number }): LabTopology {
  const { spec } = loadProfile(name);
  const layout = resolveProfile(spec, { vars: { labDir: opts.labDir }, memory: opts.memory, dramRatio: opts.dramRatio });
  const files = layout.nvdimms
    .filter((d) => d.backend.kind === 'file' && d.backend.path !== null)
    .map((d) => ({ path: d.backend.path as string, sizeBytes: d.sizeBytes }));
  return { layout, args: renderQemuArgs(layout), files };
}
