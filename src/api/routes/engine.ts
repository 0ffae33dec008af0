/**
 * GET /v1/engine and GET /v1/vms/{uuid}/engine: what the tiering engine (src/daemon) is doing —
 * per VM its mode, tracker (and why it is unavailable), last round, move outcomes by status,
 * backoff; host-wide the kernel's own tiering state, coexistence warnings and the migration budget's use.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { VmtierError } from '../../errors.js';
import { VmParams, errors } from '../schemas.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(s: T) => Type.Union([s, Type.Null()]);
const Mode = Type.Union([Type.Literal('off'), Type.Literal('observe'), Type.Literal('tier')]);
const ErrorInfo = Type.Object({ code: Type.String(), message: Type.String() });

/** The API's form of src/migrate/counts.ts MoveCounts (test/unit/move-counts.test.ts holds them equal). */
export const MoveCounts = Type.Object({
  requested: Type.Integer(),
  byClass: Type.Object({
    moved: Type.Integer({ description: 'ended on the target node (already there counts)' }),
    busy: Type.Integer(),
    notPresent: Type.Integer(),
    noMemory: Type.Integer(),
    fault: Type.Integer({ description: 'not movable (EFAULT: devdax, PFN maps)' }),
    other: Type.Integer(),
  }),
});

const RoundSummary = Type.Object({
  round: Type.Integer(),
  t: Type.Number({ description: 'ms since epoch' }),
  mode: Type.Union([Type.Literal('observe'), Type.Literal('tier')]),
  scans: Type.Integer({ description: '0 when the tracker was unavailable (placement only)' }),
  intervalMs: Type.Number(),
  scanMs: Type.Number(),
  durationMs: Type.Number(),
  trackedBytes: Type.Integer(),
  residentBytes: Type.Integer(),
  hotBytes: Type.Integer(),
  warmBytes: Type.Integer(),
  coldBytes: Type.Integer(),
  decided: Type.Object({ promotePages: Type.Integer(), demotePages: Type.Integer() }),
  moves: Type.Object({ promote: MoveCounts, demote: MoveCounts }),
  promotionPaused: Type.Boolean(),
  skipped: Type.Record(Type.String(), Type.Integer(), { description: 'pages chosen but not moved, by reason' }),
  madvisedColdBytes: Type.Integer(),
  unmovablePages: Type.Integer(),
  longestSyscallMs: Type.Number({ description: 'longest single synchronous move_pages batch of the round' }),
  planReason: Type.String({ description: "why the policy set the next round's scan plan: shift, too-hot, stable, hold, recurrent (held while a recurrence period is found), fixed; none before a decision" }),
  recurrencePeriodRounds: Type.Integer({ minimum: 0, description: 'the recurrence period the policy found in the VM\'s seen pages, in rounds (0: none); while one is found DRAM follows it' }),
  decidedWithVms: Type.Integer({ minimum: 0, description: 'tiered VMs decided in the same policy call as this one: the host decides the tiered VMs whose rounds are due together, over one DRAM pool (1: alone, e.g. observe mode; 0: no decision yet)' }),
  shareBytes: Type.Number({ minimum: 0, description: 'DRAM the policy gave this VM in that decision (its share of the host pool), bytes' }),
});

export const VmEngineResponse = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  mode: Mode,
  policyVersion: Type.Integer(),
  policySource: Type.Union([Type.Literal('metadata'), Type.Literal('store'), Type.Literal('default')], { description: "where the policy in force was read (the domain's metadata is the source of truth)" }),
  policyError: Nullable(
    Type.Object(
      { code: Type.String(), message: Type.String(), t: Type.Number() },
      { description: "the policy in the domain's metadata is invalid: the last valid version keeps applying" },
    ),
  ),
  state: Type.Union([
    Type.Literal('starting'), Type.Literal('running'), Type.Literal('idle'), Type.Literal('backoff'), Type.Literal('migrating'), Type.Literal('stopped'),
  ]),
  migration: Type.Object(
    {
      state: Type.Union([Type.Literal('none'), Type.Literal('paused')]),
      since: Nullable(Type.Number()),
      iteration: Nullable(Type.Integer()),
      pauses: Type.Integer(),
      resumes: Type.Integer({ description: 'migrations that failed or were cancelled: scans resumed on this host' }),
      discardedRounds: Type.Integer({ description: 'rounds whose scan overlapped a migration (their counts are thrown away)' }),
    },
    { description: 'outgoing live migration: scans and moves pause while it runs' },
  ),
  hotMap: Nullable(
    Type.Object(
      {
        round: Type.Integer(),
        t: Type.Number(),
        units: Type.Integer(),
        hotUnits: Type.Integer(),
        map: Type.String({ description: 'one bit per 2 MiB unit, LSB first, base64' }),
        error: Nullable(ErrorInfo),
      },
      { description: "the hot-unit map last written into the domain's metadata" },
    ),
  ),
  seed: Nullable(
    Type.Object(
      {
        round: Type.Integer(),
        t: Type.Number(),
        map: Type.String(),
        units: Type.Integer(),
        hotUnits: Type.Integer(),
        pages: Type.Integer({ description: 'pages of the hot units asked to be placed in DRAM' }),
        promote: Nullable(MoveCounts),
        target: Nullable(Type.Integer()),
        skipped: Type.Record(Type.String(), Type.Integer()),
      },
      { description: "first placement from a hot map found in the metadata (after a live migration or restart)" },
    ),
  ),
  tracker: Nullable(Type.Object({ name: Type.String(), available: Type.Boolean(), error: Nullable(ErrorInfo) })),
  rounds: Type.Integer(),
  lastRound: Nullable(RoundSummary),
  totals: Type.Object({ promote: MoveCounts, demote: MoveCounts, madvisedColdBytes: Type.Integer() }),
  failures: Type.Integer(),
  lastError: Nullable(Type.Object({ code: Type.String(), message: Type.String(), t: Type.Number() })),
  backoffUntil: Nullable(Type.Number()),
});

const HostBudget = Type.Object(
  {
    rateBytesPerSec: Type.Number({ description: 'the host bucket rate (serve --host-mbps), bytes per second' }),
    capacityBytes: Type.Number({ description: 'bytes the bucket holds when full (rate x 2 s): the most one lease can get' }),
    availableBytes: Type.Number({ description: 'bytes in the host bucket now' }),
    dramFreeWatermarkBytes: Type.Number({ description: 'promotion pauses while free top-tier memory is below this' }),
    outstanding: Type.Object(
      { leases: Type.Integer(), reservedBytes: Type.Number() },
      { description: 'leases taken and not yet settled (moves in progress) and the bytes they hold' },
    ),
    lastHour: Type.Object(
      {
        leases: Type.Integer(),
        wantedBytes: Type.Number({ description: 'bytes the rounds asked for' }),
        reservedBytes: Type.Number({ description: 'bytes the leases reserved' }),
        settledBytes: Type.Number({ description: 'bytes paid at settling: the moves really attempted' }),
        shortLeases: Type.Integer({ description: 'leases that got less than asked' }),
      },
      { description: 'the last 60 minutes (per minute, so up to a minute more)' },
    ),
    waiting: Type.Array(
      Type.Object({
        vm: Type.String({ description: 'uuid' }),
        t: Type.Number({ description: 'ms since epoch of the lease' }),
        wantedBytes: Type.Number(),
        reservedBytes: Type.Number(),
        limitedBy: Type.Union([Type.Literal('vm'), Type.Literal('host'), Type.Literal('dram')], { description: "its own bucket (migration.maxMBps), the host's, or DRAM room for promotion" }),
      }),
      { description: 'VMs whose latest lease got less than they asked; they move the rest in later rounds' },
    ),
  },
  { description: 'the host-wide migration budget (token bucket) every VM leases its moves from' },
);

export const EngineResponse = Type.Object({
  running: Type.Boolean(),
  trackerOverride: Nullable(Type.String()),
  kernel: Nullable(
    Type.Object({
      numaBalancing: Nullable(Type.Object({ value: Type.Integer(), mode: Type.String() })),
      demotionEnabled: Nullable(Type.Boolean()),
      promoteRateLimitMBps: Nullable(Type.Number()),
    }),
  ),
  warnings: Type.Array(Type.String(), { description: 'the kernel also tiers the memory vmtier manages' }),
  budget: HostBudget,
  decisions: Type.Object(
    {
      decisions: Type.Integer({ description: 'policy calls over tiered VMs since the engine started' }),
      lastBatchVms: Type.Integer({ description: 'tiered VMs in the newest call' }),
      maxBatchVms: Type.Integer({ description: 'most tiered VMs decided in one call' }),
      jointRounds: Type.Integer({ description: 'VM rounds decided together with at least one other VM' }),
      soloRounds: Type.Integer({ description: 'tiered VM rounds decided alone (no other VM due)' }),
      retriedAlone: Type.Integer({ description: 'joint calls that failed (one VM\'s input) and were decided VM by VM' }),
      policyStateBytes: Nullable(Type.Number({ description: "the policy's retained per-unit state for every VM, bytes (null before the policy thread's first answer)" })),
    },
    { description: "one decision for the host: the tiered VMs whose rounds are due are decided in one call of the policy over the host's DRAM pool, as the simulator decides its VMs" },
  ),
  vms: Type.Array(VmEngineResponse),
});

function noEngine(): never {
  throw new VmtierError('NOT_FOUND', 'the tiering engine is not running in this service');
}

export const engineRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const ctx = app.vmtier;
  const common = { tags: ['engine'], security: [{ bearerAuth: [] }] };

  app.get(
    '/v1/engine',
    { schema: { ...common, summary: 'Tiering engine: managed VMs, trackers, last rounds, kernel coexistence', response: { 200: EngineResponse, ...errors(401, 404) } } },
    async () => (ctx.engine ?? noEngine()).status(),
  );

  app.get(
    '/v1/vms/:uuid/engine',
    {
      schema: {
        ...common,
        params: VmParams,
        summary: "One VM's tiering loop (404 when no loop manages it: not running, or filtered out)",
        response: { 200: VmEngineResponse, ...errors(400, 401, 404) },
      },
    },
    async (req) => {
      const s = (ctx.engine ?? noEngine()).vm(req.params.uuid.toLowerCase());
      if (!s) throw new VmtierError('VM_NOT_FOUND', `no tiering loop manages VM ${req.params.uuid}`);
      return s;
    },
  );
};
