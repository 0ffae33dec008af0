/**
 * Keeps the store's record of VMs (first/last seen, guest layout) in step with an inventory:
 * lifecycle events as they come, a full listing at start and after libvirtd reconnects, and a
 * periodic refresh of last_seen for VMs that keep running. A service of the composition root:
 * it listens and decides when to write; src/store only stores (recordVmSeen, replaceGuestNodes).
 */
import type { Logger } from 'pino';
import { isVmtierError } from '../errors.js';
import type { VmInventory } from '../vm/inventory.js';
import type { Store } from '../store/store.js';

export interface SightingsOptions {
  logger?: Logger;
  now?: () => number;
  /** last_seen refresh period for running VMs; default 30 s. */
  refreshMs?: number;
}

export interface Sightings {
  /** Resolves after the first listing (or its failure) is done. */
  readonly initial: Promise<void>;
  stop(): void;
}

export function recordSightings(inventory: VmInventory, store: Store, opts: SightingsOptions = {}): Sightings {
  const now = opts.now ?? Date.now;
  const log = opts.logger;
  let stopped = false;

  const fail = (what: string) => (e: unknown) => {
    if (stopped) return;
    if (isVmtierError(e, 'LIBVIRT_UNAVAILABLE')) log?.debug({ err: e }, `${what}: libvirtd unreachable`);
    else log?.warn({ err: e }, `${what} failed`);
  };

  const recordLayout = async (uuid: string) => {
    const map = await inventory.numaMap(uuid);
    if (!stopped) store.replaceGuestNodes(map.domain.uuid, map.nodes, now());
  };

  const syncAll = async () => {
    const list = await inventory.list();
    if (stopped) return;
    const t = now();
    for (const d of list) {
      const first = store.getVm(d.uuid) === null;
      store.recordVmSeen(d.uuid, d.name, t);
      if (first) void recordLayout(d.uuid).catch(fail(`guest layout of ${d.name}`));
    }
  };

  const unsubscribe = inventory.subscribe((e) => {
    if (stopped) return;
    try {
      if (e.type === 'reconnected') {
        void syncAll().catch(fail('listing after reconnect'));
      } else if (e.type === 'started') {
        store.recordVmSeen(e.uuid, e.name, now());
        log?.info({ vm: e.uuid, name: e.name }, 'VM started');
        void recordLayout(e.uuid).catch(fail(`guest layout of ${e.name}`));
      } else if (e.type === 'stopped' || e.type === 'changed') {
        store.recordVmSeen(e.uuid, e.name, now());
        if (e.type === 'stopped') log?.info({ vm: e.uuid, name: e.name }, 'VM stopped');
      }
    } catch (err) {
      log?.error({ err, event: e }, 'cannot record VM sighting');
    }
  });

  const timer = setInterval(() => void syncAll().catch(fail('periodic listing')), opts.refreshMs ?? 30_000);
  timer.unref();
  const initial = syncAll().catch(fail('initial listing'));

  return {
    initial,
    stop() {
      stopped = true;
      clearInterval(timer);
      unsubscribe();
    },
  };
}
