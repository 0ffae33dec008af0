/**
 * A fast-tiering policy for engine tests: rounds of two 50 ms scans, one round to confirm hot or
 * cold, DRAM capped at the hot set, a migration rate that never holds a move back.
 */
export function fastTierPolicy(dramMaxBytes: number): Record<string, unknown> {
  return {
    mode: 'tier', tracker: 'auto', scan: { intervalMs: 50, scansPerRound: 2, autoTune: false },
    thresholds: { coldConfirmRounds: 1, hotConfirmRounds: 1 }, dram: { maxBytes: dramMaxBytes }, migration: { maxMBps: 1000 },
  };
}
