/**
 * From a profile spec to the concrete guest layout both renderers draw: guest nodes with sizes,
 * CPUs, backends, distances and HMAT figures. Every rule here throws INVALID_PROFILE naming the
 * field at fault, so a client can fix its spec without guessing.
 */
import { Value } from 'typebox/value';
import { VmtierError } from '../errors.js';
import { MiB, GiB, humanSize, parseSize } from './size.js';
import { ProfileSchema, type BackendSpec, type HmatSpec, type ProfileOverrides, type ProfileSpec } from './schema.js';

export interface ResolvedBackend {
  kind: BackendSpec['type'];
  path: string | null;
  hostNodes: number[];
  policy: 'bind' | 'preferred' | 'interleave' | null;
  share: boolean;
  prealloc: boolean;
  /** Alignment every size on this backend must be a multiple of. */
  alignBytes: number;
  /** QEMU align= is rendered only when the profile asked for it or the device needs it. */
  alignExplicit: boolean;
  hugepageBytes: number | null;
  pmem: boolean;
  /** Where in the profile this backend came from, for error messages. */
  field: string;
}

export interface ResolvedHmat {
  initiator: number;
  latencyNs: number;
  bandwidthBytesPerSec: number;
  cache: { sizeBytes: number; level: number; associativity: string; policy: string; lineBytes: number } | null;
}

export interface ResolvedNvdimm {
  id: string;
  /** Guest node it belongs to. */
  node: number;
  guestUse: 'kmem' | 'devdax';
  sizeBytes: number;
  labelSizeBytes: number;
  backend: ResolvedBackend;
}

export interface ResolvedNode {
  node: number;
  role: 'dram' | 'slow';
  /** 'dram' or the tier's name. */
  tier: string;
  kind: 'dram' | 'pmem' | 'cxl' | 'slow';
  /** Half-open vCPU range [start, end); null for a CPU-less node. */
  cpus: { start: number; end: number } | null;
  sizeBytes: number;
  backend: ResolvedBackend;
  hmat: ResolvedHmat | null;
}

export interface GuestLayout {
  name: string;
  description: string;
  guest: 'exposed' | 'transparent';
  machine: string;
  vcpus: number;
  /** Boot RAM: the sum of the guest nodes' memory (NVDIMMs excluded, they are device memory). */
  memoryBytes: number;
  /** DRAM share in a transparent guest: the host tiering target, not a guest node. */
  dramBytes: number;
  maxMemoryBytes: number | null;
  slots: number | null;
  hmat: boolean;
  nvdimm: boolean;
  nodes: ResolvedNode[];
  /** In device order: each tier's own `nvdimm` in tier order, then the profile's `nvdimms` list. */
  nvdimms: ResolvedNvdimm[];
  /** Every unordered pair of distinct nodes once (src < dst); QEMU and libvirt fill the mirror. */
  distances: Array<{ src: number; dst: number; value: number }>;
}

/** Guest node sizes default to this granule: guests map RAM in 2 MiB pages and THP backs it on the host. */
export const DEFAULT_ALIGN = 2 * MiB;
/** ACPI SLIT's distance of a node to itself. */
export const LOCAL_DISTANCE = 10;
const REMOTE_DRAM_DISTANCE = 21;
const DEFAULT_SLOW_DISTANCE = 20;

function fail(field: string, message: string, details?: Record<string, unknown>): never {
  throw new VmtierError('INVALID_PROFILE', `${field}: ${message}`, { field, ...details });
}

/** "/tiers/0/backend/align" -> "tiers[0].backend.align" */
function fieldOf(instancePath: string): string {
  return instancePath
    .split('/')
    .filter(Boolean)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), '');
}

/** Checks the structure of an untrusted spec (parsed YAML or JSON) and returns it typed. */
export function checkProfileSpec(input: unknown): ProfileSpec {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new VmtierError('INVALID_PROFILE', 'profile: must be a mapping of fields', { field: 'profile' });
  }
  if (Value.Check(ProfileSchema, input)) return input;
  const errors = [...Value.Errors(ProfileSchema, input)];
  // The most specific error is the deepest path; an unknown key shows as a `false` schema on that key.
  errors.sort((a, b) => b.instancePath.length - a.instancePath.length);
  const e = errors[0];
  const field = fieldOf(e.instancePath) || 'profile';
  const msg = e.keyword === 'boolean' ? 'unknown field' : e.keyword === 'required' ? `missing ${JSON.stringify((e.params as { requiredProperties?: string[] }).requiredProperties ?? [])}` : e.message;
  throw new VmtierError('INVALID_PROFILE', `${field}: ${msg}`, { field, problems: errors.slice(0, 10).map((x) => `${fieldOf(x.instancePath) || 'profile'}: ${x.message}`) });
}

function substitute(path: string, field: string, vars: Record<string, string>): string {
  return path.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const v = vars[name];
    if (v === undefined) fail(field, `unknown variable \${${name}}; pass it as vars.${name} (CLI: --var ${name}=...)`);
    return v;
  });
}

function resolveBackend(spec: BackendSpec, field: string, vars: Record<string, string>, opts: { nvdimm?: boolean } = {}): ResolvedBackend {
  const path = spec.path === undefined ? null : substitute(spec.path, `${field}.path`, vars);
  const hugepageBytes = spec.hugepageSize === undefined ? null : parseSize(spec.hugepageSize, `${field}.hugepageSize`);
  let alignBytes = spec.align === undefined ? null : parseSize(spec.align, `${field}.align`);
  if (alignBytes !== null && (alignBytes < 4096 || (alignBytes & (alignBytes - 1)) !== 0)) {
    fail(`${field}.align`, `${alignBytes} is not a power of two of at least 4096`);
  }
  if (hugepageBytes !== null && hugepageBytes !== 2 * MiB && hugepageBytes !== GiB) {
    fail(`${field}.hugepageSize`, 'x86 huge pages are 2M or 1G');
  }
  switch (spec.type) {
    case 'ram':
    case 'memfd':
      if (path !== null) fail(`${field}.path`, `a ${spec.type} backend has no path; use type file, hugetlbfs or devdax`);
      if (spec.type === 'ram' && hugepageBytes !== null) fail(`${field}.hugepageSize`, 'use type memfd or hugetlbfs for huge pages');
      break;
    case 'file':
    case 'hugetlbfs':
      if (path === null) fail(`${field}.path`, `a ${spec.type} backend needs a path`);
      break;
    case 'devdax':
      if (path === null) fail(`${field}.path`, 'a devdax backend needs a path such as /dev/dax0.0');
      if (!/^\/dev\/dax\d+\.\d+$/.test(path)) fail(`${field}.path`, `"${path}" is not a device-dax path (/dev/daxN.M)`);
      // A dax device's pages sit where the device is: binding would be ignored or refused by mbind.
      if (spec.hostNodes) fail(`${field}.hostNodes`, 'devdax memory cannot be bound to host nodes; it lives on the device\'s node');
      if (spec.share === false) fail(`${field}.share`, 'device-dax can only be mapped shared');
      alignBytes ??= 2 * MiB;
      if (alignBytes !== 2 * MiB && alignBytes !== GiB) fail(`${field}.align`, 'device-dax alignment is 2M or 1G');
      break;
  }
  if (spec.pmem && spec.type !== 'file' && spec.type !== 'devdax') fail(`${field}.pmem`, 'only file and devdax backends can be pmem');
  if (spec.policy && !spec.hostNodes) fail(`${field}.policy`, 'a policy needs hostNodes');
  if (spec.policy === 'preferred' && spec.hostNodes && spec.hostNodes.length !== 1) {
    fail(`${field}.hostNodes`, 'policy preferred takes exactly one host node');
  }
  const hostNodes = spec.hostNodes ? [...new Set(spec.hostNodes)].sort((a, b) => a - b) : [];
  const huge = spec.type === 'hugetlbfs' ? (hugepageBytes ?? 2 * MiB) : hugepageBytes;
  const explicitAlign = alignBytes !== null;
  const effectiveAlign = Math.max(alignBytes ?? 0, huge ?? 0, DEFAULT_ALIGN);
  return {
    kind: spec.type,
    path,
    hostNodes,
    policy: hostNodes.length ? (spec.policy ?? 'bind') : null,
    // devdax must be MAP_SHARED; an NVDIMM's file is shared so guest writes reach it, as on real PMEM.
    share: spec.share ?? (spec.type === 'devdax' || (opts.nvdimm === true && spec.type === 'file')),
    prealloc: spec.prealloc ?? false,
    alignBytes: effectiveAlign,
    alignExplicit: explicitAlign || spec.type === 'devdax',
    hugepageBytes: huge,
    pmem: spec.pmem ?? false,
    field,
  };
}

function checkAligned(bytes: number, backend: ResolvedBackend, field: string): void {
  if (bytes <= 0) fail(field, 'size must be more than 0');
  if (bytes % backend.alignBytes !== 0) {
    fail(field, `${bytes} bytes (${humanSize(bytes)}) is not a multiple of the alignment ${humanSize(backend.alignBytes)} of ${backend.field}`, {
      sizeBytes: bytes,
      alignBytes: backend.alignBytes,
    });
  }
}

function resolveHmat(spec: HmatSpec | undefined, field: string, defaultInitiator: number): ResolvedHmat | null {
  if (!spec) return null;
  const c = spec.cache;
  return {
    initiator: spec.initiator ?? defaultInitiator,
    latencyNs: spec.latencyNs,
    bandwidthBytesPerSec: parseSize(spec.bandwidth, `${field}.bandwidth`),
    cache: c
      ? {
          sizeBytes: parseSize(c.size, `${field}.cache.size`),
          level: c.level ?? 1,
          associativity: c.associativity ?? 'direct',
          policy: c.policy ?? 'write-back',
          lineBytes: c.line === undefined ? 64 : parseSize(c.line, `${field}.cache.line`),
        }
      : null,
  };
}

function floorTo(bytes: number, unit: number): number {
  return Math.floor(bytes / unit) * unit;
}

/**
 * Resolves a checked spec plus overrides into the guest layout. Sizes: tiers with `size` keep it,
 * DRAM is `size`, or `ratio` × memory, or what the sized tiers leave; tiers with `share` (or neither)
 * split what remains. The parts must add up to `memory` exactly.
 */
export function resolveProfile(spec: ProfileSpec, overrides: ProfileOverrides = {}): GuestLayout {
  const vars = overrides.vars ?? {};
  if (overrides.dramRatio !== undefined && !(overrides.dramRatio > 0 && overrides.dramRatio <= 1)) {
    fail('dramRatio', `${overrides.dramRatio} is not in (0, 1]`);
  }
  const dramSpec = spec.dram;
  if (dramSpec.size !== undefined && dramSpec.ratio !== undefined) fail('dram', 'give size or ratio, not both');
  const dramBackend = resolveBackend(dramSpec.backend, 'dram.backend', vars);
  const tierBackends = spec.tiers.map((t, i) => resolveBackend(t.backend, `tiers[${i}].backend`, vars));
  spec.tiers.forEach((t, i) => {
    if (t.size !== undefined && t.share !== undefined) fail(`tiers[${i}]`, 'give size or share, not both');
    const dup = spec.tiers.findIndex((o) => o.name === t.name);
    if (dup !== i) fail(`tiers[${i}].name`, `"${t.name}" is also the name of tiers[${dup}]`);
  });
  const fixedTier = spec.tiers.map((t, i) => (t.size === undefined ? null : parseSize(t.size, `tiers[${i}].size`)));
  const fixedSum = fixedTier.reduce<number>((a, b) => a + (b ?? 0), 0);
  const shareTiers = spec.tiers.map((t, i) => ({ i, w: t.share ?? 1 })).filter(({ i }) => fixedTier[i] === null);

  const memoryField = overrides.memory !== undefined ? 'memory (override)' : 'memory';
  const ratio = overrides.dramRatio ?? (overrides.dramRatio === undefined && dramSpec.size === undefined ? dramSpec.ratio : undefined);
  const dramFixed = overrides.dramRatio === undefined && dramSpec.size !== undefined ? parseSize(dramSpec.size, 'dram.size') : null;
  let total: number;
  if (overrides.memory !== undefined) total = parseSize(overrides.memory, memoryField);
  else if (spec.memory !== undefined) total = parseSize(spec.memory, 'memory');
  else if (dramFixed !== null && shareTiers.length === 0) total = dramFixed + fixedSum;
  else fail('memory', 'required when DRAM is a ratio or a tier has no size');
  if (total <= 0) fail(memoryField, 'must be more than 0');

  const dramField = overrides.dramRatio !== undefined ? 'dramRatio (override)' : ratio !== undefined ? 'dram.ratio' : dramFixed !== null ? 'dram.size' : 'memory';
  let dramBytes: number;
  if (ratio !== undefined) dramBytes = floorTo(total * ratio, dramBackend.alignBytes);
  else if (dramFixed !== null) dramBytes = dramFixed;
  else {
    if (shareTiers.length) fail('dram', 'give size or ratio when a tier has no size');
    dramBytes = total - fixedSum;
  }

  const left = total - dramBytes - fixedSum;
  const tierBytes = [...fixedTier];
  if (shareTiers.length) {
    if (left <= 0) {
      fail('tiers', `DRAM ${humanSize(dramBytes)} and sized tiers ${humanSize(fixedSum)} leave nothing of memory ${humanSize(total)} for tiers without size`);
    }
    const weight = shareTiers.reduce((a, s) => a + s.w, 0);
    let given = 0;
    shareTiers.forEach(({ i, w }, k) => {
      const bytes = k === shareTiers.length - 1 ? left - given : floorTo((left * w) / weight, tierBackends[i].alignBytes);
      tierBytes[i] = bytes;
      given += bytes;
    });
  } else if (left !== 0) {
    fail('tiers', `DRAM ${humanSize(dramBytes)} + tiers ${humanSize(fixedSum)} = ${humanSize(dramBytes + fixedSum)}, but memory is ${humanSize(total)}`, {
      memoryBytes: total,
      dramBytes,
      tierBytes: fixedSum,
    });
  }
  if (dramBytes <= 0) fail(dramField, 'leaves no DRAM');

  const dramNodes = dramSpec.nodes ?? 1;
  if (dramNodes > spec.vcpus) fail('dram.nodes', `${dramNodes} DRAM nodes need at least as many vCPUs (vcpus is ${spec.vcpus})`);

  const nvdimmSpecs = [
    ...spec.tiers.flatMap((t, i) => (t.nvdimm ? [{ tier: i, nv: t.nvdimm, field: `tiers[${i}].nvdimm` }] : [])),
    ...(spec.nvdimms ?? []).map((nv, k) => {
      const tier = spec.tiers.findIndex((t) => t.name === nv.tier);
      if (tier < 0) fail(`nvdimms[${k}].tier`, `no tier named "${nv.tier}"`);
      return { tier, nv, field: `nvdimms[${k}]` };
    }),
  ];
  const nvdimms: ResolvedNvdimm[] = nvdimmSpecs.map(({ tier, nv, field }, k) => {
    const backend = resolveBackend(nv.backend, `${field}.backend`, vars, { nvdimm: true });
    if (backend.kind !== 'file' && backend.kind !== 'devdax') fail(`${field}.backend.type`, 'an NVDIMM is backed by a file or a devdax device');
    const sizeBytes = parseSize(nv.size, `${field}.size`);
    checkAligned(sizeBytes, backend, `${field}.size`);
    const labelSizeBytes = nv.labelSize === undefined ? 128 * 1024 : parseSize(nv.labelSize, `${field}.labelSize`);
    // QEMU's minimum namespace label area (nvdimm.c: MIN_NAMESPACE_LABEL_SIZE).
    if (labelSizeBytes < 128 * 1024) fail(`${field}.labelSize`, 'must be at least 128K');
    if (labelSizeBytes >= sizeBytes) fail(`${field}.labelSize`, 'must be smaller than the NVDIMM');
    return { id: `nvdimm${k}`, node: (dramSpec.nodes ?? 1) + tier, guestUse: nv.guestUse ?? 'kmem', sizeBytes, labelSizeBytes, backend };
  });

  const layoutBase = {
    name: spec.name,
    description: spec.description ?? '',
    guest: spec.guest,
    machine: spec.machine ?? 'pc',
    vcpus: spec.vcpus,
    memoryBytes: total,
    dramBytes,
  };

  let nodes: ResolvedNode[];
  let distances: GuestLayout['distances'] = [];
  let hmat = false;
  if (spec.guest === 'transparent') {
    // One guest node; its single backend spans every tier's host nodes and the host moves pages.
    spec.tiers.forEach((t, i) => {
      if (t.hmat) fail(`tiers[${i}].hmat`, 'a transparent guest has one node; HMAT figures do not apply');
      if (t.distance !== undefined) fail(`tiers[${i}].distance`, 'a transparent guest has one node; distances do not apply');
      if (t.nvdimm) fail(`tiers[${i}].nvdimm`, 'an NVDIMM is a guest device; use guest: exposed');
      if (tierBackends[i].kind !== dramBackend.kind || tierBackends[i].path !== dramBackend.path) {
        fail(`tiers[${i}].backend.type`, `a transparent guest has one backend: must match dram.backend (${dramBackend.kind})`);
      }
      if (!tierBackends[i].hostNodes.length) fail(`tiers[${i}].backend.hostNodes`, 'a transparent tier is a set of host nodes; give hostNodes');
    });
    if (dramNodes !== 1) fail('dram.nodes', 'a transparent guest has one node');
    if (spec.nvdimms?.length) fail('nvdimms', 'an NVDIMM is a guest device; use guest: exposed');
    if (dramSpec.hmat) fail('dram.hmat', 'a transparent guest has one node; HMAT figures do not apply');
    if (spec.tiers.length && !dramBackend.hostNodes.length) fail('dram.backend.hostNodes', 'give the DRAM host nodes so the guest can be placed across tiers');
    const hostNodes = [...new Set([...dramBackend.hostNodes, ...tierBackends.flatMap((b) => b.hostNodes)])].sort((a, b) => a - b);
    const align = Math.max(dramBackend.alignBytes, ...tierBackends.map((b) => b.alignBytes));
    const backend: ResolvedBackend = {
      ...dramBackend,
      hostNodes,
      // Spanning several nodes: bind keeps pages on the tier nodes while the host chooses which.
      policy: hostNodes.length ? (hostNodes.length > 1 ? 'bind' : dramBackend.policy) : null,
      alignBytes: align,
    };
    checkAligned(total, backend, memoryField);
    nodes = [{ node: 0, role: 'dram', tier: 'dram', kind: 'dram', cpus: { start: 0, end: spec.vcpus }, sizeBytes: total, backend, hmat: null }];
    if (spec.hmat) fail('hmat', 'a transparent guest has one node; HMAT does not apply');
  } else {
    nodes = [];
    const perNode = floorTo(dramBytes / dramNodes, dramBackend.alignBytes);
    const cpusPer = Math.floor(spec.vcpus / dramNodes);
    for (let d = 0; d < dramNodes; d++) {
      const last = d === dramNodes - 1;
      const sizeBytes = last ? dramBytes - perNode * (dramNodes - 1) : perNode;
      checkAligned(sizeBytes, dramBackend, dramField);
      nodes.push({
        node: d,
        role: 'dram',
        tier: 'dram',
        kind: 'dram',
        cpus: { start: d * cpusPer, end: last ? spec.vcpus : (d + 1) * cpusPer },
        sizeBytes,
        backend: dramBackend,
        hmat: resolveHmat(dramSpec.hmat, 'dram.hmat', d),
      });
    }
    spec.tiers.forEach((t, i) => {
      const sizeBytes = tierBytes[i] as number;
      checkAligned(sizeBytes, tierBackends[i], fixedTier[i] === null ? `tiers[${i}] (share of ${memoryField})` : `tiers[${i}].size`);
      const node = dramNodes + i;
      const h = resolveHmat(t.hmat, `tiers[${i}].hmat`, 0);
      if (h && (h.initiator >= dramNodes)) {
        const what = h.initiator < dramNodes + spec.tiers.length ? 'has no CPUs' : 'does not exist';
        fail(`tiers[${i}].hmat.initiator`, `guest node ${h.initiator} ${what}; an initiator is a node with CPUs (0..${dramNodes - 1})`);
      }
      nodes.push({
        node,
        role: 'slow',
        tier: t.name,
        kind: t.kind ?? 'slow',
        cpus: null,
        sizeBytes,
        backend: tierBackends[i],
        hmat: h,
      });
    });
    if (dramSpec.hmat?.initiator !== undefined && dramSpec.hmat.initiator !== 0) {
      fail('dram.hmat.initiator', 'a DRAM node is its own initiator; leave initiator out');
    }
    const anyHmat = nodes.some((n) => n.hmat);
    hmat = spec.hmat ?? anyHmat;
    if (hmat) {
      // ACPI HMAT describes every memory node from an initiator; QEMU refuses a node without one.
      if (!dramSpec.hmat) fail('dram.hmat', 'missing: with HMAT on, the DRAM node needs latencyNs and bandwidth too');
      spec.tiers.forEach((t, i) => {
        if (!t.hmat) fail(`tiers[${i}].hmat`, 'missing: with HMAT on, every node needs latencyNs and bandwidth from its initiator');
      });
    }
    const dist = (a: ResolvedNode, b: ResolvedNode): number => {
      if (a.role === 'dram' && b.role === 'dram') return REMOTE_DRAM_DISTANCE;
      const da = a.role === 'slow' ? (spec.tiers[a.node - dramNodes].distance ?? DEFAULT_SLOW_DISTANCE) : 0;
      const db = b.role === 'slow' ? (spec.tiers[b.node - dramNodes].distance ?? DEFAULT_SLOW_DISTANCE) : 0;
      return Math.max(da, db);
    };
    for (let a = 0; a < nodes.length; a++) for (let b = a + 1; b < nodes.length; b++) distances.push({ src: a, dst: b, value: dist(nodes[a], nodes[b]) });
  }

  const nvdimmBytes = nvdimms.reduce((a, n) => a + n.sizeBytes, 0);
  let maxMemoryBytes = spec.maxMemory === undefined ? null : parseSize(spec.maxMemory, 'maxMemory');
  let slots = spec.slots ?? null;
  if (nvdimms.length) {
    if (maxMemoryBytes === null) fail('maxMemory', `required with NVDIMMs: at least memory + NVDIMMs = ${humanSize(total + nvdimmBytes)}`);
    if (slots === null) fail('slots', `required with NVDIMMs: at least ${nvdimms.length}`);
  }
  if ((maxMemoryBytes === null) !== (slots === null)) fail(maxMemoryBytes === null ? 'maxMemory' : 'slots', 'maxMemory and slots go together');
  if (maxMemoryBytes !== null && slots !== null) {
    if (maxMemoryBytes < total + nvdimmBytes) {
      fail('maxMemory', `${humanSize(maxMemoryBytes)} is less than memory + NVDIMMs = ${humanSize(total + nvdimmBytes)}`);
    }
    if (slots < nvdimms.length) fail('slots', `${slots} slots for ${nvdimms.length} NVDIMMs`);
    if (maxMemoryBytes % (2 * MiB) !== 0) fail('maxMemory', 'must be a multiple of 2M');
  } else {
    maxMemoryBytes = null;
    slots = null;
  }
  return { ...layoutBase, maxMemoryBytes, slots, hmat, nvdimm: nvdimms.length > 0, nodes, nvdimms, distances };
}

/** Every backend of a layout with the field it came from (node RAM first, then NVDIMMs). */
export function layoutBackends(layout: GuestLayout): ResolvedBackend[] {
  return [...layout.nodes.map((n) => n.backend), ...layout.nvdimms.map((d) => d.backend)];
}
