/**
 * `vmtier doctor [--json]`: checks this host before tiering (src/host/doctor.ts). Exit status
 * 0 all PASS, 1 warnings only, 2 any FAIL.
 */
import type { Command } from 'commander';
import type { DoctorVm, LibvirtProbe } from '../host/doctor.js';

interface DoctorCliOpts {
  json?: boolean;
  config?: string;
  uri?: string;
  libvirt: boolean;
  sysRoot: string;
  procRoot: string;
  bootRoot: string;
  device: string;
}

/**
 * libvirtd's running domains with their live XML, and each one's policy mode as the service would
 * read it: the domain's metadata first, the store's current version when the metadata has none.
 */
async function probeLibvirt(uri: string, db: string): Promise<LibvirtProbe> {
  const [{ createLibvirtInventory }, { readPolicy }, { isVmtierError }, { existsSync }] = await Promise.all([
    import('../vm/libvirt-inventory.js'), import('../vm/policy-source.js'), import('../errors.js'), import('node:fs'),
  ]);
  const inv = createLibvirtInventory({ uri, events: false });
  try {
    const running = (await inv.list()).filter((d) => d.id >= 0);
    // The store is only read when the service has created it; doctor never creates one.
    const store = existsSync(db) ? (await import('../store/store.js')).Store.open(db) : null;
    try {
      const vms: DoctorVm[] = [];
      for (const d of running) {
        try {
          const effective = await readPolicy(inv, store, d.uuid);
          vms.push({ name: d.name, uuid: d.uuid, xml: await inv.domainXml(d.uuid), mode: effective.record?.policy.mode ?? null });
        } catch (e) {
          // Shut down or undefined since the listing: not a running domain any more.
          if (!isVmtierError(e, 'VM_NOT_FOUND')) throw e;
        }
      }
      return { ok: true, uri, vms };
    } finally {
      store?.close();
    }
  } catch (e) {
    return { ok: false, uri, error: (e as Error).message };
  } finally {
    await inv.close();
  }
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check this host for vmtier (module, DAMON, tiers, kernel tiering, THP, libvirtd, capabilities, VMs); exit 0 pass, 1 warn, 2 fail')
    .option('--json', 'print JSON')
    .option('--config <file>', 'YAML config file (uri, db, tier overrides)')
    .option('--uri <uri>', 'libvirt URI (default qemu:///system, or VMTIER_URI / config)')
    .option('--no-libvirt', 'skip libvirtd and the per-VM checks')
    .option('--sys-root <dir>', 'sysfs root (for fixtures)', '/sys')
    .option('--proc-root <dir>', 'procfs root (for fixtures)', '/proc')
    .option('--boot-root <dir>', 'where kernel configs (config-<release>) live', '/boot')
    .option('--device <path>', 'the vmtier_idle device', '/dev/vmtier_idle')
    .action(async (opts: DoctorCliOpts) => {
      const [{ loadConfig }, { runDoctor, formatDoctor }] = await Promise.all([import('../config.js'), import('../host/doctor.js')]);
      const cfg = loadConfig({ config: opts.config, uri: opts.uri });
      const libvirt = opts.libvirt ? await probeLibvirt(cfg.uri, cfg.db) : undefined;
      const report = runDoctor({
        sysRoot: opts.sysRoot, procRoot: opts.procRoot, bootRoot: opts.bootRoot, kmodDevice: opts.device,
        tierOverrides: cfg.tierOverrides, libvirt,
      });
      process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : `${formatDoctor(report)}\n`);
      process.exitCode = report.exitCode;
    });
}
