/**
 * `vmtier vms`, `vmtier numa <vm>`, `vmtier placement <vm>` (each with --json): running
 * libvirt domains, each guest NUMA node's exact HVA ranges and backing, and where the
 * resident pages of each guest node sit on the host.
 */
import type { Command } from 'commander';
import { loadConfig } from '../config.js';
import { createLibvirtInventory, type LibvirtInventory } from '../vm/libvirt-inventory.js';
import { guestNodeMapJson } from '../vm/numa-map.js';
import type { DomainSummary, GuestNodeMap, Placement } from '../vm/types.js';

interface CommonOpts {
  json?: boolean;
  uri?: string;
  config?: string;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(bytes % 2 ** 20 === 0 ? 0 : 1)} MiB`;
}

const hex = (n: number) => `0x${n.toString(16)}`;

export function formatVms(vms: DomainSummary[]): string {
  if (vms.length === 0) return 'no running domains';
  const w = Math.max(4, ...vms.map((v) => v.name.length));
  return ['NAME'.padEnd(w) + '  UUID                                  ID    STATE',
    ...vms.map((v) => `${v.name.padEnd(w)}  ${v.uuid}  ${String(v.id).padEnd(4)}  ${v.state}`)].join('\n');
}

export function formatNuma(m: GuestNodeMap): string {
  const lines = [`${m.domain.name} (${m.domain.uuid}) QEMU pid ${m.domain.pid}`, 'node  cpus      size        backing                     hva'];
  for (const n of m.nodes) {
    const b = n.backing;
    const backing = `${b.kind}${b.path ? ` ${b.path}` : ''} [${b.id}]${b.migratable ? '' : ' NOT MIGRATABLE'}`;
    lines.push([String(n.node).padEnd(4), (n.cpus ?? '-').padEnd(8), mib(n.sizeBytes).padStart(10), backing.padEnd(26),
      n.hva.map((r) => `${hex(r.start)}-${hex(r.end)}`).join(' ')].join('  '));
    if (!b.migratable && b.reason) lines.push(`      (${b.reason})`);
    for (const d of n.devices ?? []) {
      const db = d.backing;
      lines.push(`      + ${d.model} ${mib(d.sizeBytes)} ${db.kind}${db.path ? ` ${db.path}` : ''} [${db.id}]${db.migratable ? '' : ' NOT MIGRATABLE'}  ` +
        d.hva.map((r) => `${hex(r.start)}-${hex(r.end)}`).join(' '));
    }
  }
  return lines.join('\n');
}

export function formatPlacement(p: Placement): string {
  const lines = [`${p.domain.name} (${p.domain.uuid}) QEMU pid ${p.domain.pid}`, 'guest node  pages   resident by host node   not present  errors'];
  for (const n of p.nodes) {
    const byHost = Object.entries(n.pagesByHostNode).map(([h, c]) => `${h}:${c}`).join(' ') || '-';
    const errs = Object.entries(n.errors).map(([e, c]) => `${e}:${c}`).join(' ') || '-';
    lines.push(`${String(n.node).padEnd(10)}  ${String(n.totalPages).padEnd(6)}  ${byHost.padEnd(22)}  ${String(n.notPresentPages).padEnd(11)}  ${errs}`);
  }
  return lines.join('\n');
}

async function withInventory<T>(opts: CommonOpts, fn: (inv: LibvirtInventory) => Promise<T>): Promise<T> {
  const cfg = loadConfig({ config: opts.config, uri: opts.uri });
  // A one-shot command needs no event loop or reconnection: fail fast when libvirtd is down.
  const inv = createLibvirtInventory({ uri: cfg.uri, events: false });
  try {
    return await fn(inv);
  } finally {
    await inv.close();
  }
}

function common(cmd: Command): Command {
  return cmd
    .option('--json', 'print JSON')
    .option('--uri <uri>', 'libvirt URI (default qemu:///system, or VMTIER_URI / config)')
    .option('--config <file>', 'YAML config file');
}

export function registerVms(program: Command): void {
  common(program.command('vms').description('list running libvirt domains')).action(async (opts: CommonOpts) => {
    const vms = await withInventory(opts, (inv) => inv.list());
    process.stdout.write(opts.json ? `${JSON.stringify(vms)}\n` : `${formatVms(vms)}\n`);
  });
  common(program.command('numa').argument('<vm>', 'domain name or uuid')
    .description('map each guest NUMA node to its host virtual address ranges and backing')).action(async (vm: string, opts: CommonOpts) => {
    const m = await withInventory(opts, (inv) => inv.numaMap(vm));
    process.stdout.write(opts.json ? `${JSON.stringify(guestNodeMapJson(m))}\n` : `${formatNuma(m)}\n`);
  });
  common(program.command('placement').argument('<vm>', 'domain name or uuid')
    .description('count the resident pages of each guest NUMA node per host NUMA node')).action(async (vm: string, opts: CommonOpts) => {
    const p = await withInventory(opts, (inv) => inv.placement(vm, {
      onProgress: opts.json || !process.stderr.isTTY ? undefined : (done, total) => process.stderr.write(`\rpages ${done}/${total}`),
    }));
    if (!opts.json && process.stderr.isTTY) process.stderr.write('\n');
    process.stdout.write(opts.json ? `${JSON.stringify(p)}\n` : `${formatPlacement(p)}\n`);
  });
}
