// The lab boots from the exposed lab profiles (qemu-profiles/lab-*.yaml, rendered by src/qemu):
// inside the guest's 6.12 kernel the slow nodes must be CPU-less, carry the profile's distances
// and HMAT figures, and sit in lower memory tiers than DRAM, in the order of their figures.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LabSession, type LabTopologyName } from '../../lab/index.js';
import { parseList } from '../../src/host/lists.js';
import { renderLabTopology, shellQuote, type GuestLayout } from '../../src/qemu/index.js';

const PROBE = `
for n in /sys/devices/system/node/node[0-9]*; do
  id=\${n##*node}
  echo "node $id cpulist $(cat $n/cpulist)"
  echo "node $id distance $(cat $n/distance)"
  echo "node $id initiators $(ls $n/access0/initiators 2>/dev/null | grep '^node' | tr '\\n' ' ')"
  echo "node $id latency $(cat $n/access0/initiators/read_latency 2>/dev/null)"
  echo "node $id bandwidth $(cat $n/access0/initiators/read_bandwidth 2>/dev/null)"
  echo "node $id memtotal_kb $(awk '/MemTotal/ {print $4}' $n/meminfo)"
done
for t in /sys/devices/virtual/memory_tiering/memory_tier*; do echo "tier \${t##*memory_tier} $(cat $t/nodelist)"; done
`;

interface GuestNode { cpulist: string; distance: number[]; initiators: string[]; latency: number | null; bandwidth: number | null; memKb: number }

function parseProbe(out: string): { nodes: Map<number, GuestNode>; tierOf: Map<number, number> } {
  const nodes = new Map<number, GuestNode>();
  const tierOf = new Map<number, number>();
  for (const line of out.split('\n')) {
    const m = /^node (\d+) (\w+) ?(.*)$/.exec(line);
    if (m) {
      const id = Number(m[1]);
      const n = nodes.get(id) ?? { cpulist: '', distance: [], initiators: [], latency: null, bandwidth: null, memKb: 0 };
      const v = m[3].trim();
      if (m[2] === 'cpulist') n.cpulist = v;
      if (m[2] === 'distance') n.distance = v.split(/\s+/).map(Number);
      if (m[2] === 'initiators') n.initiators = v ? v.split(/\s+/) : [];
      if (m[2] === 'latency') n.latency = v ? Number(v) : null;
      if (m[2] === 'bandwidth') n.bandwidth = v ? Number(v) : null;
      if (m[2] === 'memtotal_kb') n.memKb = Number(v);
      nodes.set(id, n);
    }
    const t = /^tier (\d+) (.*)$/.exec(line);
    if (t) for (const node of parseList(t[2])) tierOf.set(node, Number(t[1]));
  }
  return { nodes, tierOf };
}

function expectedDistance(layout: GuestLayout, a: number, b: number): number {
  if (a === b) return 10;
  return layout.distances.find((d) => d.src === Math.min(a, b) && d.dst === Math.max(a, b))!.value;
}

for (const topology of ['tiered', 'three-tier'] as LabTopologyName[]) {
  describe(`lab (${topology}) booted from qemu-profiles/lab-${topology}.yaml`, { timeout: 600_000 }, () => {
    test('guest sees the profile: CPU-less slow nodes, distances, HMAT, lower memory tiers', async () => {
      const lab = await LabSession.start({ topology });
      try {
        // One source of truth: the lab's QEMU command line is the profile's rendering.
        const rendered = renderLabTopology(`lab-${topology}`, { labDir: lab.runDir });
        assert.deepEqual(lab.machine.args, rendered.args);
        const cmdline = readFileSync(join(lab.runDir, 'qemu.cmdline'), 'utf8');
        assert.ok(cmdline.includes(rendered.args.map(shellQuote).join(' ')), `qemu.cmdline lacks the rendered args:\n${cmdline}`);

        const layout = rendered.layout;
        const { nodes, tierOf } = parseProbe(await lab.check(PROBE));
        assert.deepEqual([...nodes.keys()].sort(), layout.nodes.map((n) => n.node));
        const dramNodes = layout.nodes.filter((n) => n.role === 'dram');
        const slowNodes = layout.nodes.filter((n) => n.role === 'slow');
        assert.ok(slowNodes.length > 0);
        for (const n of layout.nodes) {
          const g = nodes.get(n.node)!;
          assert.equal(g.cpulist, n.cpus ? `${n.cpus.start}-${n.cpus.end - 1}` : '', `node ${n.node} CPUs`);
          assert.deepEqual(g.distance, layout.nodes.map((o) => expectedDistance(layout, n.node, o.node)), `node ${n.node} distances`);
          // The guest kernel read the profile's HMAT: latency in ns, bandwidth in MiB/s, from node 0.
          assert.deepEqual(g.initiators, ['node0'], `node ${n.node} initiators`);
          assert.equal(g.latency, n.hmat!.latencyNs, `node ${n.node} HMAT latency`);
          assert.equal(g.bandwidth, n.hmat!.bandwidthBytesPerSec / 2 ** 20, `node ${n.node} HMAT bandwidth`);
        }
        for (const n of slowNodes) {
          // The kmem NVDIMM joined its node: far more than the node's 32 MiB boot memdev.
          const kmem = layout.nvdimms.filter((d) => d.node === n.node && d.guestUse === 'kmem').reduce((a, d) => a + d.sizeBytes, 0);
          assert.ok(nodes.get(n.node)!.memKb * 1024 > n.sizeBytes + kmem * 0.75, `node ${n.node} MemTotal ${nodes.get(n.node)!.memKb} kB`);
        }
        // Memory tiers: every slow node below every DRAM node; slower figures, lower tier.
        const dramTier = Math.max(...dramNodes.map((n) => tierOf.get(n.node)!));
        for (const n of slowNodes) {
          assert.ok(tierOf.has(n.node), `node ${n.node} has no memory tier`);
          assert.ok(tierOf.get(n.node)! > dramTier, `node ${n.node} tier ${tierOf.get(n.node)} not below DRAM tier ${dramTier}`);
        }
        const cost = (n: GuestLayout['nodes'][number]) => n.hmat!.latencyNs / n.hmat!.bandwidthBytesPerSec;
        const bySlowness = [...slowNodes].sort((a, b) => cost(a) - cost(b));
        for (let i = 1; i < bySlowness.length; i++) {
          assert.ok(tierOf.get(bySlowness[i].node)! > tierOf.get(bySlowness[i - 1].node)!, `tiers not ordered by HMAT figures: ${JSON.stringify([...tierOf])}`);
        }
      } finally {
        await lab.close();
      }
    });
  });
}
