/**
 * What the API, CLI and daemon need to know about VMs, independent of how it is obtained.
 * The libvirt-backed implementation lives beside this file; the API is written against
 * this interface only.
 */
import type { DomainSummary, GuestNodeMap, Placement } from './types.js';

export type InventoryEvent =
  | { type: 'started' | 'stopped' | 'defined' | 'undefined' | 'changed'; uuid: string; name: string }
  | { type: 'disconnected' | 'reconnected' }
  /** The domain's metadata element of namespace `nsUri` changed (null: libvirt did not say which). */
  | { type: 'metadata'; uuid: string; name: string; nsUri: string | null }
  /** A live migration out of this host started pass `iteration` over guest memory. */
  | { type: 'migrating'; uuid: string; name: string; iteration: number };

/** Where a metadata write landed: the running domain, its persistent definition. */
export interface MetadataWrite {
  live: boolean;
  config: boolean;
}

export interface VmInventory {
  /** Active domains. Throws LIBVIRT_UNAVAILABLE when libvirtd cannot be reached. */
  list(): Promise<DomainSummary[]>;
  /** Finds an active domain by name or uuid; throws VM_NOT_FOUND. */
  resolve(nameOrUuid: string): Promise<DomainSummary>;
  /**
   * Any domain libvirt knows by uuid, running or only defined (a shut-off VM's policy can be set
   * ahead of its start); throws VM_NOT_FOUND.
   */
  lookup(uuid: string): Promise<DomainSummary>;
  /** Domain XML of an active domain. */
  domainXml(uuid: string): Promise<string>;
  /** The verified QEMU pid of a running domain (PID_UNTRUSTED when the pid file lies). */
  pid(uuid: string): Promise<number>;
  /** Guest NUMA node → HVA ranges and backing. */
  numaMap(uuid: string): Promise<GuestNodeMap>;
  /** Resident pages of each guest node by host node. */
  placement(uuid: string): Promise<Placement>;
  /** vmtier's metadata element of namespace `nsUri` (any domain libvirt knows, by uuid), or null. */
  metadata(uuid: string, nsUri: string): Promise<string | null>;
  /**
   * Writes (or with null removes) that element: live on a running domain, and in the persistent
   * definition when there is one (`live: false` / `config: false` leave one out).
   */
  setMetadata(uuid: string, nsUri: string, key: string, xml: string | null, opts?: { live?: boolean; config?: boolean }): Promise<MetadataWrite>;
  /** true while an asynchronous job (outgoing migration, save, dump) runs on the domain. */
  jobActive(uuid: string): Promise<boolean>;
  /** Lifecycle events; returns an unsubscribe function. */
  subscribe(listener: (e: InventoryEvent) => void): () => void;
  /** true while connected to libvirtd. */
  connected(): boolean;
  close(): Promise<void>;
}
