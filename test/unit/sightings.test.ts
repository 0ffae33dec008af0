// How the store follows an inventory (src/service/sightings.ts): start listing, lifecycle events, reconnects. The VM
// side is the InMemoryInventory (events on demand); the store is a real SQLite file. The
// same path on real libvirtd events is covered by test/integration/serve.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { recordSightings } from '../../src/service/sightings.js';
import { Store } from '../../src/store/store.js';
import { InMemoryInventory } from '../helpers/memory-inventory.js';

const U1 = '11111111-1111-4111-8111-111111111111';
const U2 = '22222222-2222-4222-8222-222222222222';

function vm(uuid: string, name: string) {
  return {
    summary: { uuid, name, id: 1, state: 'running' as const },
    numa: {
      domain: { name, uuid, pid: 1 },
      nodes: [{ node: 0, cpus: '0', sizeBytes: 4096, backing: { kind: 'memfd' as const, path: null, id: 'ram-node0', migratable: true }, hva: [{ start: 4096, end: 8192 }] }],
    },
  };
}

test('sightings: initial listing, started/stopped events, relisting after a reconnect', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-sight-'));
  const store = Store.open(join(dir, 's.db'));
  const inv = new InMemoryInventory();
  let clock = 1000;
  inv.add(vm(U1, 'one'));
  const s = recordSightings(inv, store, { now: () => clock, refreshMs: 3600_000 });
  t.after(() => {
    s.stop();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await s.initial;
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(store.getVm(U1), { uuid: U1, name: 'one', firstSeen: 1000, lastSeen: 1000 });
  assert.equal(store.guestNodes(U1).length, 1, 'guest layout recorded for a VM seen for the first time');

  clock = 2000;
  inv.add(vm(U2, 'two'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(store.getVm(U2), { uuid: U2, name: 'two', firstSeen: 2000, lastSeen: 2000 });
  assert.equal(store.guestNodes(U2)[0].backing.id, 'ram-node0');

  clock = 3000;
  inv.remove(U2);
  assert.equal(store.getVm(U2)?.lastSeen, 3000);

  // While libvirtd is away nothing is recorded; on reconnect every running VM is seen again.
  inv.down = true;
  inv.emit({ type: 'disconnected' });
  clock = 9000;
  inv.down = false;
  inv.emit({ type: 'reconnected' });
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(store.getVm(U1), { uuid: U1, name: 'one', firstSeen: 1000, lastSeen: 9000 });
  assert.equal(store.getVm(U2)?.lastSeen, 3000, 'a stopped VM keeps its last sighting');

  // After stop(), events change nothing.
  s.stop();
  clock = 10_000;
  inv.add(vm(U2, 'two'));
  assert.equal(store.getVm(U2)?.lastSeen, 3000);
});

test('sightings: an unreachable libvirtd at start is not an error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-sight-'));
  const store = Store.open(join(dir, 's.db'));
  const inv = new InMemoryInventory();
  inv.down = true;
  const s = recordSightings(inv, store, { refreshMs: 3600_000 });
  t.after(() => {
    s.stop();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await s.initial;
  assert.deepEqual(store.listVms(), []);
});
