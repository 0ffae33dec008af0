/**
 * Prometheus metrics: HTTP requests, libvirt connectivity, running VMs, and per VM the
 * newest round's hotness from the store (read at scrape time, so the daemon only writes
 * samples and /metrics always agrees with /history).
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { HotnessSample, Store } from '../store/store.js';
import type { VmInventory } from '../vm/inventory.js';

export interface ApiMetrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  /** The per-VM hotness gauges as Prometheus text, appended to the registry's output. */
  perVmText: () => string;
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
  return { registry, httpRequests, perVmText: () => perVmText(deps.store) };
}

const PER_VM: Array<[string, string, (s: HotnessSample) => number]> = [
  ['vmtier_vm_hot_bytes', 'hot bytes in the newest round', (s) => s.hotBytes],
  ['vmtier_vm_warm_bytes', 'warm bytes in the newest round', (s) => s.warmBytes],
  ['vmtier_vm_cold_bytes', 'cold bytes in the newest round', (s) => s.coldBytes],
  ['vmtier_vm_scanned_bytes', 'bytes scanned in the newest round', (s) => s.scannedBytes],
  ['vmtier_vm_scan_ms', 'scan time of the newest round in ms', (s) => s.scanMs],
  ['vmtier_vm_round_moved_bytes', 'bytes moved in the newest round', (s) => s.movedBytes],
  ['vmtier_vm_round_failures', 'failed page moves in the newest round', (s) => s.failures],
];

function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/**
 * The per-VM gauges in Prometheus text format, straight from one store read: with 100 VMs these
 * are thousands of samples, and setting them one by one in prom-client gauges (label hashing,
 * then formatting) cost tens of ms per scrape. Empty while the store is unreadable
 * (vmtier_store_healthy says so) rather than stale.
 */
export function perVmText(store: Store): string {
  let latest: HotnessSample[];
  try {
    latest = store.latestSamples();
  } catch {
    return '';
  }
  const out: string[] = [];
  const lastRound = new Map<string, number>();
  const labels = latest.map((s) => {
    lastRound.set(s.vmUuid, s.t / 1000);
    return `{vm="${label(s.vmUuid)}",guest_node="${s.guestNode}",host_node="${s.hostNode}",host_tier="${s.hostTier}"}`;
  });
  out.push('# HELP vmtier_vm_last_round_timestamp_seconds time of the newest recorded round per VM', '# TYPE vmtier_vm_last_round_timestamp_seconds gauge');
  for (const [vm, t] of lastRound) out.push(`vmtier_vm_last_round_timestamp_seconds{vm="${label(vm)}"} ${t}`);
  for (const [name, help, pick] of PER_VM) {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (let i = 0; i < latest.length; i++) out.push(`${name}${labels[i]} ${pick(latest[i]!)}`);
  }
  return `${out.join('\n')}\n`;
}
