/**
 * InMemoryInventory: a VmInventory held in memory, used ONLY by the inject-level API tests
 * to pin the route contract (status codes, validation, auth, error mapping) with exact,
 * controllable inputs — e.g. a 3-node guest layout or libvirtd "down" on demand. Everything
 * about real VMs is proven by the integration tests against the real LibvirtInventory,
 * libvirtd and QEMU.
 */
import { VmtierError } from '../../src/errors.js';
import type { InventoryEvent, VmInventory } from '../../src/vm/inventory.js';
import type { DomainSummary, GuestNodeMap, Placement } from '../../src/vm/types.js';

export interface MemoryVm {
  summary: DomainSummary;
  numa?: GuestNodeMap;
  placement?: Placement;
  xml?: string;
}

export class InMemoryInventory implements VmInventory {
  private vms = new Map<string, MemoryVm>();
  private listeners = new Set<(e: InventoryEvent) => void>();
  /** When true every call fails as if libvirtd were unreachable. */
  down = false;
  /** When set, numaMap() throws it (to test how unexpected failures surface). */
  numaFailure: unknown = null;

  add(vm: MemoryVm): void {
    this.vms.set(vm.summary.uuid, vm);
    this.emit({ type: 'started', uuid: vm.summary.uuid, name: vm.summary.name });
  }

  remove(uuid: string): void {
    const vm = this.vms.get(uuid);
    this.vms.delete(uuid);
    if (vm) this.emit({ type: 'stopped', uuid, name: vm.summary.name });
  }

  emit(e: InventoryEvent): void {
    for (const l of this.listeners) l(e);
  }

  private check(): void {
    if (this.down) throw new VmtierError('LIBVIRT_UNAVAILABLE', 'libvirtd is not reachable (in-memory inventory set down)');
  }

  private get(nameOrUuid: string): MemoryVm {
    this.check();
    const vm = this.vms.get(nameOrUuid) ?? [...this.vms.values()].find((v) => v.summary.name === nameOrUuid);
    if (!vm) throw new VmtierError('VM_NOT_FOUND', `no running domain ${nameOrUuid}`);
    return vm;
  }

  async list(): Promise<DomainSummary[]> {
    this.check();
    return [...this.vms.values()].map((v) => v.summary);
  }
  async resolve(nameOrUuid: string): Promise<DomainSummary> {
    return this.get(nameOrUuid).summary;
  }
  async lookup(uuid: string): Promise<DomainSummary> {
    return this.get(uuid).summary;
  }
  async domainXml(uuid: string): Promise<string> {
    return this.get(uuid).xml ?? '<domain/>';
  }
  async pid(uuid: string): Promise<number> {
    const vm = this.get(uuid);
    if (!vm.numa) throw new VmtierError('PID_UNTRUSTED', 'no pid');
    return vm.numa.domain.pid;
  }
  async numaMap(uuid: string): Promise<GuestNodeMap> {
    const vm = this.get(uuid);
    if (this.numaFailure) throw this.numaFailure;
    if (!vm.numa) throw new VmtierError('MONITOR_ERROR', 'no map');
    return vm.numa;
  }
  async placement(uuid: string): Promise<Placement> {
    const vm = this.get(uuid);
    if (!vm.placement) throw new VmtierError('MONITOR_ERROR', 'no placement');
    return vm.placement;
  }
  /** Metadata elements by `${uuid} ${nsUri}` (the in-memory stand-in for the domain's <metadata>). */
  readonly metadataStore = new Map<string, string>();
  async metadata(uuid: string, nsUri: string): Promise<string | null> {
    this.get(uuid);
    return this.metadataStore.get(`${uuid} ${nsUri}`) ?? null;
  }
  async setMetadata(uuid: string, nsUri: string, _key: string, xml: string | null): Promise<{ live: boolean; config: boolean }> {
    this.get(uuid);
    if (xml === null) this.metadataStore.delete(`${uuid} ${nsUri}`);
    else this.metadataStore.set(`${uuid} ${nsUri}`, xml);
    return { live: true, config: false };
  }
  async jobActive(uuid: string): Promise<boolean> {
    this.get(uuid);
    return false;
  }
  subscribe(listener: (e: InventoryEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  connected(): boolean {
    return !this.down;
  }
  async close(): Promise<void> {
    this.listeners.clear();
  }
}
