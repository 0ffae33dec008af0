/** The policy core's public surface: what the daemon and the simulator import. */
export { TierPolicySchema, parsePolicy, normalizePolicy, DEFAULT_POLICY } from './schema.js';
export type { TierPolicy, TierPolicyInput } from './schema.js';
export { TieringPolicy, type TieringOptions } from './tiering.js';
export { splitDram, type ShareRequest } from './share.js';
export { heatThresholds, type HeatThresholds } from './heat.js';
export * from './types.js';
