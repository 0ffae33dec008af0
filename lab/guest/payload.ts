/**
 * The lab's guest payload (lab/guest/payload/): a multiboot ELF32 that is a whole guest, built on
 * this machine with gcc -m32 -ffreestanding and ld -m elf_i386 (no multilib needed), and the
 * libvirt domain that runs it through <os><kernel>. The payload writes one byte per 4 KiB page of
 * its hot set in a loop and prints the layout it was given as JSON on its serial port.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { VmtierError } from '../../src/errors.js';
import { labBinDir, repoRoot } from '../paths.js';

const SRC_DIR = join(repoRoot, 'lab', 'guest', 'payload');
const MiB = 2 ** 20;

/** Builds .cache/lab/bin/payload.elf when missing or older than any of its sources. */
export function ensurePayload(): string {
  const out = join(labBinDir, 'payload.elf');
  const newest = Math.max(...readdirSync(SRC_DIR).map((f) => statSync(join(SRC_DIR, f)).mtimeMs));
  if (existsSync(out) && statSync(out).mtimeMs >= newest) return out;
  mkdirSync(labBinDir, { recursive: true });
  try {
    execFileSync('sh', [join(SRC_DIR, 'build.sh'), out], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new VmtierError('LAB_ERROR', `building the guest payload failed:\n${stderr}`, undefined, { cause: e });
  }
  return out;
}

/** A guest-physical range [start, end) in bytes. */
export interface GpaRange {
  start: number;
  end: number;
}

export interface PayloadLayout {
  hz: number;
  /** Phase 0 hot set; after a key press the phase 1 set (`hot1`) is written instead. */
  hot: GpaRange[];
  hot1: GpaRange[];
  /** Written once at start: present, then cold. */
  once: GpaRange[];
  /** Written every `every`-th pass in both phases (a working set's infrequent part); none when absent. */
  warm?: GpaRange[];
  every?: number;
}

export interface PayloadDomainOptions {
  name: string;
  payload: string;
  /** 'kvm' (nested, needs /dev/kvm in the lab) or 'qemu' (TCG inside TCG). */
  type: 'kvm' | 'qemu';
  /** Guest RAM per guest node (two nodes; node 1 has no CPU). */
  nodeBytes: number;
  /** Host node every guest node's memory is bound to (memnode strict), or null: no binding. */
  bindHostNode: number | null;
  layout: PayloadLayout;
  /** Serial log path inside the lab (a tmpfs there). */
  serialLog: string;
  /** Elements for the domain's <metadata> (e.g. a vmtier policy), verbatim; none when absent. */
  metadataXml?: string;
}

function rangesArg(rs: GpaRange[]): string {
  return rs.map((r) => {
    if (r.start % MiB || r.end % MiB || r.end <= r.start) throw new VmtierError('INVALID_INPUT', 'payload ranges are whole MiB');
    return `${r.start / MiB}+${(r.end - r.start) / MiB}`;
  }).join(',');
}

/** The payload's command line for a layout. */
export function payloadCmdline(l: PayloadLayout): string {
  return [
    `hot=${rangesArg(l.hot)}`, l.hot1.length ? `hot1=${rangesArg(l.hot1)}` : '', l.once.length ? `once=${rangesArg(l.once)}` : '',
    l.warm?.length ? `warm=${rangesArg(l.warm)}` : '', l.warm?.length && l.every ? `every=${l.every}` : '', `hz=${l.hz}`,
  ].filter(Boolean).join(' ');
}

export function payloadDomainXml(o: PayloadDomainOptions): string {
  const mib = o.nodeBytes / MiB;
  const numatune = o.bindHostNode === null ? '' :
    `<numatune>${[0, 1].map((c) => `<memnode cellid='${c}' mode='strict' nodeset='${o.bindHostNode}'/>`).join('')}</numatune>`;
  return `<domain type='${o.type}'>
  <name>${o.name}</name>${o.metadataXml ? `\n  <metadata>${o.metadataXml}</metadata>` : ''}
  <memory unit='MiB'>${2 * mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>${o.payload}</kernel><cmdline>${payloadCmdline(o.layout)}</cmdline></os>
  <cpu><numa><cell id='0' cpus='0' memory='${mib}' unit='MiB'/><cell id='1' memory='${mib}' unit='MiB'/></numa></cpu>
  ${numatune}
  <on_poweroff>destroy</on_poweroff>
  <devices><serial type='file'><source path='${o.serialLog}'/></serial><memballoon model='none'/></devices>
</domain>
`;
}

/** Parses the payload's first serial line (hex strings) into byte ranges. */
export function parsePayloadLayout(line: string): PayloadLayout {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new VmtierError('INVALID_INPUT', `payload layout is not JSON: ${line.slice(0, 200)}`);
  }
  if (j.payload !== 'vmtier-lab') throw new VmtierError('INVALID_INPUT', `not a payload layout line: ${line.slice(0, 200)}`);
  const ranges = (v: unknown): GpaRange[] => (Array.isArray(v) ? v : []).map((r: { start: string; end: string }) => ({
    start: Number.parseInt(r.start, 16),
    end: Number.parseInt(r.end, 16),
  }));
  const warm = ranges(j.warm);
  return { hz: Number(j.hz), hot: ranges(j.hot), hot1: ranges(j.hot1), once: ranges(j.once), ...(warm.length ? { warm, every: Number(j.every) } : {}) };
}
