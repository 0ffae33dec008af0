/**
 * `vmtier serve`: the REST API on real libvirtd + SQLite (src/service/service.ts), until
 * SIGINT/SIGTERM. The service is imported when the command runs, so other commands do not
 * pay for loading fastify, SQLite and libvirt.
 */
import type { Command } from 'commander';
import type { ConfigFlags } from '../config.js';
import type { EngineFlags } from '../daemon/options.js';

export type { Service } from '../service/service.js';

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
      const [{ loadConfig }, { engineSettings }, { createLogger }, { startService }] = await Promise.all([
        import('../config.js'),
        import('../daemon/options.js'),
        import('../log.js'),
        import('../service/service.js'),
      ]);
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
          svc.close().then(resolve, (err: unknown) => {
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
