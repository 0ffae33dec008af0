/**
 * The two ends of a live migration in tests: a private libvirtd with a host UUID of its own
 * (libvirt refuses a migration between daemons that report the same host), an inventory on it
 * and a SQLite file; the caller starts the engine. Used on this machine
 * (test/integration/live-migration.test.ts) and inside the lab (test/lab/live-migration-guest.ts).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Engine } from '../../src/daemon/engine.js';
import type { HvaRange } from '../../src/units.js';
import { Store } from '../../src/store/store.js';
import { createLibvirtInventory, type LibvirtInventory } from '../../src/vm/libvirt-inventory.js';
import { startPrivateLibvirtd, type PrivateLibvirtd } from './libvirtd.js';

export interface MigrationSide {
  daemon: PrivateLibvirtd;
  inventory: LibvirtInventory;
  store: Store;
  engine: Engine | null;
}

export async function startMigrationSide(name: string, dir: string, logger: Logger): Promise<MigrationSide> {
  const daemon = await startPrivateLibvirtd({ hostUuid: randomUUID() });
  return {
    daemon,
    inventory: createLibvirtInventory({ uri: daemon.uri, runDir: daemon.qemuRunDir, logger }),
    store: Store.open(join(dir, `${name}.db`)),
    engine: null,
  };
}

/**
 * Random bytes into the first `bytes` of a guest range through /proc/<pid>/mem: present, non-zero
 * pages that pre-copy must send (the test guests run no OS that would write them).
 */
export function writeGuestMemory(pid: number, range: HvaRange, bytes: number): void {
  const fd = openSync(`/proc/${pid}/mem`, 'r+');
  try {
    const chunk = randomBytes(1 << 20);
    for (let off = 0; off < bytes; off += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - off), range.start + off);
  } finally {
    closeSync(fd);
  }
}
