/**
 * The tiered guest profile as written in qemu-profiles/*.yaml or sent inline to the API. Structure is
 * checked with this schema; meaning (sizes adding up, alignment, HMAT initiators) in profile.ts.
 */
import { Type, type Static } from 'typebox';

export const SizeValue = Type.Union([Type.Integer({ minimum: 0 }), Type.String({ minLength: 1, maxLength: 32 })], {
  description: 'bytes, or a QEMU-style size with binary suffix: 2G, 1026M, 128K',
});

export const BackendKind = Type.Union(
  [Type.Literal('ram'), Type.Literal('memfd'), Type.Literal('file'), Type.Literal('hugetlbfs'), Type.Literal('devdax')],
  { description: 'ram: anonymous; memfd; file: a file or a tmpfs directory; hugetlbfs: a hugetlbfs mount; devdax: /dev/daxX.Y' },
);

export const BackendSchema = Type.Object(
  {
    type: BackendKind,
    path: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'file/hugetlbfs/devdax; may use ${var}' })),
    hostNodes: Type.Optional(Type.Array(Type.Integer({ minimum: 0, maximum: 1023 }), { minItems: 1, maxItems: 64 })),
    policy: Type.Optional(Type.Union([Type.Literal('bind'), Type.Literal('preferred'), Type.Literal('interleave')])),
    share: Type.Optional(Type.Boolean()),
    prealloc: Type.Optional(Type.Boolean()),
    align: Type.Optional(SizeValue),
    hugepageSize: Type.Optional(SizeValue),
    pmem: Type.Optional(Type.Boolean({ description: 'file/devdax: the path is persistent memory (QEMU pmem=on)' })),
  },
  { additionalProperties: false },
);

export const HmatCacheSchema = Type.Object(
  {
    size: SizeValue,
    level: Type.Optional(Type.Integer({ minimum: 1, maximum: 3 })),
    associativity: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('direct'), Type.Literal('complex')])),
    policy: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('write-back'), Type.Literal('write-through')])),
    line: Type.Optional(SizeValue),
  },
  { additionalProperties: false },
);

export const HmatSchema = Type.Object(
  {
    latencyNs: Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'access latency from the initiator, ns' }),
    bandwidth: SizeValue,
    initiator: Type.Optional(Type.Integer({ minimum: 0, maximum: 127, description: 'guest node with CPUs; default the first DRAM node' })),
    cache: Type.Optional(HmatCacheSchema),
  },
  { additionalProperties: false },
);

export const DramSchema = Type.Object(
  {
    size: Type.Optional(SizeValue),
    ratio: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
    nodes: Type.Optional(Type.Integer({ minimum: 1, maximum: 16, description: 'guest DRAM nodes; vCPUs and DRAM split evenly' })),
    backend: BackendSchema,
    hmat: Type.Optional(HmatSchema),
  },
  { additionalProperties: false },
);

export const NvdimmSchema = Type.Object(
  {
    size: SizeValue,
    labelSize: Type.Optional(SizeValue),
    backend: BackendSchema,
    guestUse: Type.Optional(
      Type.Union([Type.Literal('kmem'), Type.Literal('devdax')], {
        description: 'how the guest is meant to set up the namespace: onlined as node memory (kmem, default) or kept a devdax device',
      }),
    ),
  },
  { additionalProperties: false },
);

/** An extra NVDIMM on a tier's node, beyond the tier's own `nvdimm`; rendered after those, in order. */
export const ExtraNvdimmSchema = Type.Object(
  {
    tier: Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$', description: 'name of the tier whose node gets it' }),
    ...NvdimmSchema.properties,
  },
  { additionalProperties: false },
);

export const TierSchema = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' }),
    kind: Type.Optional(Type.Union([Type.Literal('pmem'), Type.Literal('cxl'), Type.Literal('slow')])),
    size: Type.Optional(SizeValue),
    share: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'weight in what DRAM and sized tiers leave' })),
    backend: BackendSchema,
    distance: Type.Optional(Type.Integer({ minimum: 11, maximum: 254 })),
    hmat: Type.Optional(HmatSchema),
    nvdimm: Type.Optional(NvdimmSchema),
  },
  { additionalProperties: false },
);

export const ProfileSchema = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,63}$' }),
    description: Type.Optional(Type.String({ maxLength: 1000 })),
    guest: Type.Union([Type.Literal('exposed'), Type.Literal('transparent')], {
      description: 'exposed: DRAM node(s) with CPUs plus CPU-less slow nodes; transparent: one guest node, the host tiers',
    }),
    machine: Type.Optional(Type.String({ pattern: '^[a-z0-9.-]{1,64}$', description: 'QEMU machine type, default pc' })),
    vcpus: Type.Integer({ minimum: 1, maximum: 1024 }),
    memory: Type.Optional(SizeValue),
    maxMemory: Type.Optional(SizeValue),
    slots: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
    hmat: Type.Optional(Type.Boolean({ description: 'default: on when any node has HMAT figures' })),
    dram: DramSchema,
    tiers: Type.Array(TierSchema, { maxItems: 16 }),
    nvdimms: Type.Optional(Type.Array(ExtraNvdimmSchema, { maxItems: 16 })),
  },
  { additionalProperties: false },
);

export type ProfileSpec = Static<typeof ProfileSchema>;
export type BackendSpec = Static<typeof BackendSchema>;
export type HmatSpec = Static<typeof HmatSchema>;
export type TierSpec = Static<typeof TierSchema>;

/** Per-render changes to a profile (CLI --memory/--dram-ratio, API body). */
export interface ProfileOverrides {
  memory?: string | number;
  dramRatio?: number;
  /** Values for ${name} in backend paths (e.g. the lab's work folder). */
  vars?: Record<string, string>;
}
