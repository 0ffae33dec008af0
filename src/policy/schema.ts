/**
 * The per-VM tiering policy: the one schema that the API validates and stores under
 * /v1/vms/{uuid}/policy, that the daemon reads each round and that src/policy decides with.
 * Every field has a default so `{}` is a valid policy; `normalizePolicy` fills them in.
 */
import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';
import { VmtierError } from '../errors.js';

export const PolicyMode = Type.Union([Type.Literal('off'), Type.Literal('observe'), Type.Literal('tier')], {
  description: 'off: not managed; observe: scan and record, never move; tier: scan, decide and move pages',
});

export const TrackerName = Type.Union([Type.Literal('auto'), Type.Literal('kmod'), Type.Literal('damon')], {
  description: 'auto: the kernel module when loaded, else DAMON',
});

export const TierPolicySchema = Type.Object(
  {
    mode: Type.Optional(PolicyMode),
    tracker: Type.Optional(TrackerName),
    scan: Type.Optional(
      Type.Object(
        {
          intervalMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 600_000, description: 'sleep between two scans' })),
          scansPerRound: Type.Optional(Type.Integer({ minimum: 1, maximum: 32, description: 'N: scans whose counts make one round' })),
          autoTune: Type.Optional(Type.Boolean({ description: 'adapt interval and N so a round\'s hot set stays under half the DRAM share' })),
        },
        { additionalProperties: false },
      ),
    ),
    thresholds: Type.Optional(
      Type.Object(
        {
          hotMinFraction: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'hot: count >= ceil(f*N)' })),
          coldMaxFraction: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'cold: count <= floor(f*N)' })),
          coldConfirmRounds: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'rounds a page must stay cold before demotion' })),
          hotConfirmRounds: Type.Optional(Type.Integer({ minimum: 1, maximum: 255, description: 'consecutive hot rounds before promotion (filters one-round bursts)' })),
          pingPongWindowRounds: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
          coolDownRounds: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
        },
        { additionalProperties: false },
      ),
    ),
    dram: Type.Optional(
      Type.Object(
        {
          minBytes: Type.Optional(Type.Integer({ minimum: 0, description: 'floor: DRAM this VM keeps even under pressure' })),
          maxBytes: Type.Optional(Type.Integer({ minimum: 0, description: 'ceiling: DRAM this VM may hold' })),
          weight: Type.Optional(Type.Number({ minimum: 0, maximum: 1000, description: 'share of contended DRAM relative to other VMs' })),
          demote: Type.Optional(
            Type.Union([Type.Literal('cold'), Type.Literal('pressure')], {
              description: 'cold: demote every page whose coldness is confirmed; pressure: only when DRAM is needed (share or ceiling exceeded, host DRAM below the watermark, hot pages waiting)',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    migration: Type.Optional(
      Type.Object(
        {
          maxMBps: Type.Optional(Type.Number({ minimum: 0, maximum: 100_000, description: 'per-VM migration rate limit' })),
          maxBytesPerRound: Type.Optional(Type.Integer({ minimum: 0 })),
        },
        { additionalProperties: false },
      ),
    ),
    madviseCold: Type.Optional(Type.Boolean({ description: 'mark cold pages left in DRAM with MADV_COLD' })),
  },
  { additionalProperties: false, $id: 'TierPolicy' },
);

export type TierPolicyInput = Static<typeof TierPolicySchema>;

/** A policy with every default applied. */
export interface TierPolicy {
  mode: 'off' | 'observe' | 'tier';
  tracker: 'auto' | 'kmod' | 'damon';
  scan: { intervalMs: number; scansPerRound: number; autoTune: boolean };
  thresholds: {
    hotMinFraction: number;
    coldMaxFraction: number;
    coldConfirmRounds: number;
    hotConfirmRounds: number;
    pingPongWindowRounds: number;
    coolDownRounds: number;
  };
  dram: { minBytes: number; maxBytes: number | null; weight: number; demote: 'cold' | 'pressure' };
  migration: { maxMBps: number; maxBytesPerRound: number | null };
  madviseCold: boolean;
}

export const DEFAULT_POLICY: TierPolicy = Object.freeze({
  mode: 'observe',
  tracker: 'auto',
  scan: { intervalMs: 1000, scansPerRound: 4, autoTune: true },
  thresholds: { hotMinFraction: 0.75, coldMaxFraction: 0.25, coldConfirmRounds: 3, hotConfirmRounds: 2, pingPongWindowRounds: 8, coolDownRounds: 16 },
  dram: { minBytes: 0, maxBytes: null, weight: 1, demote: 'pressure' },
  migration: { maxMBps: 256, maxBytesPerRound: null },
  madviseCold: false,
}) as TierPolicy;

/** Validates an untrusted policy document; throws INVALID_POLICY naming the first bad field. */
export function parsePolicy(input: unknown): TierPolicy {
  if (!Value.Check(TierPolicySchema, input)) {
    const first = [...Value.Errors(TierPolicySchema, input)][0];
    const where = first ? (first as { instancePath?: string }).instancePath || '/' : '/';
    throw new VmtierError('INVALID_POLICY', `invalid policy at ${where}: ${first?.message ?? 'does not match schema'}`, { path: where });
  }
  return normalizePolicy(input as TierPolicyInput);
}

export function normalizePolicy(p: TierPolicyInput): TierPolicy {
  const d = DEFAULT_POLICY;
  const out: TierPolicy = {
    mode: p.mode ?? d.mode,
    tracker: p.tracker ?? d.tracker,
    scan: { ...d.scan, ...stripUndefined(p.scan) },
    thresholds: { ...d.thresholds, ...stripUndefined(p.thresholds) },
    dram: { ...d.dram, ...stripUndefined(p.dram) },
    migration: { ...d.migration, ...stripUndefined(p.migration) },
    madviseCold: p.madviseCold ?? d.madviseCold,
  };
  if (out.dram.maxBytes !== null && out.dram.maxBytes < out.dram.minBytes) {
    throw new VmtierError('INVALID_POLICY', 'invalid policy at /dram: maxBytes is below minBytes', { path: '/dram/maxBytes' });
  }
  if (out.thresholds.coldMaxFraction >= out.thresholds.hotMinFraction) {
    throw new VmtierError('INVALID_POLICY', 'invalid policy at /thresholds: coldMaxFraction must be below hotMinFraction (hysteresis)', {
      path: '/thresholds/coldMaxFraction',
    });
  }
  return out;
}

function stripUndefined<T extends object>(o: T | undefined): Partial<T> {
  if (!o) return {};
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
