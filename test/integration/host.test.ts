// The real machine, whatever its shape: every online NUMA node as sysfs and numactl report it.
// (The development machine has one node in the kernel's only tier; a KVM host with PMEM or CXL
// has several. The checks below hold on both.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import { readHostTopology } from '../../src/host/topology.js';

/** "0-2,4" → [0, 1, 2, 4], read independently of src/host. */
function expandList(text: string): number[] {
  return text.trim().split(',').filter(Boolean).flatMap((part) => {
    const [a, b] = part.split('-').map(Number);
    return b === undefined ? [a!] : Array.from({ length: b - a! + 1 }, (_, i) => a! + i);
  });
}

test('this machine: every online node, its CPUs, tier and memory as sysfs and numactl report them', () => {
  const h = readHostTopology();
  const online = expandList(readFileSync('/sys/devices/system/node/online', 'utf8'));
  assert.deepEqual(h.nodes.map((n) => n.node), online);
  const withCpus = h.nodes.filter((n) => n.cpus !== null);
  assert.equal(withCpus.flatMap((n) => expandList(n.cpus!)).length, cpus().length, 'every CPU belongs to exactly one node');
  const tiering = existsSync('/sys/devices/virtual/memory_tiering');
  for (const n of h.nodes) {
    assert.equal(n.cpus ?? '', readFileSync(`/sys/devices/system/node/node${n.node}/cpulist`, 'utf8').trim());
    // Where the kernel has memory tiers, its tier decides, not the CPU fallback.
    if (tiering) assert.equal(n.tier.source, 'kernel');
    const dist = readFileSync(`/sys/devices/system/node/node${n.node}/distance`, 'utf8').trim().split(/\s+/).map(Number);
    assert.deepEqual(n.distances, Object.fromEntries(online.map((id, i) => [String(id), dist[i]])));
    assert.ok(n.memFreeBytes >= 0 && n.memFreeBytes <= n.memTotalBytes);
  }
  // A node with CPUs is in the top tier on any host (its DRAM is what the slow tier backs).
  assert.ok(withCpus.some((n) => n.tier.class === 'top'), 'at least one CPU node is in the top tier');
  if (h.nodes.length === 1) assert.equal(h.nodes[0]!.tier.class, 'top');
  // numactl reads the same node meminfo through libnuma; sizes are in MB there.
  const r = spawnSync('numactl', ['--hardware'], { encoding: 'utf8' });
  if (r.status === 0) {
    for (const n of h.nodes) {
      const m = new RegExp(`^node ${n.node} size: (\\d+) MB`, 'm').exec(r.stdout);
      assert.ok(m, r.stdout);
      assert.equal(Math.floor(n.memTotalBytes / 2 ** 20), Number(m[1]));
    }
  }
  // Read-only: the kernel knobs are reported exactly as the files say.
  const nb = Number(readFileSync('/proc/sys/kernel/numa_balancing', 'utf8').trim());
  assert.equal(h.kernel.numaBalancing?.value, nb);
});
