/**
 * Splitting one DRAM pool between VMs: floors first (what a VM keeps even under pressure), then
 * weighted water-filling up to each VM's demand and ceiling, then what nobody demands, still by
 * weight up to the ceilings, so that DRAM is never left idle while a VM could use it.
 */

export interface ShareRequest {
  floorBytes: number;
  /** Infinity when the VM has no ceiling. */
  ceilingBytes: number;
  weight: number;
  /** DRAM the VM's recently active pages would fill. */
  demandBytes: number;
}

/** Returns one share per request; the shares never sum above capacityBytes. */
export function splitDram(capacityBytes: number, reqs: readonly ShareRequest[]): Float64Array {
  const n = reqs.length;
  const share = new Float64Array(n);
  if (n === 0 || capacityBytes <= 0) return share;
  const floors = reqs.map((r) => Math.min(r.floorBytes, r.ceilingBytes));
  const floorSum = floors.reduce((a, b) => a + b, 0);
  // Floors that over-commit the pool are honoured in proportion: nobody gets more than the pool.
  const floorScale = floorSum > capacityBytes ? capacityBytes / floorSum : 1;
  let left = capacityBytes;
  for (let i = 0; i < n; i++) {
    share[i] = floors[i]! * floorScale;
    left -= share[i]!;
  }
  left = fill(share, left, reqs.map((r, i) => Math.max(share[i]!, Math.min(r.ceilingBytes, r.demandBytes))), reqs);
  if (left > 0) fill(share, left, reqs.map((r) => r.ceilingBytes), reqs);
  return share;
}

/** Weighted water-filling of `left` bytes into share[i] up to cap[i]; returns what is left. */
function fill(share: Float64Array, left: number, cap: number[], reqs: readonly ShareRequest[]): number {
  // Weight-0 VMs only get what weighted VMs leave: contended DRAM follows weights.
  for (const zeroPass of [false, true]) {
    for (let iter = 0; iter < reqs.length + 1 && left > 1e-6; iter++) {
      let wsum = 0;
      for (let i = 0; i < reqs.length; i++) {
        if (share[i]! < cap[i]! - 1e-6) wsum += zeroPass ? 1 : reqs[i]!.weight;
      }
      if (wsum <= 0) break;
      let given = 0;
      const pool = left;
      for (let i = 0; i < reqs.length; i++) {
        const room = cap[i]! - share[i]!;
        if (room <= 1e-6) continue;
        const w = zeroPass ? 1 : reqs[i]!.weight;
        const g = Math.min(room, (pool * w) / wsum);
        share[i]! += g;
        given += g;
      }
      left -= given;
      if (given <= 1e-6) break;
    }
  }
  return Math.max(0, left);
}
