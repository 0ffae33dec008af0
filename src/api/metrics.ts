/**
 * Prometheus metrics: HTTP requests, libvirt connectivity, running VMs, and per VM the
 * newest round's hotness from the store (so the daemon only writes samples and /metrics always
 * agrees with /history). Names follow Prometheus practice: base units in the name (_bytes,
 * _seconds), _total on counters only, and per-VM series labelled vm_uuid and vm_name as
 * kubevirt's kubevirt_vmi_* are by VM; test/unit/deploy-monitoring.test.ts checks every name.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { HotnessSample, Store } from '../store/store.js';
import type { VmInventory } from '../vm/inventory.js';

export interface ApiMetrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  /** The per-VM hotness gauges as Prometheus text, appended to the registry's output. */
  perVmText: () => string;
  /** The HELP/TYPE header of every per-VM gauge (also with no VM recorded). */
  perVmHelp: () => string;
}

export function createMetrics(deps: { store: Store; inventory: VmInventory }): ApiMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'vmtier_' });
  // prom-client's gauges of active handles/requests/resources end in _total, which Prometheus
  // keeps for counters; the same figures are exported without the suffix (vmtier_nodejs_active_handles).
  for (const m of registry.getMetricsAsArray()) if (m.name.endsWith('_total') && String(m.type) !== 'counter') registry.removeSingleMetric(m.name);
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
  const perVm = new PerVmText(deps.store);
  return { registry, httpRequests, perVmText: () => perVm.text(), perVmHelp: () => PER_VM.map(([name, help]) => `# HELP ${name} ${help}\n# TYPE ${name} gauge\n`).join('') };
}

const LAST_ROUND = 'vmtier_vm_last_round_timestamp_seconds';

/** The per-VM gauges: name, help, value. The first is per VM, the others per guest node x host node. */
const PER_VM: Array<[string, string, (s: HotnessSample) => number]> = [
  [LAST_ROUND, 'time of the newest recorded round of the VM', (s) => s.t / 1000],
  ['vmtier_vm_hot_bytes', 'hot bytes in the newest round', (s) => s.hotBytes],
  ['vmtier_vm_warm_bytes', 'warm bytes in the newest round', (s) => s.warmBytes],
  ['vmtier_vm_cold_bytes', 'cold bytes in the newest round', (s) => s.coldBytes],
  ['vmtier_vm_scanned_bytes', 'bytes scanned in the newest round', (s) => s.scannedBytes],
  ['vmtier_vm_scan_duration_seconds', 'scan time of the newest round', (s) => s.scanMs / 1000],
  ['vmtier_vm_round_moved_bytes', 'bytes moved in the newest round', (s) => s.movedBytes],
  ['vmtier_vm_round_failed_pages', 'pages whose move failed in the newest round', (s) => s.failures],
];

function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** One VM's lines of each per-VM gauge (PER_VM order), each line ending in a newline. */
interface VmLines {
  name: string;
  samples: HotnessSample[];
  lines: string[];
}

function vmLines(uuid: string, name: string, samples: HotnessSample[]): VmLines {
  const vm = `vm_uuid="${label(uuid)}",vm_name="${label(name)}"`;
  const labels = samples.map((s) => `{${vm},guest_node="${s.guestNode}",host_node="${s.hostNode}",host_tier="${label(s.hostTier)}"}`);
  const lines = PER_VM.map(([metric, , pick], i) => {
    if (i === 0) return `${metric}{${vm}} ${pick(samples[0]!)}\n`;
    let out = '';
    for (let j = 0; j < samples.length; j++) out += `${metric}${labels[j]} ${pick(samples[j]!)}\n`;
    return out;
  });
  return { name, samples, lines };
}

function assemble(vms: Iterable<VmLines>): string {
  const list = [...vms];
  return PER_VM.map(([metric, help], i) => `# HELP ${metric} ${help}\n# TYPE ${metric} gauge\n${list.map((v) => v.lines[i]).join('')}`).join('');
}

/**
 * The per-VM gauges rendered from scratch: one store read of every VM's newest round. Empty while
 * the store is unreadable (vmtier_store_healthy says so) rather than stale.
 */
export function perVmText(store: Store): string {
  try {
    const names = new Map(store.listVms().map((v) => [v.uuid, v.name]));
    const byVm = new Map<string, HotnessSample[]>();
    for (const s of store.latestSamples()) {
      const list = byVm.get(s.vmUuid);
      if (list) list.push(s);
      else byVm.set(s.vmUuid, [s]);
    }
    return assemble([...byVm].map(([uuid, samples]) => vmLines(uuid, names.get(uuid) ?? '', samples)));
  } catch {
    return '';
  }
}

/**
 * The same text, kept per VM: a VM's lines are rendered again only after the store wrote one of
 * its rounds (Store.onHistoryWrite) or it was renamed; all of them after retention or a reopened
 * file; the joined text is kept until one of those happens. A scrape with 100 VMs then costs the join of their lines, not thousands of freshly
 * formatted samples (test/unit/api-metrics-cache.test.ts holds it equal to perVmText()).
 */
class PerVmText {
  private readonly vms = new Map<string, VmLines>();
  private readonly dirty = new Set<string>();
  private all = true;
  private names = new Map<string, string>();
  private namesRead = -1;
  private text_: string | null = null;

  private subscribed = false;

  constructor(private readonly store: Store) {}

  text(): string {
    try {
      // Subscribed on first use (this.all is still true then): the OpenAPI renderer builds the
      // API on a store that answers nothing.
      if (!this.subscribed) {
        this.store.onHistoryWrite((uuid) => {
          if (uuid === null) this.all = true;
          else this.dirty.add(uuid);
        });
        this.subscribed = true;
      }
      // Names are read again only after a VM was recorded (sightings, renames).
      const renamed = this.namesRead !== this.store.vmRecordWrites;
      if (!this.all && this.dirty.size === 0 && !renamed && this.text_ !== null) return this.text_;
      if (renamed) {
        const writes = this.store.vmRecordWrites;
        this.names = new Map(this.store.listVms().map((v) => [v.uuid, v.name]));
        this.namesRead = writes;
      }
      const names = this.names;
      if (this.all) {
        this.vms.clear();
        this.dirty.clear();
        this.all = false;
        const byVm = new Map<string, HotnessSample[]>();
        for (const s of this.store.latestSamples()) {
          const list = byVm.get(s.vmUuid);
          if (list) list.push(s);
          else byVm.set(s.vmUuid, [s]);
        }
        for (const [uuid, samples] of byVm) this.vms.set(uuid, vmLines(uuid, names.get(uuid) ?? '', samples));
      } else {
        for (const uuid of this.dirty) {
          const samples = this.store.latestSamplesOf(uuid);
          if (samples.length === 0) this.vms.delete(uuid);
          else this.vms.set(uuid, vmLines(uuid, names.get(uuid) ?? '', samples));
        }
        this.dirty.clear();
      }
      for (const [uuid, v] of this.vms) {
        const name = names.get(uuid) ?? '';
        if (v.name !== name) this.vms.set(uuid, vmLines(uuid, name, v.samples));
      }
      // The store's order (by uuid), whatever order the VMs were rendered in.
      this.text_ = assemble([...this.vms].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v));
      return this.text_;
    } catch {
      // Unreadable now: nothing rather than stale lines, and everything read again next time.
      this.all = true;
      this.namesRead = -1;
      this.text_ = null;
      return '';
    }
  }
}
