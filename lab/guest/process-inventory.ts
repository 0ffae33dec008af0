/**
 * A lab-only VmInventory that presents one plain process (the lab workload) as a running
 * one-node "VM" whose guest RAM is the given anonymous ranges. It stands in for libvirt's
 * domain discovery only: everything the Engine does with it (DAMON tracking of the real
 * process, move_pages queries, the policy, process_madvise) is the daemon's own code on a
 * real kernel. Used by the MADV_COLD experiment (madvise-cold-lab.ts), where a freestanding
 * guest would make the hot and cold sets depend on TCG-in-TCG timing instead of on the kernel.
 */
import { VmtierError } from '../../src/errors.js';
import type { InventoryEvent, VmInventory } from '../../src/vm/inventory.js';
import type { DomainSummary, GuestNodeMap, Placement } from '../../src/vm/types.js';

export interface ProcessVm {
  name: string;
  uuid: string;
  pid: number;
  /** The process's memory tracked as guest node 0, page aligned, half-open. */
  ranges: Array<{ start: number; end: number }>;
}

export class ProcessInventory implements VmInventory {
  constructor(private readonly vm: ProcessVm) {}

  private summary(): DomainSummary {
    let alive = true;
    try {
      process.kill(this.vm.pid, 0);
    } catch {
      alive = false;
    }
    return { name: this.vm.name, uuid: this.vm.uuid, id: alive ? 1 : -1, state: alive ? 'running' : 'shutoff' };
  }

  private get(nameOrUuid: string): DomainSummary {
    if (nameOrUuid !== this.vm.uuid && nameOrUuid !== this.vm.name) throw new VmtierError('VM_NOT_FOUND', `no process-backed VM ${nameOrUuid}`);
    const s = this.summary();
    if (s.state !== 'running') throw new VmtierError('VM_NOT_FOUND', `process ${this.vm.pid} of ${this.vm.name} is gone`);
    return s;
  }

  async list(): Promise<DomainSummary[]> {
    const s = this.summary();
    return s.state === 'running' ? [s] : [];
  }

  async resolve(nameOrUuid: string): Promise<DomainSummary> {
    return this.get(nameOrUuid);
  }

  /** Process-backed lab VMs are all running: the same as resolve. */
  async lookup(uuid: string): Promise<DomainSummary> {
    return this.get(uuid);
  }

  async domainXml(uuid: string): Promise<string> {
    this.get(uuid);
    throw new VmtierError('UNSUPPORTED', 'a process-backed lab VM has no domain XML');
  }

  async pid(uuid: string): Promise<number> {
    this.get(uuid);
    return this.vm.pid;
  }

  async numaMap(uuid: string): Promise<GuestNodeMap> {
    this.get(uuid);
    const sizeBytes = this.vm.ranges.reduce((s, r) => s + (r.end - r.start), 0);
    return {
      domain: { name: this.vm.name, uuid: this.vm.uuid, pid: this.vm.pid },
      nodes: [{
        node: 0,
        cpus: null,
        sizeBytes,
        backing: { kind: 'anonymous', path: null, id: 'workload', migratable: true },
        hva: this.vm.ranges.map((r) => ({ ...r })),
      }],
    };
  }

  async placement(uuid: string): Promise<Placement> {
    this.get(uuid);
    throw new VmtierError('UNSUPPORTED', 'placement of a process-backed lab VM is read with move_pages by the experiment');
  }

  /** A plain process has no domain XML: no metadata, nothing to write it to, no libvirt jobs. */
  async metadata(uuid: string, _nsUri: string): Promise<string | null> {
    this.get(uuid);
    return null;
  }
  async setMetadata(uuid: string): Promise<{ live: boolean; config: boolean }> {
    this.get(uuid);
    return { live: false, config: false };
  }
  async jobActive(uuid: string): Promise<boolean> {
    this.get(uuid);
    return false;
  }
  subscribe(_listener: (e: InventoryEvent) => void): () => void {
    return () => {};
  }

  connected(): boolean {
    return true;
  }

  async close(): Promise<void> {}
}
