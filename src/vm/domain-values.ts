/**
 * The small value syntaxes of libvirt's domain XML, parsed the way libvirt parses them: node sets
 * ("0-3,^2"), PCI address parts (strtoul base 0: "0x1f", "31" and "037" are one slot), and the
 * size alignment libvirt's QEMU driver applies before it starts QEMU.
 */
import { VmtierError } from '../errors.js';

/** libvirt caps node-set bitmaps; a larger id is a typo, not a host. */
const MAX_NODE_ID = 4095;

/** "0-3,5,^2" → [0, 1, 3, 5]: ranges and single ids, then "^n" exclusions, sorted, distinct. */
export function parseNodeset(text: string, what: string): number[] {
  const set = new Set<number>();
  const exclude: number[] = [];
  const parts = text.split(',').map((p) => p.trim());
  if (text.trim() === '' || parts.some((p) => p === '')) throw new VmtierError('INVALID_XML', `${what}: empty node set entry in ${JSON.stringify(text)}`);
  for (const p of parts) {
    const m = /^(\^)?(\d+)(?:-(\d+))?$/.exec(p);
    if (!m) throw new VmtierError('INVALID_XML', `${what}: not a node set: ${JSON.stringify(text)}`);
    const lo = Number(m[2]);
    const hi = m[3] === undefined ? lo : Number(m[3]);
    if (hi < lo || hi > MAX_NODE_ID || (m[1] && m[3] !== undefined)) throw new VmtierError('INVALID_XML', `${what}: bad node range ${JSON.stringify(p)}`);
    if (m[1]) exclude.push(lo);
    else for (let n = lo; n <= hi; n++) set.add(n);
  }
  for (const n of exclude) set.delete(n);
  if (set.size === 0) throw new VmtierError('INVALID_XML', `${what}: node set ${JSON.stringify(text)} selects no node`);
  return [...set].sort((a, b) => a - b);
}

/** An unsigned integer as strtoul(…, 0) reads it: 0x… hex, 0… octal, else decimal. */
export function parseCInteger(text: string | null, what: string, max: number): number {
  const t = (text ?? '').trim();
  let v: number;
  if (/^0[xX][0-9a-fA-F]+$/.test(t)) v = Number.parseInt(t.slice(2), 16);
  else if (/^0[0-7]*$/.test(t)) v = Number.parseInt(t, 8);
  else if (/^[1-9]\d*$/.test(t)) v = Number(t);
  else throw new VmtierError('INVALID_XML', `${what}: not a number: ${JSON.stringify(text)}`);
  if (!Number.isSafeInteger(v) || v > max) throw new VmtierError('INVALID_XML', `${what}: ${t} is out of range (max ${max})`);
  return v;
}

/** A host PCI address in the form QEMU and sysfs print it: "0021:de:1f.1". */
export function pciAddressText(parts: { domain: string | null; bus: string | null; slot: string | null; function: string | null }, what: string): string {
  // libvirt defaults an omitted domain to 0; bus, slot and function are required.
  const domain = parts.domain === null ? 0 : parseCInteger(parts.domain, `${what} domain`, 0xffffffff);
  const bus = parseCInteger(parts.bus, `${what} bus`, 0xff);
  const slot = parseCInteger(parts.slot, `${what} slot`, 0x1f);
  const fn = parseCInteger(parts.function, `${what} function`, 7);
  const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');
  return `${hex(domain, 4)}:${hex(bus, 2)}:${hex(slot, 2)}.${fn}`;
}

export const roundUp = (bytes: number, align: number): number => Math.ceil(bytes / align) * align;

const MiB = 2 ** 20;

/**
 * What libvirt's QEMU driver rounds guest RAM (each NUMA cell, or the one block without NUMA) to
 * before it builds the command line: 1 MiB, and 256 MiB on ppc64 (the pseries LMB size).
 */
export function ramAlignment(arch: string | null): number {
  return arch !== null && arch.startsWith('ppc64') ? 256 * MiB : MiB;
}

/**
 * The alignment libvirt applies to a memory device's size: virtio-mem to its block size,
 * sgx-epc not at all (4 KiB), ppc64 DIMMs to 256 MiB, other DIMM-like devices to 2 MiB — and at
 * least the device's own page size.
 */
export function deviceAlignment(model: string, arch: string | null, blockBytes: number | null, pageBytes: number | null): number {
  let align: number;
  if (model === 'virtio-mem') align = blockBytes ?? 2 * MiB;
  else if (model === 'sgx-epc') align = 4096;
  else if (arch !== null && arch.startsWith('ppc64')) align = 256 * MiB;
  else align = 2 * MiB;
  return Math.max(align, pageBytes ?? 0);
}
