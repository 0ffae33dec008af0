/**
 * VmInventory backed by a real libvirtd: domains and lifecycle events from src/libvirt,
 * guest NUMA → HVA from the domain XML + QEMU monitor + /proc, placement via move_pages.
 *
 * The list is always read live from libvirtd (one RPC per domain), so a domain started or
 * destroyed is visible at once; events are forwarded to subscribers for those who cache.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { VmtierError, isVmtierError } from '../errors.js';
import { DOMAIN_STATES, LIFECYCLE_EVENTS, LibvirtConnection, DEFAULT_URI, type LifecycleEvent, type MetadataChangeEvent, type MigrationIterationEvent } from '../libvirt/connection.js';
import { VIR_ERR_NO_DOMAIN, VIR_ERR_OPERATION_INVALID } from '../libvirt/native.js';
import { qemuPid, qemuRunDir } from '../libvirt/pid.js';
import { parseDomainXml } from './domain-xml.js';
import type { InventoryEvent, MetadataWrite, VmInventory } from './inventory.js';
import { buildGuestNodeMap } from './numa-map.js';
import { measurePlacement, type PlacementOptions } from './placement.js';
import type { DomainState, DomainSummary, GuestNodeMap, Placement } from './types.js';

export interface LibvirtInventoryOptions {
  uri?: string;
  logger?: Logger;
  /** Run libvirt's event loop (events, reconnect). Default true; the CLI turns it off. */
  events?: boolean;
  /** Where the qemu driver writes <name>.pid; derived from the URI by default. */
  runDir?: string;
  /** Liveness probe period and reconnect backoff (ms), passed to the connection. */
  probeMs?: number;
  backoffMs?: { min: number; max: number };
  /** libvirt keepalive (detects a hung daemon); see LibvirtConnectionOptions. */
  keepAlive?: { intervalSec: number; count: number };
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function eventType(e: LifecycleEvent): 'started' | 'stopped' | 'defined' | 'undefined' | 'changed' {
  switch (LIFECYCLE_EVENTS[e.event]) {
    case 'started': return 'started';
    case 'stopped': return 'stopped';
    case 'defined': return 'defined';
    case 'undefined': return 'undefined';
    default: return 'changed';
  }
}

export class LibvirtInventory implements VmInventory {
  readonly uri: string;
  private readonly log?: Logger;
  private readonly runDir: string;
  private readonly listeners = new Set<(e: InventoryEvent) => void>();
  private conn: LibvirtConnection | null = null;
  private readonly ready: Promise<void>;
  private openError: unknown = null;
  private closed = false;

  constructor(opts: LibvirtInventoryOptions = {}) {
    this.uri = opts.uri ?? DEFAULT_URI;
    this.log = opts.logger;
    this.runDir = opts.runDir ?? qemuRunDir(this.uri);
    const events = opts.events ?? true;
    this.ready = LibvirtConnection.open({
      uri: this.uri, events, reconnect: events, logger: opts.logger, probeMs: opts.probeMs, backoffMs: opts.backoffMs, keepAlive: opts.keepAlive,
    }).then(
      (c) => {
        this.conn = c;
        c.on('lifecycle', (e: LifecycleEvent) => this.emit({ type: eventType(e), uuid: e.uuid, name: e.name }));
        c.on('metadata', (e: MetadataChangeEvent) => this.emit({ type: 'metadata', uuid: e.uuid, name: e.name, nsUri: e.nsUri }));
        c.on('migration-iteration', (e: MigrationIterationEvent) => this.emit({ type: 'migrating', uuid: e.uuid, name: e.name, iteration: e.iteration }));
        c.on('disconnected', () => this.emit({ type: 'disconnected' }));
        c.on('reconnected', () => this.emit({ type: 'reconnected' }));
        if (this.closed) void c.close();
      },
      (e) => { this.openError = e; },
    );
  }

  private emit(e: InventoryEvent): void {
    this.log?.debug({ event: e }, 'inventory event');
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.log?.error({ err }, 'inventory listener failed');
      }
    }
  }

  private async connection(): Promise<LibvirtConnection> {
    await this.ready;
    if (this.conn && !this.closed) return this.conn;
    if (this.openError) throw this.openError;
    throw new VmtierError('LIBVIRT_UNAVAILABLE', `inventory for ${this.uri} is closed`);
  }

  /** libvirt's "no such domain" / "not running" become the domain-model codes. */
  private mapError(e: unknown, what: string): unknown {
    if (isVmtierError(e, 'LIBVIRT_ERROR')) {
      const code = e.details?.virErrorCode;
      if (code === VIR_ERR_NO_DOMAIN) return new VmtierError('VM_NOT_FOUND', `${what}: no such domain`, e.details, { cause: e });
      if (code === VIR_ERR_OPERATION_INVALID) return new VmtierError('VM_GONE', `${what}: domain is not running`, e.details, { cause: e });
    }
    return e;
  }

  connected(): boolean {
    return this.conn?.isConnected() ?? false;
  }

  async list(): Promise<DomainSummary[]> {
    const c = await this.connection();
    const doms = await c.listDomains();
    return doms
      .map((d) => ({ name: d.name, uuid: d.uuid, id: d.id, state: (DOMAIN_STATES[d.state] ?? 'nostate') as DomainState }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async resolve(nameOrUuid: string): Promise<DomainSummary> {
    const key = nameOrUuid.trim();
    const all = await this.list();
    const hit = UUID_RE.test(key) ? all.find((d) => d.uuid.toLowerCase() === key.toLowerCase()) : all.find((d) => d.name === key);
    if (!hit) throw new VmtierError('VM_NOT_FOUND', `no running domain named or with uuid ${JSON.stringify(nameOrUuid)}`, { vm: nameOrUuid });
    return hit;
  }

  async lookup(uuid: string): Promise<DomainSummary> {
    const c = await this.connection();
    try {
      const d = await c.domainByUuid(uuid);
      return { name: d.name, uuid: d.uuid, id: d.id, state: (DOMAIN_STATES[d.state] ?? 'nostate') as DomainState };
    } catch (e) {
      throw this.mapError(e, `domain ${uuid}`);
    }
  }

  async domainXml(uuid: string): Promise<string> {
    return this.xmlOf(await this.connection(), await this.resolve(uuid));
  }

  private async xmlOf(c: LibvirtConnection, d: DomainSummary): Promise<string> {
    try {
      return await c.domainXml(d.uuid);
    } catch (e) {
      throw this.mapError(e, `domain ${d.name}`);
    }
  }

  async pid(uuid: string): Promise<number> {
    const d = await this.resolve(uuid);
    return qemuPid(this.runDir, d.name, d.uuid);
  }

  async numaMap(uuid: string): Promise<GuestNodeMap> {
    const c = await this.connection();
    const d = await this.resolve(uuid);
    const config = parseDomainXml(await this.xmlOf(c, d));
    const pid = qemuPid(this.runDir, d.name, d.uuid);
    const procFile = (f: string) => () => {
      try {
        return readFileSync(`/proc/${pid}/${f}`, 'utf8');
      } catch (e) {
        throw new VmtierError('VM_GONE', `QEMU ${pid} of ${d.name} went away: ${(e as Error).message}`, { pid });
      }
    };
    try {
      return await buildGuestNodeMap({
        domain: { name: d.name, uuid: d.uuid, pid },
        config,
        monitor: { hmp: (cmd) => c.monitorCommand(d.uuid, cmd, { hmp: true }) },
        proc: { maps: procFile('maps'), smaps: procFile('smaps'), mountinfo: procFile('mountinfo') },
      });
    } catch (e) {
      throw this.mapError(e, `domain ${d.name}`);
    }
  }

  async placement(uuid: string, opts?: PlacementOptions): Promise<Placement> {
    return measurePlacement(await this.numaMap(uuid), opts);
  }

  async metadata(uuid: string, nsUri: string): Promise<string | null> {
    const c = await this.connection();
    try {
      return await c.getMetadata(uuid, nsUri);
    } catch (e) {
      throw this.mapError(e, `domain ${uuid}`);
    }
  }

  async setMetadata(uuid: string, nsUri: string, key: string, xml: string | null, opts?: { live?: boolean; config?: boolean }): Promise<MetadataWrite> {
    const c = await this.connection();
    try {
      return await c.setMetadata(uuid, nsUri, key, xml, opts);
    } catch (e) {
      throw this.mapError(e, `domain ${uuid}`);
    }
  }

  async jobActive(uuid: string): Promise<boolean> {
    const c = await this.connection();
    try {
      return await c.jobActive(uuid);
    } catch (e) {
      throw this.mapError(e, `domain ${uuid}`);
    }
  }

  subscribe(listener: (e: InventoryEvent) => void): () => void {
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    await this.ready;
    await this.conn?.close();
  }
}

/**
 * The inventory on libvirtd at `uri` (default qemu:///system). Returns at once; the first
 * calls wait for the first connection attempt. With events on (the default), an unreachable
 * daemon gives LIBVIRT_UNAVAILABLE until it comes back, then everything works again.
 */
export function createLibvirtInventory(opts: LibvirtInventoryOptions = {}): LibvirtInventory {
  return new LibvirtInventory(opts);
}
