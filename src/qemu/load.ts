/**
 * Profiles live as YAML in qemu-profiles/ at the repository root (VMTIER_PROFILES_DIR overrides).
 * A profile is named by its file name; the name inside must match so listings cannot disagree.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument } from 'yaml';
import { VmtierError } from '../errors.js';
import { checkProfileSpec } from './profile.js';
import type { ProfileSpec } from './schema.js';

/** src/qemu/load.ts compiles to dist/src/qemu/load.js: the repository root is three levels up. */
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const NAME_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;

export function profilesDir(): string {
  return process.env.VMTIER_PROFILES_DIR ?? join(REPO_ROOT, 'qemu-profiles');
}

export interface LoadedProfile {
  spec: ProfileSpec;
  /** File it came from; null for an inline spec. */
  source: string | null;
}

/** Parses and checks one profile's YAML text (or JSON, which is YAML). */
export function parseProfileText(text: string, source = 'profile'): ProfileSpec {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const where = e.linePos?.[0] ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '';
    throw new VmtierError('INVALID_PROFILE', `${source}: not valid YAML${where}: ${e.message.split('\n')[0]}`, { field: 'profile', source });
  }
  return checkProfileSpec(doc.toJS({ maxAliasCount: 100 }));
}

export function loadProfileFile(file: string): LoadedProfile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new VmtierError('NOT_FOUND', `profile file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file }, { cause: e });
  }
  return { spec: parseProfileText(text, basename(file)), source: resolve(file) };
}

/** A shipped profile by name (`lab-tiered`), or a YAML file when the argument is a path. */
export function loadProfile(nameOrFile: string): LoadedProfile {
  if (nameOrFile.includes('/') || /\.ya?ml$/.test(nameOrFile)) return loadProfileFile(nameOrFile);
  if (!NAME_RE.test(nameOrFile)) throw new VmtierError('INVALID_INPUT', `profile name "${nameOrFile}": lowercase letters, digits and dashes`, { field: 'name' });
  const file = join(profilesDir(), `${nameOrFile}.yaml`);
  if (!existsSync(file)) throw new VmtierError('NOT_FOUND', `no profile named "${nameOrFile}" in ${profilesDir()}`, { name: nameOrFile });
  const loaded = loadProfileFile(file);
  if (loaded.spec.name !== nameOrFile) {
    throw new VmtierError('INVALID_PROFILE', `name: "${loaded.spec.name}" differs from the file name ${nameOrFile}.yaml`, { field: 'name' });
  }
  return loaded;
}

/** Every shipped profile, sorted by name. A broken file fails the listing loudly rather than hiding. */
export function listProfiles(): LoadedProfile[] {
  const dir = profilesDir();
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => loadProfile(f.slice(0, -'.yaml'.length)));
}
