/**
 * `vmtier serve`: the REST API on real libvirtd + SQLite. Records the VMs it sees, applies
 * history retention hourly, and shuts down cleanly on SIGINT/SIGTERM.
 */
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { buildApi } from '../api/server.js';
import type { AnyFastify } from '../api/context.js';
import { isLoopback, loadConfig, type ConfigFlags, type VmtierConfig } from '../config.js';
import { Engine } from '../daemon/engine.js';
import { engineSettings, type EngineFlags, type EngineSettings } from '../daemon/options.js';
import { VmtierError } from '../errors.js';
import { readHostTopology } from '../host/topology.js';
import { createLogger } from '../log.js';
import { recordSightings } from '../store/sightings.js';
import { Store } from '../store/store.js';
import type { VmInventory } from '../vm/inventory.js';
import { createLibvirtInventory } from '../vm/libvirt-inventory.js';

const RETENTION_PERIOD_MS = 3600_000;

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
  const store = Store.open(cfg.db);
  const inventory = createLibvirtInventory({ uri: cfg.uri, logger: logger.child({ component: 'libvirt' }) });
  const sightings = recordSightings(inventory, store, { logger: logger.child({ component: 'sightings' }) });
  const retain = () => {
    try {
      const r = store.applyRetention(Date.now(), cfg.retention);
      logger.debug({ retention: r }, 'retention applied');
    } catch (err) {
      logger.error({ err }, 'retention failed');
    }
  };
  retain();
  const retentionTimer = setInterval(retain, RETENTION_PERIOD_MS);
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

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the REST API (and record VMs seen) on libvirt + SQLite')
    .option('--config <file>', 'YAML config file (env: VMTIER_CONFIG)')
    .option('--db <path>', 'SQLite file (env: VMTIER_DB; default ./var/vmtier.db)')
    .option('--uri <uri>', 'libvirt URI (env: VMTIER_URI; default qemu:///system)')
    .option('--listen <host:port>', 'listen address (env: VMTIER_LISTEN; default 127.0.0.1:8477)')
    .option('--token <token>', 'bearer token for /v1 (env: VMTIER_TOKEN; required off loopback)')
    .option('--no-engine', 'API only: do not run the tiering engine (env: VMTIER_ENGINE=off)')
    .option('--tracker <name>', 'tracker for every VM, overriding each policy: kmod|damon|replay|auto (env: VMTIER_TRACKER)')
    .option('--replay-trace <file>', 'trace (.csv/.csv.gz) for --tracker replay (env: VMTIER_REPLAY_TRACE)')
    .option('--manage <regex>', 'manage only domains whose name matches (env: VMTIER_MANAGE)')
    .option('--promote-node <n>', 'host node to promote to (default: freest top-tier node; env: VMTIER_PROMOTE_NODE)')
    .option('--demote-node <n>', 'host node to demote to (default: freest slow-tier node; env: VMTIER_DEMOTE_NODE)')
    .option('--host-mbps <MBps>', 'host-wide migration rate limit (default 1024; env: VMTIER_HOST_MBPS)')
    .option('--dram-watermark-mb <MB>', 'promotion pauses below this much free DRAM (default 256; env: VMTIER_DRAM_WATERMARK_MB)')
    .option('--resync-ms <ms>', 'period of the full domain listing (default 5000; env: VMTIER_RESYNC_MS)')
    .action(async (flags: ConfigFlags & EngineFlags) => {
      const cfg = loadConfig(flags);
      const engineCfg = engineSettings(flags);
      const logger = createLogger();
      const svc = await startService(cfg, logger, engineCfg);
      logger.info({ url: svc.url, db: cfg.db, uri: cfg.uri, auth: cfg.token ? 'bearer' : 'none (loopback)', ...engineCfg.describe }, 'vmtier serving');
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ signal }, 'shutting down');
          process.off('SIGINT', onInt);
          process.off('SIGTERM', onTerm);
          svc.close().then(resolve, (err) => {
            logger.error({ err }, 'shutdown failed');
            process.exitCode = 1;
            resolve();
          });
        };
        const onInt = () => stop('SIGINT');
        const onTerm = () => stop('SIGTERM');
        process.on('SIGINT', onInt);
        process.on('SIGTERM', onTerm);
      });
      logger.info('stopped');
      // Native threads (libvirt's event loop) must not keep a stopped service alive.
      setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
    });
}
