/**
 * Guest-side helpers (run inside the lab by node): start the host-built workload, wait for its
 * layout line, and read the kernel's own account of where its pages are (/proc/<pid>/numa_maps).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { parseWorkloadLayout, type WorkloadLayout } from '../build.js';
import { labBinDir } from '../paths.js';

export interface RunningWorkload {
  proc: ChildProcess;
  layout: WorkloadLayout;
  /** Every 4 KiB page address of the footprint, in order. */
  pages: Float64Array;
  stop(): Promise<void>;
}

export async function startWorkload(args: string[], timeoutMs = 120_000): Promise<RunningWorkload> {
  const proc = spawn(join(labBinDir, 'workload'), args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: proc.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`workload ${args.join(' ')} printed no layout in ${timeoutMs} ms`)), timeoutMs);
    lines.once('line', (l) => { clearTimeout(t); resolve(l); });
    proc.once('exit', (code) => { clearTimeout(t); reject(new Error(`workload ${args.join(' ')} exited ${code} before its layout`)); });
  });
  const layout = parseWorkloadLayout(first);
  const pages = new Float64Array(layout.bytes / 4096);
  for (let i = 0; i < pages.length; i++) pages[i] = layout.base + i * 4096;
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    await gone;
  };
  return { proc, layout, pages, stop };
}

/** Counts per status value ("node:N" or errno) of a query. */
export function histogram(status: Int32Array): Record<string, number> {
  const h: Record<string, number> = {};
  for (const s of status) {
    const k = s >= 0 ? `node:${s}` : `errno:${-s}`;
    h[k] = (h[k] ?? 0) + 1;
  }
  return h;
}

/**
 * numa_maps' per-node page counts (N<node>=<pages>) of the mapping that holds `addr`; numa_maps
 * names a mapping by its start only, so /proc/<pid>/maps gives the one containing `addr`.
 */
export function numaMapsCounts(pid: number, addr: number): { line: string; nodes: Record<string, number> } {
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n');
  const vma = maps.find((l) => {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(l);
    return m !== null && Number.parseInt(m[1]!, 16) <= addr && addr < Number.parseInt(m[2]!, 16);
  });
  if (!vma) throw new Error(`no mapping of pid ${pid} holds 0x${addr.toString(16)}`);
  const start = vma.slice(0, vma.indexOf('-'));
  const line = readFileSync(`/proc/${pid}/numa_maps`, 'utf8').split('\n').find((l) => l.startsWith(`${start} `)) ?? '';
  const nodes: Record<string, number> = {};
  for (const m of line.matchAll(/ N(\d+)=(\d+)/g)) nodes[m[1]!] = Number(m[2]);
  return { line, nodes };
}

export function nodeMemFreeBytes(node: number): number {
  const m = /MemFree:\s+(\d+) kB/.exec(readFileSync(`/sys/devices/system/node/node${node}/meminfo`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}
