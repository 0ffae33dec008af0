/**
 * The ground floor shared by every layer (src/vm, src/scan, src/migrate, src/daemon): address
 * ranges and the units the kernel maps and moves memory in. Imports nothing.
 *
 * A unit is what the kernel maps, ages and moves as one: a 4 KiB page, a 2 MiB THP or hugetlb
 * page, a 1 GiB hugetlb page. Sizes are carried as log2 of the bytes ("shift"), as the kmod
 * tracker reports its leaf sizes.
 */

/** Bytes of a base page on x86_64. */
export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;
/** A PMD leaf: 2 MiB THP or hugetlb page. */
export const HUGE_2M_SHIFT = 21;
/** A PUD leaf: 1 GiB hugetlb page. */
export const HUGE_1G_SHIFT = 30;
export const UNIT_SHIFTS = [PAGE_SHIFT, HUGE_2M_SHIFT, HUGE_1G_SHIFT] as const;
export type UnitShift = (typeof UNIT_SHIFTS)[number];

/** Half-open virtual address range [start, end), page aligned. */
export interface HvaRange {
  start: number;
  end: number;
}

export function isUnitShift(shift: number): shift is UnitShift {
  return shift === PAGE_SHIFT || shift === HUGE_2M_SHIFT || shift === HUGE_1G_SHIFT;
}

/** Bytes of a unit of the given shift. */
export function unitBytes(shift: UnitShift): number {
  return 2 ** shift;
}

/** 4 KiB pages in a unit of the given shift (1, 512, 262144). */
export function unitPages(shift: UnitShift): number {
  return 2 ** (shift - PAGE_SHIFT);
}

/** First address of the unit holding `addr` (addresses < 2^53: exact in a double). */
export function unitStart(addr: number, shift: UnitShift): number {
  const size = 2 ** shift;
  return addr - (addr % size);
}
