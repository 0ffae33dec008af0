// The lab's hosts as vmtier sees them: inside the guest, `vmtier host --json` must class DRAM as
// the top tier and every kmem node as slow, from the kernel's own memory tiers, and list the
// devdax spare; the three-tier host must order its two slow nodes. DAMON's vaddr sysfs must be
// usable there (raw sysfs, no vmtier code): a kdamond on the workload sees the hot set.
// (test/lab/profile-lab.test.ts checks the guest's distances and HMAT against the profiles.)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LabSession, ensureWorkload, parseWorkloadLayout, type LabTopologyName } from '../../lab/index.js';
import type { HostTopology } from '../../src/host/topology.js';

async function hostJson(lab: LabSession): Promise<HostTopology> {
  return JSON.parse(await lab.check(['node', 'bin/vmtier.js', 'host', '--json'], { timeoutMs: 120_000 })) as HostTopology;
}

const topologies: Array<{ topology: LabTopologyName; slow: number[] }> = [
  { topology: 'tiered', slow: [1] },
  { topology: 'three-tier', slow: [1, 2] },
];

for (const { topology, slow } of topologies) {
  describe(`lab host (${topology})`, { timeout: 900_000 }, () => {
    let lab: LabSession;
    before(async () => {
      ensureWorkload();
      lab = await LabSession.start({ topology });
    });
    after(async () => {
      await lab?.close();
    });

    test(`the kernel shows ${1 + slow.length} nodes; vmtier host classes node 0 top and ${slow.join(', ')} slow from the kernel's tiers`, async () => {
      assert.equal((await lab.check('cat /sys/devices/system/node/online')).trim(), `0-${slow.length}`);
      const host = await hostJson(lab);
      assert.deepEqual(host.nodes.map((n) => n.node), [0, ...slow]);
      const byNode = new Map(host.nodes.map((n) => [n.node, n]));
      assert.equal(byNode.get(0)!.tier.class, 'top');
      assert.equal(byNode.get(0)!.tier.source, 'kernel');
      assert.equal(byNode.get(0)!.cpus, '0-1');
      for (const s of slow) {
        const n = byNode.get(s)!;
        assert.equal(n.tier.class, 'slow', `node ${s}`);
        assert.equal(n.tier.source, 'kernel', `node ${s} classed from memory_tiering, not a fallback`);
        assert.equal(n.cpus, null, `node ${s} is CPU-less`);
        assert.ok(n.tier.kernelTier! > byNode.get(0)!.tier.kernelTier!, `node ${s} below DRAM`);
        // kmem onlined most of its NVDIMM (the 32 MiB seed alone would be far less).
        assert.ok(n.memTotalBytes > 256 * 2 ** 20, `node ${s} holds ${n.memTotalBytes} bytes`);
      }
      // Slower HMAT figures, lower tier: the three-tier host's CXL-like node 1 sits above PMEM-like node 2.
      for (let i = 1; i < slow.length; i++) {
        assert.ok(byNode.get(slow[i]!)!.tier.kernelTier! > byNode.get(slow[i - 1]!)!.tier.kernelTier!, 'slow tiers ordered');
      }
      assert.deepEqual(host.tiers.map((t) => t.nodes).flat().sort(), [0, ...slow]);
      // The spare NVDIMM stays devdax; one system-ram dax device per slow node.
      const devdax = host.dax.filter((d) => d.mode === 'devdax');
      assert.equal(devdax.length, 1, JSON.stringify(host.dax));
      assert.deepEqual(host.dax.filter((d) => d.mode === 'system-ram').map((d) => d.targetNode).sort(), slow);
    });

    if (topology !== 'tiered') return;

    test('DAMON vaddr sysfs: a kdamond on the workload runs, sees its hot set, and is removed', async () => {
      const script = `
set -e
.cache/lab/bin/workload --size 64m --hot 4m --rate 20 >/tmp/wl.json &
wpid=$!
while [ ! -s /tmp/wl.json ]; do sleep 0.2; done
D=/sys/kernel/mm/damon/admin/kdamonds
echo "before $(cat $D/nr_kdamonds)"
echo 1 >$D/nr_kdamonds
K=$D/0 C=$D/0/contexts/0 S=$D/0/contexts/0/schemes/0
echo 1 >$K/contexts/nr_contexts
echo vaddr >$C/operations
echo 1 >$C/targets/nr_targets
echo $wpid >$C/targets/0/pid_target
echo 1 >$C/schemes/nr_schemes
echo stat >$S/action
# 6.12: a scheme's access-pattern maxima default to 0 and would match no region.
echo 18446744073709551615 >$S/access_pattern/sz/max
echo 4294967295 >$S/access_pattern/nr_accesses/max
echo 4294967295 >$S/access_pattern/age/max
echo on >$K/state
sleep 5
echo "state $(cat $K/state) pid $(cat $K/pid)"
# Four snapshots 2 s apart: on a loaded host the first aggregations may still hold one large region
# whose sampled page fell in the cold part.
for i in 1 2 3 4; do
  echo update_schemes_tried_regions >$K/state
  for r in $S/tried_regions/[0-9]*; do echo "region $i $(cat $r/start) $(cat $r/end) $(cat $r/nr_accesses)"; done
  sleep 2
done
echo off >$K/state
echo "after $(cat $K/state)"
echo 0 >$D/nr_kdamonds
echo "left $(cat $D/nr_kdamonds)"
kill $wpid
cat /tmp/wl.json
`;
      const out = await lab.check(script, { timeoutMs: 180_000 });
      const lines = out.trim().split('\n');
      const layout = parseWorkloadLayout(lines[lines.length - 1]!);
      assert.match(out, /^before 0$/m, 'no kdamond before ours');
      const state = /^state (\w+) pid (\d+)$/m.exec(out);
      assert.ok(state, out);
      assert.equal(state[1], 'on');
      assert.ok(Number(state[2]) > 0, 'kdamond thread pid');
      assert.match(out, /^after off$/m);
      assert.match(out, /^left 0$/m);

      const all = [...out.matchAll(/^region (\d) (\d+) (\d+) (\d+)$/gm)].map((m) => ({ snap: Number(m[1]), start: Number(m[2]), end: Number(m[3]), n: Number(m[4]) }));
      assert.ok(all.length > 0, 'tried regions');
      const hot = layout.hot[0]!;
      const split = (snap: number) => {
        const inFootprint = all.filter((r) => r.snap === snap && r.start < layout.base + layout.bytes && r.end > layout.base);
        return {
          hotRegions: inFootprint.filter((r) => r.start < hot.end && r.end > hot.start),
          coldRegions: inFootprint.filter((r) => r.end <= hot.start || r.start >= hot.end),
        };
      };
      // The latest snapshot in which DAMON saw the hot set accessed.
      const seen = [4, 3, 2, 1].map(split).find((x) => x.hotRegions.some((r) => r.n > 0));
      assert.ok(seen, `DAMON saw no access in the hot set in 4 snapshots: ${JSON.stringify(split(4).hotRegions)}`);
      const { hotRegions, coldRegions } = seen;
      const regions = all;
      const avg = (rs: typeof regions) => rs.reduce((s, r) => s + r.n * (r.end - r.start), 0) / Math.max(1, rs.reduce((s, r) => s + r.end - r.start, 0));
      assert.ok(avg(hotRegions) > avg(coldRegions), `hot ${avg(hotRegions)} vs cold ${avg(coldRegions)} accesses per byte`);
    });
  });
}
