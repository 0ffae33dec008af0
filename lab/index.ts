/**
 * The lab: an emulated tiered host (QEMU/TCG, Debian's 6.12 kernel, this machine's root shared
 * read-only, an NVDIMM onlined as a CPU-less kmem node in a lower memory tier). Every
 * kernel-facing claim of vmtier is proven here. See README "## The lab".
 */
import { VmtierError } from '../src/errors.js';
import { LabSession, type LabCommandOptions, type LabSessionOptions } from './session.js';
import type { LabTopologyName } from './topology.js';

export { LabSession, commandScript } from './session.js';
export type { LabCommandOptions, LabProcess, LabResult, LabSessionOptions } from './session.js';
export { labMachine, LAB_TOPOLOGIES } from './topology.js';
export { ensureLabKernel, LAB_KERNELS } from './kernel.js';
export type { LabKernel, LabKernelName } from './kernel.js';
export type { LabMachine, LabNvdimm, LabTopologyName } from './topology.js';
export { ensureWorkload, ensureLabBinary, parseWorkloadLayout } from './build.js';
export type { WorkloadLayout } from './build.js';

export interface RunInLabOptions extends Omit<LabSessionOptions, 'topology'>, Pick<LabCommandOptions, 'onStdout' | 'onStderr'> {
  topology?: LabTopologyName;
  command: string[] | string;
  /** For the command (the boot has its own limit). */
  timeoutMs: number;
  env?: Record<string, string>;
}

export interface RunInLabResult {
  status: number;
  stdout: string;
  stderr: string;
  consoleLog: string;
}

/** Boots a lab guest, runs one command, powers it off. A boot that fails throws LAB_ERROR. */
export async function runInLab(opts: RunInLabOptions): Promise<RunInLabResult> {
  if (!opts.command || opts.command.length === 0) throw new VmtierError('INVALID_INPUT', 'runInLab: empty command');
  const session = await LabSession.start(opts);
  try {
    const r = await session.run(opts.command, { timeoutMs: opts.timeoutMs, env: opts.env, onStdout: opts.onStdout, onStderr: opts.onStderr });
    return { ...r, consoleLog: session.consoleLog() };
  } finally {
    await session.close();
  }
}

/** Runs `fn` with a session booted for it, closing the session afterwards whatever happens. */
export async function withLab<T>(opts: LabSessionOptions, fn: (lab: LabSession) => Promise<T>): Promise<T> {
  const session = await LabSession.start(opts);
  try {
    return await fn(session);
  } finally {
    await session.close();
  }
}
