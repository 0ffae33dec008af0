/**
 * The API's request and response schemas (TypeBox = JSON Schema). Routes declare these
 * first; fastify validates requests and serializes responses with them, and
 * api/openapi.yaml is generated from them.
 */
import { Type, type Static, type TSchema } from 'typebox';

export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'stable error code, e.g. VM_NOT_FOUND, INVALID_INPUT, UNAUTHORIZED, LIBVIRT_UNAVAILABLE' }),
      message: Type.String(),
    }),
  },
  { description: 'Every error, whatever the status' },
);

const Nullable = <T extends TSchema>(s: T) => Type.Union([s, Type.Null()]);
const IsoTime = Type.String({ format: 'date-time' });
const HexAddress = Type.String({ pattern: '^0x[0-9a-f]+$' });

export const VmParams = Type.Object({ uuid: Type.String({ pattern: UUID_PATTERN, description: 'libvirt domain UUID' }) });
export type VmParamsT = Static<typeof VmParams>;

// ---- /v1/host ------------------------------------------------------------------------
export const TierClass = Type.Union([Type.Literal('top'), Type.Literal('slow')]);

export const HostResponse = Type.Object({
  nodes: Type.Array(
    Type.Object({
      node: Type.Integer(),
      cpus: Nullable(Type.String({ description: 'cpulist; null for a CPU-less node' })),
      memTotalBytes: Type.Integer(),
      memFreeBytes: Type.Integer(),
      distances: Type.Record(Type.String(), Type.Integer(), { description: 'SLIT distance to each node, keyed by node id' }),
      tier: Type.Object({
        kernelTier: Nullable(Type.Integer({ description: 'N of memory_tierN (lower = faster)' })),
        class: TierClass,
        source: Type.Union([Type.Literal('kernel'), Type.Literal('cpuless'), Type.Literal('config')]),
      }),
    }),
  ),
  tiers: Type.Array(Type.Object({ tier: Type.Integer(), nodes: Type.Array(Type.Integer()), class: TierClass })),
  dax: Type.Array(
    Type.Object({
      device: Type.String(),
      mode: Type.Union([Type.Literal('devdax'), Type.Literal('system-ram'), Type.Literal('unbound')]),
      targetNode: Nullable(Type.Integer()),
      sizeBytes: Type.Integer(),
    }),
  ),
  kernel: Type.Object({
    numaBalancing: Nullable(
      Type.Object({
        value: Type.Integer(),
        mode: Type.Union([Type.Literal('off'), Type.Literal('normal'), Type.Literal('tiering'), Type.Literal('normal+tiering')]),
      }),
    ),
    demotionEnabled: Nullable(Type.Boolean()),
    promoteRateLimitMBps: Nullable(Type.Integer()),
  }),
  warnings: Type.Array(Type.String(), { description: 'ways the kernel also tiers the memory vmtier manages' }),
});

// ---- /v1/vms -------------------------------------------------------------------------
export const DomainStateSchema = Type.Union([
  Type.Literal('running'), Type.Literal('paused'), Type.Literal('shutoff'), Type.Literal('crashed'),
  Type.Literal('pmsuspended'), Type.Literal('blocked'), Type.Literal('shutdown'), Type.Literal('nostate'),
]);

export const VmSummary = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  id: Type.Integer({ description: 'libvirt domain id; -1 when not running' }),
  state: DomainStateSchema,
  running: Type.Boolean(),
  firstSeen: Nullable(IsoTime),
  lastSeen: Nullable(IsoTime),
  policy: Type.Object({
    version: Type.Integer({ description: '0 = never set (defaults apply)' }),
    mode: Type.Union([Type.Literal('off'), Type.Literal('observe'), Type.Literal('tier')]),
  }),
});

export const VmListResponse = Type.Object({ vms: Type.Array(VmSummary) });

export const BackingSchema = Type.Object({
  kind: Type.Union([Type.Literal('memfd'), Type.Literal('file'), Type.Literal('hugetlbfs'), Type.Literal('anonymous'), Type.Literal('devdax')]),
  path: Nullable(Type.String()),
  id: Type.String({ description: 'QEMU memory backend id, e.g. ram-node0' }),
  migratable: Type.Boolean(),
  reason: Type.Optional(Type.String()),
});

export const VmDetailResponse = Type.Intersect([
  VmSummary,
  Type.Object({
    guestNodes: Type.Array(
      Type.Object({ node: Type.Integer(), cpus: Nullable(Type.String()), sizeBytes: Type.Integer(), backing: BackingSchema }),
      { description: 'guest NUMA layout last recorded' },
    ),
  }),
]);

const HvaRangeSchema = Type.Object({ start: HexAddress, end: HexAddress });

export const NumaResponse = Type.Object({
  domain: Type.Object({ name: Type.String(), uuid: Type.String(), pid: Type.Integer() }),
  nodes: Type.Array(
    Type.Object({
      node: Type.Integer(),
      cpus: Nullable(Type.String()),
      sizeBytes: Type.Integer(),
      backing: BackingSchema,
      hva: Type.Array(HvaRangeSchema, { description: 'half-open [start, end) host virtual address ranges' }),
      devices: Type.Optional(
        Type.Array(
          Type.Object({ model: Type.String(), sizeBytes: Type.Integer(), backing: BackingSchema, hva: Type.Array(HvaRangeSchema) }),
          { description: 'memory devices (dimm, nvdimm) plugged into this node, each its own ramblock; absent when none' },
        ),
      ),
    }),
  ),
});

export const PlacementResponse = Type.Object({
  domain: Type.Object({ name: Type.String(), uuid: Type.String(), pid: Type.Integer() }),
  nodes: Type.Array(
    Type.Object({
      node: Type.Integer({ description: 'guest node' }),
      pagesByHostNode: Type.Record(Type.String(), Type.Integer(), { description: 'resident 4 KiB pages per host node' }),
      pagesByTier: Type.Object({ top: Type.Integer(), slow: Type.Integer() }),
      notPresentPages: Type.Integer(),
      errors: Type.Record(Type.String(), Type.Integer()),
      totalPages: Type.Integer(),
    }),
  ),
});

export const HistoryQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ description: 'ISO 8601 time or ms since epoch; default: to - 1 h' })),
    to: Type.Optional(Type.String({ description: 'ISO 8601 time or ms since epoch; default: now' })),
    step: Type.Optional(Type.String({ description: 'bucket width: ms, or a number with s/m/h/d; default: (to - from) / 60. Buckets start at multiples of the step since the epoch; a step that is a multiple of 1m, 5m or 1h is answered from rollups' })),
    source: Type.Optional(
      Type.Union([Type.Literal('auto'), Type.Literal('raw')], { description: 'auto (default): rollups where they fit; raw: aggregate raw rows only (slow; equal answer, for checking)' }),
    ),
  },
  { additionalProperties: false },
);
export type HistoryQueryT = Static<typeof HistoryQuery>;

export const HistoryResponse = Type.Object({
  uuid: Type.String(),
  from: IsoTime,
  to: IsoTime,
  stepMs: Type.Integer(),
  series: Type.Array(
    Type.Object({
      guestNode: Type.Integer(),
      hostNode: Type.Integer(),
      hostTier: TierClass,
      buckets: Type.Array(
        Type.Object({
          start: IsoTime,
          hotBytes: Type.Integer(),
          warmBytes: Type.Integer(),
          coldBytes: Type.Integer(),
          scannedBytes: Type.Integer(),
          scanMs: Type.Number(),
          movedBytes: Type.Integer(),
          failures: Type.Integer(),
          samples: Type.Integer({ description: 'rounds averaged into this bucket' }),
        }),
      ),
    }),
  ),
});

export const HealthResponse = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
  libvirt: Type.Object({ connected: Type.Boolean() }),
  db: Type.Object({
    schemaVersion: Type.Integer(),
    ok: Type.Boolean(),
    mode: Type.Union([Type.Literal('read-write'), Type.Literal('read-only'), Type.Literal('unavailable')]),
    error: Type.Union([Type.String(), Type.Null()], { description: 'the storage fault while degraded (disk full, read-only, corrupted file)' }),
    droppedWrites: Type.Integer({ description: 'history writes dropped because of storage faults since start' }),
  }),
  uptimeSeconds: Type.Number(),
});

/** Error responses a route can give, for the OpenAPI document. */
export function errors(...statuses: Array<400 | 401 | 404 | 503>): Record<number, typeof ErrorResponse> {
  return Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));
}
