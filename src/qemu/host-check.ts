/**
 * Checks a resolved layout against the host it would run on: host nodes that exist, device-dax
 * namespaces that exist and are not onlined as system RAM, big enough, and backing paths present.
 * Reads through src/host's topology (sysfs under a root that tests can point at a fixture tree).
 */
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { VmtierError } from '../errors.js';
import type { HostTopology } from '../host/topology.js';
import { layoutBackends, type GuestLayout, type ResolvedBackend } from './profile.js';
import { humanSize } from './size.js';

export interface HostCheckOptions {
  host: HostTopology;
  /** Prefix for backing paths (a fixture root in tests); default "/". */
  fsRoot?: string;
}

function fail(field: string, message: string, details?: Record<string, unknown>): never {
  throw new VmtierError('INVALID_PROFILE', `${field}: ${message}`, { field, ...details });
}

function stat(path: string) {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/** Bytes each backend maps: node RAM, or an NVDIMM's size. */
function sizesByBackend(layout: GuestLayout): Map<ResolvedBackend, number> {
  const m = new Map<ResolvedBackend, number>();
  for (const n of layout.nodes) {
    m.set(n.backend, (m.get(n.backend) ?? 0) + n.sizeBytes);
  }
  for (const d of layout.nvdimms) m.set(d.backend, d.sizeBytes);
  return m;
}

/** Throws INVALID_PROFILE naming the first field this host cannot satisfy. */
export function checkLayoutForHost(layout: GuestLayout, opts: HostCheckOptions): void {
  const root = opts.fsRoot ?? '/';
  const hostNodes = new Set(opts.host.nodes.map((n) => n.node));
  const sizes = sizesByBackend(layout);
  for (const b of layoutBackends(layout)) {
    for (const h of b.hostNodes) {
      if (!hostNodes.has(h)) {
        fail(`${b.field}.hostNodes`, `host node ${h} does not exist (this host has node${hostNodes.size > 1 ? 's' : ''} ${[...hostNodes].join(', ')})`, { hostNode: h });
      }
    }
    if (b.path === null) continue;
    const path = join(root, b.path);
    const st = stat(path);
    if (b.kind === 'devdax') {
      const device = b.path.slice('/dev/'.length);
      const dax = opts.host.dax.find((d) => d.device === device);
      if (dax?.mode === 'system-ram') {
        fail(`${b.field}.path`, `${device} is onlined as system RAM${dax.targetNode !== null ? ` of host node ${dax.targetNode}` : ''} (kmem); reconfigure it to devdax or use a ram/memfd backend with hostNodes [${dax.targetNode ?? '?'}]`, { device });
      }
      if (!st) fail(`${b.field}.path`, `${b.path} does not exist${dax ? '' : ' (no such device under /sys/bus/dax/devices)'}`);
      if (!st.isCharacterDevice()) fail(`${b.field}.path`, `${b.path} is not a character device`);
      const need = sizes.get(b) ?? 0;
      if (dax && dax.sizeBytes > 0 && dax.sizeBytes < need) {
        fail(`${b.field}.path`, `${device} has ${humanSize(dax.sizeBytes)}, the profile maps ${humanSize(need)}`, { sizeBytes: dax.sizeBytes, needBytes: need });
      }
    } else if (b.kind === 'hugetlbfs') {
      if (!st?.isDirectory()) fail(`${b.field}.path`, `${b.path} is not a directory (a hugetlbfs mount)`);
    } else if (b.kind === 'file') {
      // A directory (tmpfs) gets a temporary file from QEMU; a file path is created if missing.
      if (!st && !stat(dirname(path))?.isDirectory()) fail(`${b.field}.path`, `neither ${b.path} nor its folder exists`);
    }
  }
}
