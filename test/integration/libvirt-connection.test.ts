/**
 * The libvirt binding against real daemons: lifecycle events from the system libvirtd, and
 * loss/recovery of a PRIVATE libvirtd (test/helpers/libvirtd.ts) — the system daemon is
 * shared and never stopped by tests.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { LibvirtConnection } from '../../src/libvirt/connection.js';
import { createLibvirtInventory } from '../../src/vm/libvirt-inventory.js';
import type { InventoryEvent } from '../../src/vm/inventory.js';
import { destroyDomains, startDomain } from '../helpers/domains.js';
import { startPrivateLibvirtd, type PrivateLibvirtd } from '../helpers/libvirtd.js';

const PREFIX = 'vmtier-test-a-';

/** Resolves with the first event matching `pred`, or rejects after `ms`. */
function waitFor(events: InventoryEvent[], pred: (e: InventoryEvent) => boolean, ms: number, what: string): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (events.some(pred)) return resolve(Date.now() - t0);
      if (Date.now() - t0 > ms) return reject(new Error(`no ${what} within ${ms} ms; saw ${JSON.stringify(events)}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

after(async () => {
  await destroyDomains(PREFIX);
});

describe('libvirt connection', () => {
  test('lifecycle events: a started and a destroyed domain are seen within 2 s, and list() agrees', async () => {
    const inv = createLibvirtInventory({});
    const events: InventoryEvent[] = [];
    inv.subscribe((e) => events.push(e));
    try {
      await inv.list(); // connected, events registered
      const d = await startDomain('two-cells-memfd.xml', PREFIX);
      const startedAfter = await waitFor(events, (e) => e.type === 'started' && 'uuid' in e && e.uuid === d.uuid, 2000, 'started event');
      assert.ok(startedAfter <= 2000);
      assert.ok((await inv.list()).some((x) => x.uuid === d.uuid && x.state === 'running' && x.id > 0));
      await d.destroy();
      await waitFor(events, (e) => e.type === 'stopped' && 'uuid' in e && e.uuid === d.uuid, 2000, 'stopped event');
      assert.ok(!(await inv.list()).some((x) => x.uuid === d.uuid));
      const started = events.find((e) => e.type === 'started')!;
      assert.equal('name' in started && started.name, d.name);
    } finally {
      await inv.close();
    }
  });

  test('XML and QMP/HMP passthrough; libvirt errors carry libvirt\'s message', async () => {
    const c = await LibvirtConnection.open({ events: false });
    const d = await startDomain('no-numa.xml', PREFIX);
    try {
      assert.match(await c.domainXml(d.uuid), new RegExp(`<name>${d.name}</name>`));
      const status = JSON.parse(await c.monitorCommand(d.uuid, '{"execute":"query-status"}'));
      assert.equal(status.return.status, 'running');
      assert.match(await c.monitorCommand(d.uuid, 'info ramblock', { hmp: true }), /pc\.ram/);
      await assert.rejects(c.domainXml('00000000-0000-0000-0000-000000000000'), (e: { code: string; message: string; details: { virErrorCode: number } }) =>
        e.code === 'LIBVIRT_ERROR' && e.details.virErrorCode === 42 && /Domain not found/.test(e.message));
    } finally {
      await d.destroy();
      await c.close();
    }
  });

  test('connections are released: opening and closing 20 times leaves no socket behind', async () => {
    const fds = () => readdirSync('/proc/self/fd').length;
    const c0 = await LibvirtConnection.open({ events: false });
    await c0.listDomains();
    await c0.close();
    await new Promise((r) => setTimeout(r, 200));
    const before = fds();
    for (let i = 0; i < 20; i++) {
      const c = await LibvirtConnection.open({ events: i % 2 === 0 });
      await c.listDomains();
      await c.close();
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(fds() <= before + 2, `fds grew from ${before} to ${fds()}`);
  });

  test('unreachable daemon: LIBVIRT_UNAVAILABLE with the reason', async () => {
    await assert.rejects(LibvirtConnection.open({ uri: 'qemu+unix:///system?socket=/nonexistent/sock', events: false }),
      (e: { code: string; message: string }) => e.code === 'LIBVIRT_UNAVAILABLE' && /nonexistent/.test(e.message));
  });

  describe('private libvirtd restart', () => {
    let d: PrivateLibvirtd;
    after(async () => { await d?.cleanup(); });

    test('daemon stops → disconnected + LIBVIRT_UNAVAILABLE; daemon returns → reconnected and working', async () => {
      d = await startPrivateLibvirtd();
      const inv = createLibvirtInventory({ uri: d.uri, probeMs: 200, backoffMs: { min: 100, max: 400 } });
      const events: InventoryEvent[] = [];
      inv.subscribe((e) => events.push(e));
      try {
        assert.deepEqual(await inv.list(), []);
        assert.equal(inv.connected(), true);
        await d.stop();
        await waitFor(events, (e) => e.type === 'disconnected', 3000, 'disconnected');
        assert.equal(inv.connected(), false);
        await assert.rejects(inv.list(), { code: 'LIBVIRT_UNAVAILABLE' });
        await d.start();
        await waitFor(events, (e) => e.type === 'reconnected', 5000, 'reconnected');
        assert.equal(inv.connected(), true);
        assert.deepEqual(await inv.list(), []);
      } finally {
        await inv.close();
      }
    });

    test('a hung daemon does not stall node: the call waits on a pool thread while timers keep firing', async () => {
      const c = await LibvirtConnection.open({ uri: d.uri, events: false });
      try {
        d.pause();
        let settled = false;
        const pending = c.listDomains().finally(() => { settled = true; });
        const t0 = Date.now();
        await new Promise((r) => setTimeout(r, 50));
        const lag = Date.now() - t0 - 50;
        assert.ok(lag < 150, `main thread stalled ${lag} ms`);
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(settled, false, 'the call is really waiting on the hung daemon');
        d.resume();
        assert.deepEqual(await pending, []);
      } finally {
        d.resume();
        await c.close();
      }
    });

    test('a daemon that hangs is declared dead by keepalive (UNAVAILABLE), and recovers when it resumes', async () => {
      const inv = createLibvirtInventory({ uri: d.uri, probeMs: 200, backoffMs: { min: 100, max: 400 }, keepAlive: { intervalSec: 1, count: 1 } });
      const events: InventoryEvent[] = [];
      inv.subscribe((e) => events.push(e));
      try {
        assert.deepEqual(await inv.list(), []);
        d.pause();
        await assert.rejects(inv.list(), { code: 'LIBVIRT_UNAVAILABLE' });
        assert.ok(events.some((e) => e.type === 'disconnected'));
        d.resume();
        await waitFor(events, (e) => e.type === 'reconnected', 5000, 'reconnected');
        assert.deepEqual(await inv.list(), []);
      } finally {
        d.resume();
        await inv.close();
      }
    });

    test('inventory created while the daemon is down starts UNAVAILABLE and recovers', async () => {
      await d.stop();
      const inv = createLibvirtInventory({ uri: d.uri, probeMs: 200, backoffMs: { min: 100, max: 400 } });
      const events: InventoryEvent[] = [];
      inv.subscribe((e) => events.push(e));
      try {
        await assert.rejects(inv.list(), { code: 'LIBVIRT_UNAVAILABLE' });
        await d.start();
        await waitFor(events, (e) => e.type === 'reconnected', 5000, 'reconnected');
        assert.deepEqual(await inv.list(), []);
      } finally {
        await inv.close();
      }
    });
  });

  test('failures at once: each failing call gets its own error (no metadata → null, unknown domain → VM_NOT_FOUND), never "unknown libvirt error"', async () => {
    const inv = createLibvirtInventory({ events: false });
    const d = await startDomain('two-cells-memfd.xml', PREFIX);
    try {
      // Both kinds fail inside libvirt, on the binding's pool threads, many at a time: the engine
      // reading a domain without vmtier's metadata while API requests name unknown VMs.
      const calls = Array.from({ length: 240 }, (_, i) => (i % 2 === 0
        ? inv.metadata(d.uuid, 'urn:x-vmtier-test:absent').then((v) => ({ kind: 'metadata', v, err: null as unknown }), (err: unknown) => ({ kind: 'metadata', v: undefined, err }))
        : inv.metadata(crypto.randomUUID(), 'urn:x-vmtier-test:absent').then((v) => ({ kind: 'lookup', v, err: null as unknown }), (err: unknown) => ({ kind: 'lookup', v: undefined, err }))));
      const results = await Promise.all(calls);
      const wrong = results.filter((r) => r.kind === 'metadata'
        ? !(r.err === null && r.v === null)
        : (r.err as { code?: string } | null)?.code !== 'VM_NOT_FOUND');
      assert.deepEqual(wrong.slice(0, 3).map((r) => `${r.kind}: ${String((r.err as Error | null)?.message ?? r.v)}`), [], `${wrong.length} of ${results.length} calls got another error`);
    } finally {
      await d.destroy();
      await inv.close();
    }
  });
});
