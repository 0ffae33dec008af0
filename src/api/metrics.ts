/**
 * Prometheus metrics: HTTP requests, libvirt connectivity, running VMs, and per VM the
 * newest round's hotness from the store (read at scrape time, so the daemon only writes
 * samples and /metrics always agrees with /history).
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Store } from '../store/store.js';
import type { VmInventory } from '../vm/inventory.js';

export interface ApiMetrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
}

export function createMetrics(deps: { store: Store; inventory: VmInventory }): ApiMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'vmtier_process_' });
  const httpRequests = new Counter({
    name: 'vmtier_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  new Gauge({
    name: 'vmtier_libvirt_connected',
    help: '1 while connected to libvirtd',
    registers: [registry],
    collect() {
      this.set(deps.inventory.connected() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'vmtier_vms_running',
    help: 'running libvirt domains (absent while libvirtd is unreachable)',
    registers: [registry],
    async collect() {
      this.reset();
      try {
        this.set((await deps.inventory.list()).length);
      } catch {
        // libvirtd down: no value rather than a wrong one.
      }
    },
  });
  new Gauge({
    name: 'vmtier_store_healthy',
    help: '1 while the database takes writes; 0 while degraded (disk full, read-only, corrupted file)',
    registers: [registry],
    collect() {
      this.set(deps.store.health().ok ? 1 : 0);
    },
  });
  // A counter read from the store at scrape time (the store counts; prom-client only exports).
  new Counter({
    name: 'vmtier_store_dropped_writes_total',
    help: 'history writes (samples, migration log, sightings) dropped because of storage faults',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(deps.store.health().droppedWrites);
    },
  });
  const labels = ['vm', 'guest_node', 'host_node', 'host_tier'] as const;
  const perVm: Array<[string, string, (s: ReturnType<Store['latestSamples']>[number]) => number]> = [
    ['vmtier_vm_hot_bytes', 'hot bytes in the newest round', (s) => s.hotBytes],
    ['vmtier_vm_warm_bytes', 'warm bytes in the newest round', (s) => s.warmBytes],
    ['vmtier_vm_cold_bytes', 'cold bytes in the newest round', (s) => s.coldBytes],
    ['vmtier_vm_scanned_bytes', 'bytes scanned in the newest round', (s) => s.scannedBytes],
    ['vmtier_vm_scan_ms', 'scan time of the newest round in ms', (s) => s.scanMs],
    ['vmtier_vm_round_moved_bytes', 'bytes moved in the newest round', (s) => s.movedBytes],
    ['vmtier_vm_round_failures', 'failed page moves in the newest round', (s) => s.failures],
  ];
  // Registered before the per-VM gauges: prom-client collects in registration order, and
  // this one's collect fills them from one store read per scrape.
  const gauges: Array<{ g: Gauge<(typeof labels)[number]>; pick: (typeof perVm)[number][2] }> = [];
  new Gauge({
    name: 'vmtier_vm_last_round_timestamp_seconds',
    help: 'time of the newest recorded round per VM',
    labelNames: ['vm'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const { g } of gauges) g.reset();
      let latest: ReturnType<Store['latestSamples']>;
      try {
        latest = deps.store.latestSamples();
      } catch {
        return; // unreadable store: vmtier_store_healthy says so; no stale values
      }
      for (const s of latest) {
        const l = { vm: s.vmUuid, guest_node: String(s.guestNode), host_node: String(s.hostNode), host_tier: s.hostTier };
        for (const { g, pick } of gauges) g.set(l, pick(s));
        this.set({ vm: s.vmUuid }, s.t / 1000);
      }
    },
  });
  for (const [name, help, pick] of perVm) gauges.push({ g: new Gauge({ name, help, labelNames: labels, registers: [registry] }), pick });
  return { registry, httpRequests };
}
