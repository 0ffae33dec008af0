/**
 * One connection to libvirtd: domains (name, uuid, id, state), domain XML, QEMU monitor
 * passthrough, lifecycle events, and reconnection after the daemon goes away.
 *
 * This layer knows no domain model: it returns strings and numbers; src/vm interprets them.
 *
 * Every call that may do RPC runs through koffi's `.async` (libuv pool) so a slow daemon
 * never stalls node's event loop. Every libvirt object obtained is freed (virDomainFree,
 * free() of returned strings, virConnectClose once no call is using the connection).
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { VmtierError } from '../errors.js';
import {
  callSync, koffi, loadLibvirt, takeHeapString, takeLastError, type LastError, type LibvirtNative, type Ptr,
  VIR_CONNECT_LIST_DOMAINS_ACTIVE, VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP,
  VIR_UUID_STRING_BUFLEN, VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
  VIR_DOMAIN_METADATA_ELEMENT, VIR_DOMAIN_AFFECT_CURRENT, VIR_DOMAIN_AFFECT_LIVE, VIR_DOMAIN_AFFECT_CONFIG,
  VIR_ERR_NO_DOMAIN, VIR_ERR_NO_DOMAIN_METADATA, VIR_DOMAIN_JOB_NONE, VIR_DOMAIN_JOB_INFO_SIZE,
} from './native.js';
import { acquireEventLoop, ensureEventImpl, releaseEventLoop } from './event-loop.js';

export const DEFAULT_URI = 'qemu:///system';

/** virDomainState as libvirt numbers it. */
export const DOMAIN_STATES = ['nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended'] as const;
/** virDomainEventType as libvirt numbers it. */
export const LIFECYCLE_EVENTS = ['defined', 'undefined', 'started', 'suspended', 'resumed', 'stopped', 'shutdown', 'pmsuspended', 'crashed'] as const;

export interface DomainInfo {
  name: string;
  uuid: string;
  /** libvirt domain id; -1 when not running. */
  id: number;
  /** virDomainState number (see DOMAIN_STATES). */
  state: number;
}

export interface LifecycleEvent {
  /** virDomainEventType number (see LIFECYCLE_EVENTS). */
  event: number;
  detail: number;
  name: string;
  uuid: string;
}

/** A domain's metadata element in namespace `nsUri` changed (virsh metadata, virsh edit, an API call). */
export interface MetadataChangeEvent {
  name: string;
  uuid: string;
  nsUri: string | null;
}

/** A live migration out of this daemon started a new pass over guest memory (1 = the first). */
export interface MigrationIterationEvent {
  name: string;
  uuid: string;
  iteration: number;
}

/** Where virDomainSetMetadata applied a change. */
export interface MetadataWrite {
  live: boolean;
  config: boolean;
}

export interface LibvirtConnectionOptions {
  uri?: string;
  /** Run libvirt's event loop: lifecycle events, keepalive, close detection. Default true. */
  events?: boolean;
  /** Keep retrying (with backoff) when the daemon is or becomes unreachable. Default = events. */
  reconnect?: boolean;
  /** Liveness probe period (virConnectIsAlive), ms. */
  probeMs?: number;
  /** Reconnect backoff: first and maximum delay, ms. */
  backoffMs?: { min: number; max: number };
  /**
   * libvirt keepalive: a daemon that stops answering (hung, not closed) is declared dead after
   * about intervalSec * (count + 1) seconds. Default 5 s x 3.
   */
  keepAlive?: { intervalSec: number; count: number };
  logger?: Logger;
}

/** A live virConnectPtr plus what must be released with it. */
interface Handle {
  conn: Ptr;
  inflight: number;
  dead: boolean;
  freed: boolean;
  lifecycleId: number;
  /** Further domain event registrations (metadata change, migration iteration). */
  eventIds: number[];
  closeCbRegistered: boolean;
  /** dispose() is deregistering callbacks: the connection must stay open until it is done. */
  releasing: boolean;
}

type AsyncFn = LibvirtNative[keyof Omit<LibvirtNative, 'types'>];

function acall(fn: AsyncFn, ...args: unknown[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    fn.async(...args, (err: unknown, res: unknown) => (err ? reject(err) : resolve(res)));
  });
}

// One registered native callback per kind for the whole process, dispatched by connection address.
const byConn = new Map<bigint, LibvirtConnection>();
let lifecycleCb: bigint | null = null;
let closeCb: bigint | null = null;
let metadataCb: bigint | null = null;
let iterationCb: bigint | null = null;

function domainIdentity(n: LibvirtNative, dom: Ptr): { name: string; uuid: string } {
  const name = n.virDomainGetName(dom) as string;
  const buf = Buffer.alloc(VIR_UUID_STRING_BUFLEN);
  n.virDomainGetUUIDString(dom, buf);
  return { name, uuid: buf.toString('latin1', 0, buf.indexOf(0)) };
}

function registerCallbacks(n: LibvirtNative): void {
  if (lifecycleCb !== null) return;
  metadataCb = koffi.register((conn: Ptr, dom: Ptr, _type: number, nsUri: string | null) => {
    const owner = byConn.get(conn);
    if (!owner) return;
    const id = domainIdentity(n, dom);
    setImmediate(() => owner.emit('metadata', { ...id, nsUri } satisfies MetadataChangeEvent));
  }, koffi.pointer(n.types.metadataChange));
  iterationCb = koffi.register((conn: Ptr, dom: Ptr, iteration: number) => {
    const owner = byConn.get(conn);
    if (!owner) return;
    const id = domainIdentity(n, dom);
    setImmediate(() => owner.emit('migration-iteration', { ...id, iteration } satisfies MigrationIterationEvent));
  }, koffi.pointer(n.types.migrationIteration));
  lifecycleCb = koffi.register((conn: Ptr, dom: Ptr, event: number, detail: number) => {
    const owner = byConn.get(conn);
    if (!owner) return 0;
    // virDomainGetName/GetUUIDString read the domain object locally: safe inside the callback.
    const name = n.virDomainGetName(dom) as string;
    const buf = Buffer.alloc(VIR_UUID_STRING_BUFLEN);
    n.virDomainGetUUIDString(dom, buf);
    const uuid = buf.toString('latin1', 0, buf.indexOf(0));
    // Deliver after the callback returns: the event thread waits for us, never make it wait on RPC.
    setImmediate(() => owner.emit('lifecycle', { event, detail, name, uuid } satisfies LifecycleEvent));
    return 0;
  }, koffi.pointer(n.types.lifecycle));
  closeCb = koffi.register((conn: Ptr, reason: number) => {
    const owner = byConn.get(conn);
    if (owner) setImmediate(() => owner.connectionLost(conn, `closed by libvirt (reason ${reason})`));
  }, koffi.pointer(n.types.close));
}

export class LibvirtConnection extends EventEmitter {
  readonly uri: string;
  private readonly n: LibvirtNative;
  private readonly events: boolean;
  private readonly reconnect: boolean;
  private readonly probeMs: number;
  private readonly backoff: { min: number; max: number };
  private readonly keepAlive: { intervalSec: number; count: number };
  private readonly log?: Logger;
  private h: Handle | null = null;
  private closed = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  private connecting: Promise<void> | null = null;
  private lastFailure = '';

  private constructor(opts: LibvirtConnectionOptions) {
    super();
    this.uri = opts.uri ?? DEFAULT_URI;
    this.events = opts.events ?? true;
    this.reconnect = opts.reconnect ?? this.events;
    this.probeMs = opts.probeMs ?? 1000;
    this.backoff = opts.backoffMs ?? { min: 200, max: 2000 };
    this.keepAlive = opts.keepAlive ?? { intervalSec: 5, count: 3 };
    this.log = opts.logger;
    this.n = loadLibvirt();
  }

  /**
   * Connects to `uri`. Without `reconnect`, an unreachable daemon throws LIBVIRT_UNAVAILABLE.
   * With it, the connection is returned disconnected and keeps retrying in the background.
   */
  static async open(opts: LibvirtConnectionOptions = {}): Promise<LibvirtConnection> {
    const c = new LibvirtConnection(opts);
    if (c.events) {
      ensureEventImpl();
      registerCallbacks(c.n);
      acquireEventLoop();
      c.probeTimer = setInterval(() => c.probe(), c.probeMs);
      c.probeTimer.unref();
    }
    try {
      await c.connect();
    } catch (e) {
      if (!c.reconnect) {
        await c.close();
        throw e;
      }
      c.log?.warn({ uri: c.uri, err: (e as Error).message }, 'libvirtd unreachable; retrying');
      c.scheduleReconnect();
    }
    return c;
  }

  isConnected(): boolean {
    return this.h !== null && !this.h.dead;
  }

  /** Why the last connection attempt or connection failed (for error messages). */
  lastError(): string {
    return this.lastFailure;
  }

  private async connect(): Promise<void> {
    const conn = (await acall(this.n.virConnectOpen, this.uri)) as Ptr | null;
    if (conn === null) {
      const e = takeLastError();
      this.lastFailure = e?.message ?? 'virConnectOpen failed';
      throw new VmtierError('LIBVIRT_UNAVAILABLE', `cannot connect to ${this.uri}: ${this.lastFailure}`, { uri: this.uri });
    }
    const h: Handle = { conn, inflight: 0, dead: false, freed: false, lifecycleId: -1, eventIds: [], closeCbRegistered: false, releasing: false };
    if (this.events) {
      byConn.set(conn, this);
      try {
        // Keepalive detects a daemon that hangs without closing the socket.
        if ((await acall(this.n.virConnectSetKeepAlive, conn, this.keepAlive.intervalSec, this.keepAlive.count)) as number < 0) takeLastError();
        if ((await acall(this.n.virConnectRegisterCloseCallback, conn, closeCb, null, null)) as number === 0) h.closeCbRegistered = true;
        else takeLastError();
        const id = (await acall(this.n.virConnectDomainEventRegisterAny, conn, null, VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycleCb, null, null)) as number;
        if (id < 0) throw this.errorFrom(h, 'virConnectDomainEventRegisterAny');
        h.lifecycleId = id;
        for (const [eventId, cb] of [[VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, metadataCb], [VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, iterationCb]] as const) {
          const eid = (await acall(this.n.virConnectDomainEventRegisterAny, conn, null, eventId, cb, null, null)) as number;
          if (eid < 0) throw this.errorFrom(h, `virConnectDomainEventRegisterAny(${eventId})`);
          h.eventIds.push(eid);
        }
      } catch (e) {
        h.dead = true;
        await this.dispose(h);
        throw e;
      }
    }
    this.h = h;
    this.attempt = 0;
  }

  private probe(): void {
    const h = this.h;
    if (!h || h.dead) return;
    if ((this.n.virConnectIsAlive(h.conn) as number) !== 1) this.connectionLost(h.conn, 'connection is not alive');
  }

  /** @internal Called from the close callback and the liveness probe. */
  connectionLost(conn: Ptr, why: string): void {
    const h = this.h;
    if (!h || h.conn !== conn || h.dead) return;
    h.dead = true;
    this.h = null;
    this.lastFailure = why;
    this.log?.warn({ uri: this.uri, why }, 'lost connection to libvirtd');
    this.emit('disconnected');
    void this.dispose(h);
    if (this.reconnect && !this.closed) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = Math.min(this.backoff.max, this.backoff.min * 2 ** this.attempt);
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closed) return;
      this.connecting = this.connect().then(
        () => {
          if (this.closed) return;
          this.log?.info({ uri: this.uri }, 'reconnected to libvirtd');
          this.emit('reconnected');
        },
        () => this.scheduleReconnect(),
      ).finally(() => { this.connecting = null; });
    }, delay);
    // A daemon waiting for libvirtd must not keep a CLI alive; the event loop keeps a server alive.
    this.reconnectTimer.unref();
  }

  /** Releases what the handle holds; the connection itself once no call is using it. */
  private async dispose(h: Handle): Promise<void> {
    h.dead = true;
    if (h.releasing) return;
    h.releasing = true;
    try {
      await this.releaseCallbacks(h);
    } finally {
      h.releasing = false;
      this.freeIfIdle(h);
    }
  }

  private async releaseCallbacks(h: Handle): Promise<void> {
    if (h.closeCbRegistered) {
      h.closeCbRegistered = false;
      // libvirt runs the close callback holding the lock this call takes, and koffi makes that
      // thread wait for the main thread to run the JS callback: calling it on the main thread
      // can deadlock when the daemon dies at that moment. A pool thread just waits its turn.
      if ((await acall(this.n.virConnectUnregisterCloseCallback, h.conn, closeCb)) as number < 0) takeLastError();
    }
    for (const id of h.eventIds.splice(0)) {
      if ((await acall(this.n.virConnectDomainEventDeregisterAny, h.conn, id)) as number < 0) takeLastError();
    }
    if (h.lifecycleId >= 0) {
      const id = h.lifecycleId;
      h.lifecycleId = -1;
      // On a dead connection this fails after removing the callback locally: that is enough.
      if ((await acall(this.n.virConnectDomainEventDeregisterAny, h.conn, id)) as number < 0) takeLastError();
    }
  }

  private freeIfIdle(h: Handle): void {
    if (!h.dead || h.freed || h.inflight > 0 || h.releasing) return;
    h.freed = true;
    byConn.delete(h.conn);
    // virConnectClose may talk to the daemon (to say goodbye): never on the main thread.
    this.n.virConnectClose.async(h.conn, () => { takeLastError(); });
  }

  /** Runs `fn` with the live connection, keeping it from being freed meanwhile. */
  private async withConn<T>(fn: (h: Handle) => Promise<T>): Promise<T> {
    if (this.closed) throw new VmtierError('LIBVIRT_UNAVAILABLE', `connection to ${this.uri} is closed`, { uri: this.uri });
    if (!this.h && this.connecting) await this.connecting.catch(() => undefined);
    const h = this.h;
    if (!h || h.dead) {
      throw new VmtierError('LIBVIRT_UNAVAILABLE', `libvirtd at ${this.uri} is unreachable: ${this.lastFailure || 'not connected'}`, { uri: this.uri });
    }
    h.inflight++;
    try {
      return await fn(h);
    } finally {
      h.inflight--;
      this.freeIfIdle(h);
    }
  }

  /** Whether the connection still answers; a synchronous retry on a dead one would only fail again. */
  private alive(h: Handle): boolean {
    return !h.dead && (this.n.virConnectIsAlive(h.conn) as number) === 1;
  }

  /** The error of a failed call: LIBVIRT_UNAVAILABLE when the connection died, else LIBVIRT_ERROR. */
  private errorFrom(h: Handle, what: string, taken?: LastError | null): VmtierError {
    const e = taken === undefined ? takeLastError() : taken;
    const alive = !h.dead && (this.n.virConnectIsAlive(h.conn) as number) === 1;
    if (!alive) {
      const msg = e?.message ?? 'connection lost';
      setImmediate(() => this.connectionLost(h.conn, msg));
      return new VmtierError('LIBVIRT_UNAVAILABLE', `${what}: libvirtd at ${this.uri} is unreachable: ${msg}`, { uri: this.uri });
    }
    return new VmtierError('LIBVIRT_ERROR', `${what}: ${e?.message ?? 'unknown libvirt error'}`, {
      virErrorCode: e?.code ?? -1,
      virErrorDomain: e?.domain ?? -1,
    });
  }

  /** Active domains. */
  listDomains(): Promise<DomainInfo[]> {
    return this.withConn(async (h) => {
      const out: [Ptr | null] = [null];
      const n = (await acall(this.n.virConnectListAllDomains, h.conn, out, VIR_CONNECT_LIST_DOMAINS_ACTIVE)) as number;
      if (n < 0) throw this.errorFrom(h, 'virConnectListAllDomains');
      const arr = out[0];
      const doms: Ptr[] = n > 0 && arr !== null ? (koffi.decode(arr, 'void *', n) as Ptr[]) : [];
      try {
        const result: DomainInfo[] = [];
        for (const d of doms) {
          const buf = Buffer.alloc(VIR_UUID_STRING_BUFLEN);
          this.n.virDomainGetUUIDString(d, buf);
          const idRaw = this.n.virDomainGetID(d) as number;
          const state: [number] = [0];
          const reason: [number] = [0];
          const rc = (await acall(this.n.virDomainGetState, d, state, reason, 0)) as number;
          // A domain that vanished between list and query is simply not listed.
          if (rc < 0) {
            takeLastError();
            continue;
          }
          result.push({
            name: this.n.virDomainGetName(d) as string,
            uuid: buf.toString('latin1', 0, buf.indexOf(0)),
            id: idRaw === 0xffffffff ? -1 : idRaw,
            state: state[0],
          });
        }
        return result;
      } finally {
        for (const d of doms) this.n.virDomainFree(d);
        if (arr !== null) koffi.free(arr);
      }
    });
  }

  /** Runs `fn` on a looked-up domain and frees it afterwards. */
  private withDomain<T>(uuid: string, fn: (h: Handle, dom: Ptr) => Promise<T>): Promise<T> {
    return this.withConn(async (h) => {
      let dom = (await acall(this.n.virDomainLookupByUUIDString, h.conn, uuid)) as Ptr | null;
      if (dom === null) {
        let e = takeLastError();
        // An error other than "no such domain" may be another call's (see native.ts): ask again on
        // this thread, where the error is the call's own.
        if (e?.code !== VIR_ERR_NO_DOMAIN && this.alive(h)) {
          const again = callSync(() => this.n.virDomainLookupByUUIDString(h.conn, uuid) as Ptr | null);
          dom = again.value;
          e = again.error;
        }
        if (dom === null) throw this.errorFrom(h, `lookup of domain ${uuid}`, e);
      }
      try {
        return await fn(h, dom);
      } finally {
        this.n.virDomainFree(dom);
      }
    });
  }

  /** One domain libvirt knows by uuid, running or only defined (VIR_ERR_NO_DOMAIN when neither). */
  domainByUuid(uuid: string): Promise<DomainInfo> {
    return this.withDomain(uuid, async (h, dom) => {
      const state: [number] = [0];
      const reason: [number] = [0];
      const rc = (await acall(this.n.virDomainGetState, dom, state, reason, 0)) as number;
      if (rc < 0) throw this.errorFrom(h, 'virDomainGetState');
      const idRaw = this.n.virDomainGetID(dom) as number;
      return { name: this.n.virDomainGetName(dom) as string, uuid: uuid.toLowerCase(), id: idRaw === 0xffffffff ? -1 : idRaw, state: state[0] };
    });
  }

  /** Domain XML (flags: virDomainXMLFlags; 0 = live XML). */
  domainXml(uuid: string, flags = 0): Promise<string> {
    return this.withDomain(uuid, async (h, dom) => {
      const xml = (await acall(this.n.virDomainGetXMLDesc, dom, flags)) as string | null;
      if (xml === null) throw this.errorFrom(h, 'virDomainGetXMLDesc');
      return xml;
    });
  }

  /** QEMU monitor passthrough: HMP text command (hmp) or QMP JSON. Returns the monitor's reply. */
  monitorCommand(uuid: string, cmd: string, opts: { hmp?: boolean } = {}): Promise<string> {
    return this.withDomain(uuid, async (h, dom) => {
      const out: [Ptr | null] = [null];
      const flags = opts.hmp ? VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP : 0;
      const rc = (await acall(this.n.virDomainQemuMonitorCommand, dom, cmd, out, flags)) as number;
      if (rc < 0) throw this.errorFrom(h, `monitor command "${cmd}"`);
      return takeHeapString(out[0]) ?? '';
    });
  }

  /**
   * The metadata element of namespace `nsUri` (live XML of a running domain, else the persistent
   * one), or null when the domain has none.
   */
  getMetadata(uuid: string, nsUri: string): Promise<string | null> {
    return this.withDomain(uuid, async (h, dom) => {
      const xml = (await acall(this.n.virDomainGetMetadata, dom, VIR_DOMAIN_METADATA_ELEMENT, nsUri, VIR_DOMAIN_AFFECT_CURRENT)) as string | null;
      if (xml !== null) return xml;
      let e = takeLastError();
      if (e?.code !== VIR_ERR_NO_DOMAIN_METADATA && this.alive(h)) {
        const again = callSync(() => this.n.virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, nsUri, VIR_DOMAIN_AFFECT_CURRENT) as string | null);
        if (again.value !== null) return again.value;
        e = again.error;
      }
      if (e?.code === VIR_ERR_NO_DOMAIN_METADATA) return null;
      throw this.errorFrom(h, 'virDomainGetMetadata', e);
    });
  }

  /**
   * Replaces (xml) or removes (null) the metadata element of namespace `nsUri`, prefixed `key`.
   * A running domain is changed live, and also in its persistent config when it has one; an
   * inactive one in its config. `live: false` asks for the persistent config only (when there is one).
   */
  setMetadata(uuid: string, nsUri: string, key: string, xml: string | null, opts: { live?: boolean; config?: boolean } = {}): Promise<MetadataWrite> {
    return this.withDomain(uuid, async (h, dom) => {
      const active = (await acall(this.n.virDomainIsActive, dom)) as number;
      const persistent = (await acall(this.n.virDomainIsPersistent, dom)) as number;
      if (active < 0 || persistent < 0) throw this.errorFrom(h, 'virDomainIsActive/IsPersistent');
      const live = active === 1 && opts.live !== false;
      const config = persistent === 1 && opts.config !== false;
      if (!live && !config) return { live, config };
      const flags = (live ? VIR_DOMAIN_AFFECT_LIVE : 0) | (config ? VIR_DOMAIN_AFFECT_CONFIG : 0);
      const rc = (await acall(this.n.virDomainSetMetadata, dom, VIR_DOMAIN_METADATA_ELEMENT, xml, xml === null ? null : key, nsUri, flags)) as number;
      if (rc < 0) throw this.errorFrom(h, 'virDomainSetMetadata');
      return { live, config };
    });
  }

  /** true while an asynchronous job (outgoing migration, save, dump) runs on the domain. */
  jobActive(uuid: string): Promise<boolean> {
    return this.withDomain(uuid, async (h, dom) => {
      const info = Buffer.alloc(VIR_DOMAIN_JOB_INFO_SIZE);
      const rc = (await acall(this.n.virDomainGetJobInfo, dom, info)) as number;
      if (rc < 0) throw this.errorFrom(h, 'virDomainGetJobInfo');
      return info.readInt32LE(0) !== VIR_DOMAIN_JOB_NONE;
    });
  }

  /** Stops reconnecting and events, and frees the connection once in-flight calls end. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.reconnectTimer = null;
    this.probeTimer = null;
    if (this.connecting) await this.connecting.catch(() => undefined);
    const h = this.h;
    this.h = null;
    if (h) await this.dispose(h);
    if (this.events) await releaseEventLoop();
    this.removeAllListeners();
  }
}
