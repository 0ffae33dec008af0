/** One call for the CLI and the API: spec + overrides -> QEMU argv/command line and libvirt XML. */
import type { HostTopology } from '../host/topology.js';
import { checkLayoutForHost } from './host-check.js';
import { resolveProfile, type GuestLayout } from './profile.js';
import { renderLibvirt, renderLibvirtDomain, type LibvirtFragments } from './render-libvirt.js';
import { renderQemuArgs, renderQemuCommandLine } from './render-qemu.js';
import type { ProfileOverrides, ProfileSpec } from './schema.js';

export interface ProfileRender {
  layout: GuestLayout;
  qemuArgs: string[];
  qemuCommandLine: string;
  /** A whole minimal domain with this topology. */
  libvirtXml: string;
  libvirtFragments: LibvirtFragments;
  warnings: string[];
}

export interface RenderOptions {
  /** Check host nodes, dax devices and paths against this host (src/host's readHostTopology()). */
  host?: HostTopology;
  domainName?: string;
}

export function renderProfile(spec: ProfileSpec, overrides: ProfileOverrides = {}, opts: RenderOptions = {}): ProfileRender {
  const layout = resolveProfile(spec, overrides);
  if (opts.host) checkLayoutForHost(layout, { host: opts.host });
  const qemuArgs = renderQemuArgs(layout);
  const lv = renderLibvirt(layout);
  return {
    layout,
    qemuArgs,
    qemuCommandLine: renderQemuCommandLine(qemuArgs),
    libvirtXml: renderLibvirtDomain(layout, { name: opts.domainName ?? spec.name }),
    libvirtFragments: lv.fragments,
    warnings: lv.warnings,
  };
}
