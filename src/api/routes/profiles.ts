/**
 * GET /v1/profiles and POST /v1/profiles/render: tiered guest profiles (qemu-profiles/) rendered as
 * a QEMU argv / command line and libvirt domain XML. An inline spec is checked by src/qemu, which
 * names the field at fault (INVALID_PROFILE -> 400).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { VmtierError } from '../../errors.js';
import { listProfiles, loadProfile } from '../../qemu/load.js';
import { checkProfileSpec } from '../../qemu/profile.js';
import { renderProfile } from '../../qemu/render.js';
import type { ProfileOverrides } from '../../qemu/schema.js';
import { errors } from '../schemas.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(s: T) => Type.Union([s, Type.Null()]);
const SizeField = Type.Union([Type.Integer({ minimum: 1 }), Type.String({ minLength: 1, maxLength: 32 })], {
  description: 'bytes, or a size with binary suffix: 64G, 512M',
});

export const ProfileSummary = Type.Object({
  name: Type.String(),
  description: Type.String(),
  guest: Type.Union([Type.Literal('exposed'), Type.Literal('transparent')]),
  vcpus: Type.Integer(),
  memory: Nullable(SizeField),
  tiers: Type.Array(Type.String(), { description: 'slow tiers by name (DRAM is implied)' }),
});

export const ProfileListResponse = Type.Object({ profiles: Type.Array(ProfileSummary) });

export const ProfileRenderBody = Type.Object(
  {
    name: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,63}$', description: 'a shipped profile (GET /v1/profiles)' })),
    spec: Type.Optional(
      Type.Object({}, { additionalProperties: true, description: 'an inline profile: the fields of qemu-profiles/*.yaml as JSON' }),
    ),
    memory: Type.Optional(SizeField),
    dramRatio: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'DRAM share of guest RAM' })),
    vars: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String({ maxLength: 4096 }), { description: 'values for ${name} in backend paths' })),
    checkHost: Type.Optional(Type.Boolean({ description: "also check host nodes, dax devices and paths against this host" })),
    domainName: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.+-]{1,64}$', description: 'name in the libvirt domain XML' })),
  },
  { additionalProperties: false, description: 'exactly one of name and spec, plus overrides' },
);

const RenderedNode = Type.Object({
  node: Type.Integer(),
  tier: Type.String({ description: "'dram' or the tier's name" }),
  cpus: Nullable(Type.String({ description: 'guest cpulist; null for a CPU-less node' })),
  sizeBytes: Type.Integer(),
  backend: Type.String(),
  hostNodes: Type.Array(Type.Integer()),
  latencyNs: Nullable(Type.Integer()),
  bandwidthBytesPerSec: Nullable(Type.Integer()),
});

export const ProfileRenderResponse = Type.Object({
  name: Type.String(),
  qemuArgs: Type.Array(Type.String(), { description: 'argv after the binary: -machine, -m, -smp, memory backends, -numa, nvdimm devices' }),
  qemuCommandLine: Type.String({ description: 'the same, shell-quoted, with qemu-system-x86_64 in front' }),
  libvirtXml: Type.String({ description: 'a whole minimal libvirt domain with this memory topology' }),
  libvirtFragments: Type.Object({
    memory: Type.String(),
    memoryBacking: Nullable(Type.String()),
    numatune: Nullable(Type.String()),
    cpu: Type.String(),
    memoryDevices: Type.Array(Type.String()),
  }),
  warnings: Type.Array(Type.String(), { description: 'what libvirt cannot express of this profile' }),
  nodes: Type.Array(RenderedNode),
  nvdimms: Type.Array(Type.Object({ id: Type.String(), node: Type.Integer(), sizeBytes: Type.Integer(), path: Nullable(Type.String()), guestUse: Type.String() })),
});

export const profileRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/v1/profiles',
    {
      schema: {
        summary: 'Tiered guest profiles shipped in qemu-profiles/',
        tags: ['profiles'],
        security: [{ bearerAuth: [] }],
        response: { 200: ProfileListResponse, ...errors(401) },
      },
    },
    async () => ({
      profiles: listProfiles().map(({ spec }) => ({
        name: spec.name,
        description: spec.description ?? '',
        guest: spec.guest,
        vcpus: spec.vcpus,
        memory: spec.memory ?? null,
        tiers: spec.tiers.map((t) => t.name),
      })),
    }),
  );

  app.post(
    '/v1/profiles/render',
    {
      schema: {
        summary: 'Render a profile (by name or inline) with overrides as QEMU args and libvirt XML',
        tags: ['profiles'],
        security: [{ bearerAuth: [] }],
        body: ProfileRenderBody,
        response: { 200: ProfileRenderResponse, ...errors(400, 401, 404) },
      },
    },
    async (req) => {
      const b = req.body;
      if ((b.name === undefined) === (b.spec === undefined)) {
        throw new VmtierError('INVALID_INPUT', 'give exactly one of name and spec', { field: b.name === undefined ? 'name' : 'spec' });
      }
      const spec = b.name !== undefined ? loadProfile(b.name).spec : checkProfileSpec(b.spec);
      const overrides: ProfileOverrides = { memory: b.memory, dramRatio: b.dramRatio, vars: b.vars };
      const r = renderProfile(spec, overrides, { host: b.checkHost ? app.vmtier.readHost() : undefined, domainName: b.domainName });
      const cpuList = (c: { start: number; end: number }) => (c.end - c.start === 1 ? `${c.start}` : `${c.start}-${c.end - 1}`);
      return {
        name: spec.name,
        qemuArgs: r.qemuArgs,
        qemuCommandLine: r.qemuCommandLine,
        libvirtXml: r.libvirtXml,
        libvirtFragments: r.libvirtFragments,
        warnings: r.warnings,
        nodes: r.layout.nodes.map((n) => ({
          node: n.node,
          tier: n.tier,
          cpus: n.cpus ? cpuList(n.cpus) : null,
          sizeBytes: n.sizeBytes,
          backend: n.backend.kind,
          hostNodes: n.backend.hostNodes,
          latencyNs: n.hmat?.latencyNs ?? null,
          bandwidthBytesPerSec: n.hmat?.bandwidthBytesPerSec ?? null,
        })),
        nvdimms: r.layout.nvdimms.map((d) => ({ id: d.id, node: d.node, sizeBytes: d.sizeBytes, path: d.backend.path, guestUse: d.guestUse })),
      };
    },
  );
};
