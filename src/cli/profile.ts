/**
 * `vmtier profile list|render|validate`: the tiered guest profiles of qemu-profiles/ (or any YAML
 * file) rendered as a QEMU command line or libvirt domain XML.
 */
import { Command, Option } from 'commander';
import { VmtierError } from '../errors.js';
import { readHostTopology } from '../host/topology.js';
import { listProfiles, loadProfile } from '../qemu/load.js';
import { renderProfile } from '../qemu/render.js';
import type { ProfileOverrides } from '../qemu/schema.js';
import { humanSize } from '../qemu/size.js';

interface RenderFlags {
  memory?: string;
  dramRatio?: string;
  var: string[];
  format: 'qemu' | 'libvirt';
  json?: boolean;
  checkHost?: boolean;
  domainName?: string;
}

function collect(v: string, acc: string[]): string[] {
  return [...acc, v];
}

export function overridesFromFlags(f: Pick<RenderFlags, 'memory' | 'dramRatio' | 'var'>): ProfileOverrides {
  const o: ProfileOverrides = {};
  if (f.memory !== undefined) o.memory = f.memory;
  if (f.dramRatio !== undefined) {
    const r = Number(f.dramRatio);
    if (!Number.isFinite(r)) throw new VmtierError('INVALID_INPUT', `--dram-ratio: "${f.dramRatio}" is not a number`, { field: 'dramRatio' });
    o.dramRatio = r;
  }
  if (f.var.length) {
    o.vars = {};
    for (const kv of f.var) {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(kv);
      if (!m) throw new VmtierError('INVALID_INPUT', `--var: "${kv}" is not name=value`, { field: 'vars' });
      o.vars[m[1]] = m[2];
    }
  }
  return o;
}

function renderCommand(cmd: Command): Command {
  return cmd
    .argument('<profile>', 'profile name (see `vmtier profile list`) or a YAML file')
    .option('--memory <size>', 'total guest RAM, e.g. 64G (overrides the profile)')
    .option('--dram-ratio <ratio>', 'DRAM share of the guest RAM, 0 < r <= 1 (overrides the profile)')
    .option('--var <name=value>', 'value for ${name} in backend paths (repeatable), e.g. labDir=/tmp/lab', collect, [])
    .option('--check-host', "also check host nodes, dax devices and paths against this host's sysfs");
}

export function registerProfile(program: Command): void {
  const profile = program.command('profile').description('tiered guest profiles: QEMU -numa command lines and libvirt XML');

  profile
    .command('list')
    .description('list the shipped profiles (qemu-profiles/*.yaml)')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => {
      const all = listProfiles().map(({ spec, source }) => ({
        name: spec.name,
        guest: spec.guest,
        vcpus: spec.vcpus,
        memory: spec.memory ?? null,
        tiers: spec.tiers.map((t) => t.name),
        description: spec.description ?? '',
        source,
      }));
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(all)}\n`);
        return;
      }
      const rows = all.map((p) => [p.name, p.guest, String(p.vcpus), p.memory === null ? '-' : String(p.memory), ['dram', ...p.tiers].join('+'), p.description]);
      const head = ['name', 'guest', 'vcpus', 'memory', 'tiers', 'description'];
      const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
      for (const r of [head, ...rows]) process.stdout.write(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(width[i]))).join('  ')}\n`);
    });

  renderCommand(profile.command('render'))
    .description('render a profile as a QEMU command line or libvirt domain XML')
    .addOption(new Option('--format <format>', 'output').choices(['qemu', 'libvirt']).default('qemu'))
    .option('--domain-name <name>', 'libvirt domain name (default: the profile name)')
    .option('--json', 'print {qemuArgs, qemuCommandLine, libvirtXml, libvirtFragments, warnings, layout} as JSON')
    .action((name: string, flags: RenderFlags) => {
      const { spec } = loadProfile(name);
      const r = renderProfile(spec, overridesFromFlags(flags), { host: flags.checkHost ? readHostTopology() : undefined, domainName: flags.domainName });
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(r)}\n`);
        return;
      }
      for (const w of r.warnings) if (flags.format === 'libvirt') process.stderr.write(`warning: ${w}\n`);
      process.stdout.write(flags.format === 'libvirt' ? r.libvirtXml : `${r.qemuCommandLine}\n`);
    });

  renderCommand(profile.command('validate'))
    .description('check a profile (and, with --check-host, this host); prints the guest nodes')
    .action((name: string, flags: RenderFlags) => {
      const { spec } = loadProfile(name);
      const { layout } = renderProfile(spec, overridesFromFlags(flags), { host: flags.checkHost ? readHostTopology() : undefined });
      for (const n of layout.nodes) {
        const cpus = n.cpus ? `cpus ${n.cpus.start}-${n.cpus.end - 1}` : 'no CPUs';
        const nv = layout.nvdimms.filter((d) => d.node === n.node).map((d) => ` + nvdimm ${humanSize(d.sizeBytes)} (${d.guestUse})`).join('');
        const bind = n.backend.hostNodes.length ? ` host nodes ${n.backend.hostNodes.join(',')} (${n.backend.policy})` : '';
        const hmat = n.hmat ? ` ${n.hmat.latencyNs} ns ${humanSize(n.hmat.bandwidthBytesPerSec)}/s` : '';
        process.stdout.write(`node ${n.node} ${n.tier}: ${humanSize(n.sizeBytes)}${nv}, ${cpus}, ${n.backend.kind}${bind}${hmat}\n`);
      }
      process.stdout.write(`ok: ${spec.name}${flags.checkHost ? ' (checked against this host)' : ''}\n`);
    });
}
