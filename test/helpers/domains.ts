/**
 * Transient TCG test domains on the real libvirtd (shared helper).
 *
 *   const d = await startDomain('two-cells-memfd.xml', 'vmtier-test-a-');   // from test/fixtures/domains
 *   ... d.name, d.uuid, d.pid ...
 *   await d.destroy();                 // or, in an after() hook:
 *   await destroyDomains('vmtier-test-a-');   // every running domain with that prefix
 *
 * Domains are created with `virsh create` (transient: destroy removes them completely). The
 * fixture's <name> is replaced by `<prefix><fixture>-<random>` so parallel runs do not clash.
 * Always pass your own prefix (vmtier-test-<letter>-) and clean up in `after`.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** test/fixtures/domains in the source tree (this file runs from dist/test/helpers). */
export const FIXTURE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fixtures', 'domains');

export async function virsh(args: string[], uri = 'qemu:///system'): Promise<string> {
  const { stdout } = await run('virsh', ['-q', '-c', uri, ...args], { maxBuffer: 64 << 20 });
  return stdout;
}

/** An independent HMP command through the virsh CLI (not vmtier's binding). */
export function hmp(name: string, cmd: string, uri?: string): Promise<string> {
  return virsh(['qemu-monitor-command', '--hmp', name, cmd], uri);
}

export interface TestDomain {
  name: string;
  uuid: string;
  pid: number;
  xml: string;
  destroy(): Promise<void>;
}

/** Reads a fixture and sets its name. */
export function fixtureXml(file: string, name: string): string {
  const xml = readFileSync(join(FIXTURE_DIR, file), 'utf8');
  return xml.replace(/<name>[^<]*<\/name>/, `<name>${name}</name>`);
}

export async function startDomain(file: string, prefix: string, opts: { uri?: string; xml?: string } = {}): Promise<TestDomain> {
  const base = file.replace(/\.xml$/, '');
  // A caller-supplied XML keeps its own name (it must start with `prefix`).
  const given = opts.xml ? /<name>([^<]+)<\/name>/.exec(opts.xml)?.[1] : undefined;
  if (opts.xml && !given?.startsWith(prefix)) throw new Error(`test domain XML must be named ${prefix}*`);
  const name = given ?? `${prefix}${base}-${Math.random().toString(36).slice(2, 7)}`;
  const xml = opts.xml ?? fixtureXml(file, name);
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-dom-'));
  try {
    const path = join(dir, 'domain.xml');
    writeFileSync(path, xml);
    await virsh(['create', path], opts.uri);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const uuid = (await virsh(['domuuid', name], opts.uri)).trim();
  const runDir = '/run/libvirt/qemu';
  let pid = 0;
  try {
    pid = Number(readFileSync(join(runDir, `${name}.pid`), 'utf8').trim());
  } catch {
    pid = 0;
  }
  return {
    name,
    uuid,
    pid,
    xml,
    destroy: async () => {
      await virsh(['destroy', name], opts.uri).catch(() => undefined);
    },
  };
}

/** Destroys every running domain whose name starts with `prefix` (cleanup after failures too). */
export async function destroyDomains(prefix: string, uri?: string): Promise<void> {
  if (!prefix.startsWith('vmtier-test-')) throw new Error(`refusing to destroy domains outside vmtier-test-*: ${prefix}`);
  const names = (await virsh(['list', '--name'], uri).catch(() => '')).split('\n').map((s) => s.trim()).filter((s) => s.startsWith(prefix));
  for (const n of names) await virsh(['destroy', n], uri).catch(() => undefined);
}
