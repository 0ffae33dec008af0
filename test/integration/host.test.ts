// The real machine: one NUMA node with CPUs, in the kernel's only memory tier.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { readFileSync } from 'node:fs';
import { readHostTopology } from '../../src/host/topology.js';

test('this machine: one node, top tier, all CPUs, memory as numactl reports it', () => {
  const h = readHostTopology();
  assert.equal(h.nodes.length, 1);
  const n = h.nodes[0];
  assert.equal(n.node, 0);
  assert.equal(n.tier.class, 'top');
  // memory_tiering exists on 6.18: the kernel's tier decides, not the CPU fallback.
  assert.equal(n.tier.source, 'kernel');
  assert.equal(n.cpus, cpus().length === 1 ? '0' : `0-${cpus().length - 1}`);
  assert.deepEqual(n.distances, { '0': 10 });
  assert.ok(n.memFreeBytes > 0 && n.memFreeBytes <= n.memTotalBytes);
  // numactl reads the same node meminfo through libnuma; sizes are in MB there.
  const r = spawnSync('numactl', ['--hardware'], { encoding: 'utf8' });
  if (r.status === 0) {
    const m = /node 0 size: (\d+) MB/.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.equal(Math.floor(n.memTotalBytes / 2 ** 20), Number(m[1]));
  }
  // Read-only: the kernel knobs are reported exactly as the files say.
  const nb = Number(readFileSync('/proc/sys/kernel/numa_balancing', 'utf8').trim());
  assert.equal(h.kernel.numaBalancing?.value, nb);
});
