/**
 * Fixture sysfs/procfs trees of tiered hosts. A host with several memory tiers cannot exist
 * on this one-node machine, so unit tests read these trees instead; their contents follow
 * what a 6.12 kernel shows (the lab's, see LAB.md): node1 CPU-less in memory_tier67, a kmem
 * dax device onlined as node 1.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface FixtureTree {
  root: string;
  sysRoot: string;
  procRoot: string;
  cleanup(): void;
}

/** files: path relative to the fixture root ("sys/..." or "proc/...") -> content; links: path -> target. */
export function writeTree(files: Record<string, string>, links: Record<string, string> = {}): FixtureTree {
  const root = mkdtempSync(join(tmpdir(), 'vmtier-host-fixture-'));
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), content);
  }
  for (const [p, target] of Object.entries(links)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    symlinkSync(target, join(root, p));
  }
  return { root, sysRoot: join(root, 'sys'), procRoot: join(root, 'proc'), cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

function meminfo(node: number, totalKb: number, freeKb: number): string {
  return `Node ${node} MemTotal:       ${totalKb} kB\nNode ${node} MemFree:        ${freeKb} kB\nNode ${node} MemUsed:        ${totalKb - freeKb} kB\nNode ${node} Active:           1024 kB\n`;
}

const N = 'sys/devices/system/node';
const T = 'sys/devices/virtual/memory_tiering';

/** The lab's topology: DRAM node 0 (2 CPUs, tier 4) and PMEM node 1 (CPU-less, tier 67, kmem dax0.0). */
export function labTwoTierHost(): FixtureTree {
  return writeTree(
    {
      [`${N}/online`]: '0-1\n',
      [`${N}/node0/cpulist`]: '0-1\n',
      [`${N}/node0/meminfo`]: meminfo(0, 2_097_152, 1_500_000),
      [`${N}/node0/distance`]: '10 28\n',
      [`${N}/node1/cpulist`]: '\n',
      [`${N}/node1/meminfo`]: meminfo(1, 900_096, 899_000),
      [`${N}/node1/distance`]: '28 10\n',
      [`${T}/memory_tier4/nodelist`]: '0\n',
      [`${T}/memory_tier67/nodelist`]: '1\n',
      'sys/bus/dax/devices/dax0.0/target_node': '1\n',
      'sys/bus/dax/devices/dax0.0/size': '1075838976\n',
      'sys/kernel/mm/numa/demotion_enabled': 'true\n',
      'proc/sys/kernel/numa_balancing': '2\n',
      'proc/sys/kernel/numa_balancing_promote_rate_limit_MBps': '65536\n',
    },
    { 'sys/bus/dax/devices/dax0.0/driver': '../../../../bus/dax/drivers/kmem' },
  );
}

/**
 * Three tiers: DRAM nodes 0 and 1 (tier 4), a CXL expander node 2 (tier 22), PMEM node 3
 * (tier 67), plus a devdax device left as a character device. numa_balancing off, and a
 * kernel without demotion_enabled.
 */
export function threeTierHost(): FixtureTree {
  return writeTree(
    {
      [`${N}/online`]: '0-3\n',
      [`${N}/node0/cpulist`]: '0-3,8-11\n',
      [`${N}/node0/meminfo`]: meminfo(0, 16_777_216, 8_000_000),
      [`${N}/node0/distance`]: '10 21 14 28\n',
      [`${N}/node1/cpulist`]: '4-7,12-15\n',
      [`${N}/node1/meminfo`]: meminfo(1, 16_777_216, 9_000_000),
      [`${N}/node1/distance`]: '21 10 24 28\n',
      [`${N}/node2/cpulist`]: '\n',
      [`${N}/node2/meminfo`]: meminfo(2, 67_108_864, 67_000_000),
      [`${N}/node2/distance`]: '14 24 10 30\n',
      [`${N}/node3/cpulist`]: '\n',
      [`${N}/node3/meminfo`]: meminfo(3, 134_217_728, 134_217_728),
      [`${N}/node3/distance`]: '28 28 30 10\n',
      [`${T}/memory_tier4/nodelist`]: '0-1\n',
      [`${T}/memory_tier22/nodelist`]: '2\n',
      [`${T}/memory_tier67/nodelist`]: '3\n',
      'sys/bus/dax/devices/dax1.0/target_node': '3\n',
      'sys/bus/dax/devices/dax1.0/size': '17179869184\n',
      'proc/sys/kernel/numa_balancing': '0\n',
    },
    { 'sys/bus/dax/devices/dax1.0/driver': '../../../../bus/dax/drivers/device_dax' },
  );
}

/** An older kernel without memory_tiering: node 1 CPU-less, no tiers, no dax. */
export function untieredKernelHost(): FixtureTree {
  return writeTree({
    [`${N}/online`]: '0-1\n',
    [`${N}/node0/cpulist`]: '0\n',
    [`${N}/node0/meminfo`]: meminfo(0, 1_048_576, 524_288),
    [`${N}/node0/distance`]: '10 20\n',
    [`${N}/node1/cpulist`]: '\n',
    [`${N}/node1/meminfo`]: meminfo(1, 1_048_576, 1_048_576),
    [`${N}/node1/distance`]: '20 10\n',
  });
}
