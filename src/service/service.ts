/**
 * The composition root behind `vmtier serve`: SQLite store, libvirt inventory, sightings
 * recorder, periodic retention (retention.intervalSeconds, hourly by default), the HTTP API and the tiering engine, started and stopped as one.
 */
import type { Logger } from 'pino';
import { isLoopback, type VmtierConfig } from '../config.js';
import { Engine } from '../daemon/engine.js';
import { engineSettings, type EngineSettings } from '../daemon/options.js';
import { VmtierError } from '../errors.js';
import { readHostTopology } from '../host/topology.js';
import { heatHistoryOf } from '../store/heat-history.js';
import { recordSightings } from './sightings.js';
import { Store } from '../store/store.js';
import type { VmInventory } from '../vm/inventory.js';
import { createLibvirtInventory } from '../vm/libvirt-inventory.js';
import type { AnyFastify } from '../api/context.js';
import { buildApi } from '../api/server.js';

export interface Service {
  app: AnyFastify;
  store: Store;
  inventory: VmInventory;
  /** The tiering engine (null with --no-engine). */
  engine: Engine | null;
  /** http://host:port actually bound (port 0 in the config picks a free one). */
  url: string;
  close(): Promise<void>;
}

/** Starts the service; throws CONFIG_ERROR before opening anything when the config is unsafe. */
export async function startService(cfg: VmtierConfig, logger: Logger, engineCfg: EngineSettings = engineSettings({}, {})): Promise<Service> {
  if (!cfg.token && !isLoopback(cfg.listen.host)) {
    throw new VmtierError('CONFIG_ERROR', `refusing to listen on ${cfg.listen.host} without a token: set VMTIER_TOKEN (or --token / token: in the config)`);
  }
  // A storage fault (disk full, read-only, corrupted file) degrades the service instead of
  // stopping it: a supervisor restarting it would only crash-loop while the VMs go untiered.
  const reopenMs = Number(process.env.VMTIER_STORE_REOPEN_MS) || undefined;
  const store = Store.openResilient(cfg.db, { logger: logger.child({ component: 'store' }), reopenMs });
  const inventory = createLibvirtInventory({ uri: cfg.uri, logger: logger.child({ component: 'libvirt' }) });
  const sightings = recordSightings(inventory, store, { logger: logger.child({ component: 'sightings' }) });
  const retain = () => {
    try {
      const r = store.applyRetention(Date.now(), cfg.retention);
      const heat = store.health().mode === 'read-write' ? heatHistoryOf(store).applyRetention(Date.now(), cfg.retention) : null;
      logger.debug({ retention: r, heat }, 'retention applied');
    } catch (err) {
      logger.error({ err }, 'retention failed');
    }
  };
  retain();
  const retentionTimer = setInterval(retain, cfg.retention.intervalMs);
  retentionTimer.unref();

  let app: AnyFastify;
  try {
    app = await buildApi({
      inventory,
      store,
      token: cfg.token,
      logger,
      readHost: () => readHostTopology({ tierOverrides: cfg.tierOverrides }),
    });
    await app.listen({ host: cfg.listen.host, port: cfg.listen.port });
  } catch (e) {
    clearInterval(retentionTimer);
    sightings.stop();
    await inventory.close();
    store.close();
    if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE' || (e as NodeJS.ErrnoException).code === 'EACCES' || (e as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL') {
      throw new VmtierError('CONFIG_ERROR', `cannot listen on ${cfg.listen.host}:${cfg.listen.port}: ${(e as Error).message}`);
    }
    throw e;
  }
  let engine: Engine | null = null;
  if (engineCfg.enabled) {
    engine = new Engine({
      ...engineCfg.options,
      inventory,
      store,
      logger,
      registry: app.vmtier.metrics,
      readHost: () => readHostTopology({ tierOverrides: cfg.tierOverrides }),
    });
    app.vmtier.engine = engine;
    await engine.start();
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : cfg.listen.port;
  const host = cfg.listen.host.includes(':') ? `[${cfg.listen.host}]` : cfg.listen.host;
  const url = `http://${host}:${port}`;
  let closing: Promise<void> | null = null;
  return {
    app,
    store,
    inventory,
    engine,
    url,
    close() {
      closing ??= (async () => {
        clearInterval(retentionTimer);
        await engine?.stop(); // ends every VM loop, mid-scan or mid-move
        sightings.stop();
        await app.close(); // waits for requests in flight
        await inventory.close();
        store.close();
      })();
      return closing;
    },
  };
}
