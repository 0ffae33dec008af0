/**
 * Sizes in profiles are written the way QEMU and people write them ("2G", "1026M", "128K") or as
 * plain byte counts. Suffixes are binary (K = 1024), as in QEMU's -m and size= options.
 */
import { VmtierError } from '../errors.js';

const UNITS: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
const SIZE_RE = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i;

export const MiB = 2 ** 20;
export const GiB = 2 ** 30;

/** Bytes of a size string or number; throws INVALID_PROFILE naming `field`. */
export function parseSize(value: string | number, field: string): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new VmtierError('INVALID_PROFILE', `${field}: ${value} is not a byte count`, { field });
    }
    return value;
  }
  const m = SIZE_RE.exec(value);
  if (!m) throw new VmtierError('INVALID_PROFILE', `${field}: "${value}" is not a size (e.g. 2G, 512M, 2097152)`, { field });
  const bytes = Number(m[1]) * UNITS[m[2].toUpperCase()];
  if (!Number.isSafeInteger(bytes)) {
    throw new VmtierError('INVALID_PROFILE', `${field}: "${value}" is not a whole number of bytes`, { field });
  }
  return bytes;
}

/** The shortest exact QEMU spelling of a byte count: 2147483648 -> "2G", 1075838976 -> "1026M". */
export function qemuSize(bytes: number): string {
  for (const [suffix, unit] of [['T', UNITS.T], ['G', UNITS.G], ['M', UNITS.M], ['K', UNITS.K]] as const) {
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit}${suffix}`;
  }
  return String(bytes);
}

/** Human form for messages: the largest unit that shows the size exactly in at most two decimals
 * (1026M -> "1026 MiB", not a rounded "1 GiB"; 1.5G -> "1.5 GiB"), else two decimals. */
export function humanSize(bytes: number): string {
  const units = [['TiB', UNITS.T], ['GiB', UNITS.G], ['MiB', UNITS.M], ['KiB', UNITS.K]] as const;
  for (const [suffix, unit] of units) {
    if (bytes >= unit && Number.isInteger((bytes * 100) / unit)) return `${bytes / unit} ${suffix}`;
  }
  for (const [suffix, unit] of units) {
    if (bytes >= unit) return `${Number((bytes / unit).toFixed(2))} ${suffix}`;
  }
  return `${bytes} B`;
}
