/**
 * api/openapi.yaml is generated from the route schemas: `npm run openapi` writes it,
 * a test compares it with this output so the committed file cannot drift.
 * Run: node dist/src/api/openapi.js [--write <file>]
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { VmtierError } from '../errors.js';
import type { Store } from '../store/store.js';
import type { VmInventory } from '../vm/inventory.js';
import { buildApi } from './server.js';

export const OPENAPI_FILE = fileURLToPath(new URL('../../../api/openapi.yaml', import.meta.url));

/** Handlers never run while rendering; only route registration does, which touches no dependency. */
function unused<T extends object>(what: string): T {
  return new Proxy({} as T, {
    get(_t, prop) {
      if (prop === 'then') return undefined;
      return () => {
        throw new VmtierError('UNSUPPORTED', `${what}.${String(prop)} is not available while rendering the OpenAPI document`);
      };
    },
  });
}

export async function renderOpenApi(): Promise<string> {
  const app = await buildApi({
    inventory: unused<VmInventory>('inventory'),
    store: unused<Store>('store'),
    readHost: () => {
      throw new VmtierError('UNSUPPORTED', 'no host while rendering');
    },
    token: 'rendering-only-token-not-used',
  });
  try {
    // Plain YAML without anchors/aliases: routes that share a tags array stay readable.
    const doc = stringify(app.swagger(), { aliasDuplicateObjects: false, lineWidth: 100 });
    return `# Generated from the route schemas by \`npm run openapi\`; do not edit by hand.\n${doc}`;
  } finally {
    await app.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const i = process.argv.indexOf('--write');
  const out = i >= 0 ? process.argv[i + 1] ?? OPENAPI_FILE : null;
  const text = await renderOpenApi();
  if (out) {
    writeFileSync(out, text);
    process.stderr.write(`wrote ${out}\n`);
  } else {
    process.stdout.write(text);
  }
}
