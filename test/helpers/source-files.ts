// The project's TypeScript sources, for tests that read the code itself (layering, one errno
// table, one MoveCounts). Resolved from the built test file: dist/test/unit → the repository's src.
import { readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'src');

/** Every .ts file under dir (default: src), depth first. */
export function sourceFiles(dir: string = SRC): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}
