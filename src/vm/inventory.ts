/**
 * What the API, CLI and daemon need to know about VMs, independent of how it is obtained.
 * The libvirt-backed implementation lives beside this file; the API is written against
 * this interface only.
 */
import type { DomainSummary, GuestNodeMap, Placement } from './types.js';

export type InventoryEvent =
  | { type: 'started' | 'stopped' | 'defined' | 'undefined' | 'changed'; uuid: string; name: string }
  | { type: 'disconnected' | 'reconnected' };

export interface VmInventory {
  /** Active domains. Throws LIBVIRT_UNAVAILABLE when libvirtd cannot be reached. */
  list(): Promise<DomainSummary[]>;
  /** Finds an active domain by name or uuid; throws VM_NOT_FOUND. */
  resolve(nameOrUuid: string): Promise<DomainSummary>;
  /** Domain XML of an active domain. */
  domainXml(uuid: string): Promise<string>;
  /** The verified QEMU pid of a running domain (PID_UNTRUSTED when the pid file lies). */
  pid(uuid: string): Promise<number>;
  /** Guest NUMA node → HVA ranges and backing. */
  numaMap(uuid: string): Promise<GuestNodeMap>;
  /** Resident pages of each guest node by host node. */
  placement(uuid: string): Promise<Placement>;
  /** Lifecycle events; returns an unsubscribe function. */
  subscribe(listener: (e: InventoryEvent) => void): () => void;
  /** true while connected to libvirtd. */
  connected(): boolean;
  close(): Promise<void>;
}
