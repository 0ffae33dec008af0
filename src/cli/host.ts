/** `vmtier host [--json]`: the host's NUMA nodes, memory tiers, dax devices and kernel tiering state. */
import type { Command } from 'commander';
import type { HostTopology } from '../host/topology.js';

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}

export function formatHost(t: HostTopology): string {
  const lines: string[] = [];
  lines.push('node  cpus        total        free  tier  class  (source)  distances');
  for (const n of t.nodes) {
    lines.push(
      [
        String(n.node).padEnd(4),
        (n.cpus ?? '-').padEnd(8),
        gib(n.memTotalBytes).padStart(11),
        gib(n.memFreeBytes).padStart(11),
        String(n.tier.kernelTier ?? '-').padStart(5),
        n.tier.class.padEnd(5),
        `(${n.tier.source})`.padEnd(9),
        Object.entries(n.distances).map(([k, v]) => `${k}:${v}`).join(' '),
      ].join('  '),
    );
  }
  lines.push('');
  lines.push(`memory tiers: ${t.tiers.length === 0 ? 'none (kernel without memory_tiering)' : t.tiers.map((x) => `memory_tier${x.tier}=[${x.nodes.join(',')}] ${x.class}`).join('; ')}`);
  lines.push(`dax devices: ${t.dax.length === 0 ? 'none' : t.dax.map((d) => `${d.device} ${d.mode} node ${d.targetNode ?? '?'} ${gib(d.sizeBytes)}`).join('; ')}`);
  const k = t.kernel;
  lines.push(
    `kernel: numa_balancing=${k.numaBalancing ? `${k.numaBalancing.value} (${k.numaBalancing.mode})` : 'n/a'}` +
      ` demotion_enabled=${k.demotionEnabled ?? 'n/a'} promote_rate_limit_MBps=${k.promoteRateLimitMBps ?? 'n/a'}`,
  );
  for (const w of t.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}

export function registerHost(program: Command): void {
  program
    .command('host')
    .description('show host NUMA nodes, memory tiers (top/slow), dax devices and kernel tiering state')
    .option('--json', 'print JSON')
    .option('--config <file>', 'YAML config file (tier overrides)')
    .option('--sys-root <dir>', 'sysfs root (for fixtures)', '/sys')
    .option('--proc-root <dir>', 'procfs root (for fixtures)', '/proc')
    .action(async (opts: { json?: boolean; config?: string; sysRoot: string; procRoot: string }) => {
      // Loaded on use: every command's module is imported whenever any command runs.
      const [{ loadConfig }, { readHostTopology }] = await Promise.all([import('../config.js'), import('../host/topology.js')]);
      const cfg = loadConfig({ config: opts.config });
      const t = readHostTopology({ sysRoot: opts.sysRoot, procRoot: opts.procRoot, tierOverrides: cfg.tierOverrides });
      process.stdout.write(opts.json ? `${JSON.stringify(t)}\n` : `${formatHost(t)}\n`);
    });
}
