/**
 * Where the lab keeps things. The compiled harness lives in dist/lab/, so the repository root is
 * two levels up from it; the git-ignored cache is .cache/lab/ under the root.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const labCacheDir = join(repoRoot, '.cache', 'lab');
/** Guest-side scripts (init.sh, agent.sh) are read from the source tree, not from dist/. */
export const guestScriptDir = join(repoRoot, 'lab', 'guest');
/** Host-built binaries (workload, the C move loop) that the guest runs over the shared root. */
export const labBinDir = join(labCacheDir, 'bin');
