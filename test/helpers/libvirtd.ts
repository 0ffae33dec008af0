/**
 * A private libvirtd for tests that stop and restart the daemon (never touch the system
 * libvirtd: other tests and users share it).
 *
 * Usage:
 *   const d = await startPrivateLibvirtd();   // own socket under a temp dir
 *   const inv = createLibvirtInventory({ uri: d.uri, ... });
 *   await d.stop();     // daemon gone: calls give LIBVIRT_UNAVAILABLE (API: 503)
 *   await d.start();    // same socket again: clients reconnect
 *   d.pause(); d.resume();   // a hung daemon (SIGSTOP/SIGCONT), socket still open
 *   await d.cleanup();  // stop + remove the temp dir (call in `after`)
 *
 * How: libvirtd runs unprivileged (as user `nobody`, i.e. a "session" daemon) with HOME and
 * XDG_* pointing into a temp dir, so its socket, state and the qemu driver's lock files are
 * all private. Root connects to it through `qemu+unix:///session?socket=<dir>/run/libvirt/libvirt-sock`.
 * It serves the qemu driver for real (domains can be listed; no test relies on running
 * domains under it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PrivateLibvirtd {
  uri: string;
  dir: string;
  /** Where its qemu driver writes <name>.pid (for LibvirtInventory's runDir). */
  qemuRunDir: string;
  socket: string;
  /** The daemon's log (stderr/stdout) file. */
  logFile: string;
  running(): boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** SIGSTOP / SIGCONT: a daemon that hangs without closing its socket. */
  pause(): void;
  resume(): void;
  cleanup(): Promise<void>;
}

const NOBODY = { uid: 65534, gid: 65534 };

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export interface PrivateLibvirtdOptions {
  /**
   * libvirtd.conf's host_uuid. Two daemons on one machine need different ones to migrate between
   * them: libvirt refuses a migration whose source and destination report the same host UUID.
   */
  hostUuid?: string;
}

export async function startPrivateLibvirtd(opts: PrivateLibvirtdOptions = {}): Promise<PrivateLibvirtd> {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-libvirtd-'));
  chownSync(dir, NOBODY.uid, NOBODY.gid);
  chmodSync(dir, 0o755);
  if (opts.hostUuid) {
    // A session daemon reads $XDG_CONFIG_HOME/libvirt/libvirtd.conf.
    const confDir = join(dir, 'config', 'libvirt');
    mkdirSync(confDir, { recursive: true });
    writeFileSync(join(confDir, 'libvirtd.conf'), `host_uuid = "${opts.hostUuid}"\n`);
    for (const p of [join(dir, 'config'), confDir, join(confDir, 'libvirtd.conf')]) chownSync(p, NOBODY.uid, NOBODY.gid);
  }
  const socket = join(dir, 'run', 'libvirt', 'libvirt-sock');
  const logFile = join(dir, 'libvirtd.log');
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const d: PrivateLibvirtd = {
    uri: `qemu+unix:///session?socket=${socket}`,
    dir,
    qemuRunDir: join(dir, 'run', 'libvirt', 'qemu', 'run'),
    socket,
    logFile,
    running: () => child !== null && child.exitCode === null && child.signalCode === null,
    async start() {
      if (d.running()) return;
      const fd = openSync(logFile, 'a');
      const c = spawn('libvirtd', [], {
        uid: NOBODY.uid,
        gid: NOBODY.gid,
        env: {
          PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
          HOME: dir,
          XDG_RUNTIME_DIR: join(dir, 'run'),
          XDG_CONFIG_HOME: join(dir, 'config'),
          XDG_CACHE_HOME: join(dir, 'cache'),
        },
        stdio: ['ignore', fd, fd],
      });
      closeSync(fd);
      child = c;
      exited = new Promise((resolve) => c.once('exit', () => resolve()));
      for (let i = 0; i < 100; i++) {
        if (c.exitCode !== null) throw new Error(`private libvirtd exited with ${c.exitCode}; see ${logFile}`);
        if (await socketAnswers(socket)) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`private libvirtd did not open ${socket} within 10 s; see ${logFile}`);
    },
    pause() {
      if (d.running()) child!.kill('SIGSTOP');
    },
    resume() {
      if (d.running()) child!.kill('SIGCONT');
    },
    async stop() {
      if (!child || !d.running()) return;
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      const killer = setTimeout(() => child?.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    },
    async cleanup() {
      await d.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await d.start();
  return d;
}
