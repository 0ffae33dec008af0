// /metrics keeps each VM's per-VM gauge lines until the store writes a round of that VM
// (src/api/metrics.ts PerVmText). These tests hold the kept text equal to a fresh render after
// rounds, renames, new VMs and retention, and show a new round changes the next scrape.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMetrics, perVmText } from '../../src/api/metrics.js';
import { Store, type HotnessSample } from '../../src/store/store.js';
import type { VmInventory } from '../../src/vm/inventory.js';

const inventory = { connected: () => true, list: async () => [] } as unknown as VmInventory;
const uuid = (i: number) => `c0000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;

function round(vm: number, t: number, hot: number): HotnessSample[] {
  return [0, 1].map((h) => ({
    t, vmUuid: uuid(vm), guestNode: 0, hostNode: h, hostTier: h === 0 ? 'top' as const : 'slow' as const,
    hotBytes: hot + h, warmBytes: 4096, coldBytes: 8192 * (vm + 1), scannedBytes: 1 << 20, scanMs: 2.5 + vm, movedBytes: 4096 * h, failures: h,
  }));
}

test('/metrics per-VM text: the kept text equals a fresh render after rounds, renames, new VMs and retention', () => {
  const store = Store.open(':memory:');
  try {
    const m = createMetrics({ store, inventory });
    for (let v = 0; v < 5; v++) store.recordVmSeen(uuid(v), `vm-${v}`, 0);
    for (let v = 0; v < 5; v++) store.insertSamples(round(v, 10_000, 1000 * v));
    assert.equal(m.perVmText(), perVmText(store));
    let previous = m.perVmText();
    for (let r = 2; r < 12; r++) {
      // One VM's round per step, in a different order each time.
      const v = (r * 3) % 5;
      store.insertSamples(round(v, r * 10_000, 7777 * r));
      const now = m.perVmText();
      assert.equal(now, perVmText(store), `after round ${r} of vm-${v}`);
      assert.notEqual(now, previous, `round ${r} of vm-${v} changed nothing`);
      assert.match(now, new RegExp(`^vmtier_vm_hot_bytes\\{vm_uuid="${uuid(v)}",vm_name="vm-${v}",guest_node="0",host_node="0",host_tier="top"\\} ${7777 * r}$`, 'm'));
      previous = now;
    }
    store.recordVmSeen(uuid(2), 'renamed', 200_000);
    assert.match(m.perVmText(), /vm_name="renamed"/);
    assert.equal(m.perVmText(), perVmText(store));
    store.recordVmSeen(uuid(9), 'vm-9', 0);
    store.insertSamples(round(9, 5_000, 1));
    assert.equal(m.perVmText(), perVmText(store));
    store.applyRetention(1_000_000, { fullResolutionMs: 0, coarseStepMs: 60_000, maxAgeMs: 10 });
    assert.equal(m.perVmText(), perVmText(store));
  } finally {
    store.close();
  }
});
