/**
 * Hot, warm and cold: the one definition the policy, the daemon's accounting, its history, the
 * hot map and MADV_COLD share. A page seen in `count` of a round's `scans` scans is hot when
 * count >= hotMin, cold when count <= coldMax, warm between. The small epsilon keeps fractions that
 * are exact in decimal exact here (0.14 × 50 is 7.000000000000001 in binary: hotMin 7, not 8).
 */
export interface HeatThresholds {
  hotMin: number;
  coldMax: number;
}

export function heatThresholds(th: { hotMinFraction: number; coldMaxFraction: number }, scans: number): HeatThresholds {
  const n = Math.max(1, scans);
  const hotMin = Math.max(1, Math.ceil(th.hotMinFraction * n - 1e-9));
  // Hysteresis: a count is never both hot and cold.
  const coldMax = Math.min(hotMin - 1, Math.floor(th.coldMaxFraction * n + 1e-9));
  return { hotMin, coldMax };
}
