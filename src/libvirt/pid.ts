/**
 * The QEMU pid of a running domain. libvirt does not return it through its API; the qemu
 * driver writes it to `<runDir>/<name>.pid`. That file can be stale (libvirtd restarted, the
 * pid reused by another process), so the pid is trusted only when /proc/<pid> is a QEMU
 * whose command line carries the domain's uuid (libvirt always passes `-uuid <uuid>`).
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { homedir } from 'node:os';
import { VmtierError } from '../errors.js';

/** Where the qemu driver keeps per-domain runtime files (pid, status XML) for a URI. */
export function qemuRunDir(uri: string): string {
  if (/^qemu(\+\w+)?:\/\/\/session/.test(uri) || uri.includes('/session?')) {
    const xdg = process.env.XDG_RUNTIME_DIR;
    return xdg ? join(xdg, 'libvirt', 'qemu', 'run') : join(homedir(), '.cache', 'libvirt', 'qemu', 'run');
  }
  return '/run/libvirt/qemu';
}

export function readPidFile(runDir: string, name: string): number {
  const path = join(runDir, `${name}.pid`);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new VmtierError('PID_UNTRUSTED', `cannot read pid file ${path}: ${(e as Error).message}`, { path });
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new VmtierError('PID_UNTRUSTED', `pid file ${path} holds no pid`, { path });
  return pid;
}

/** true when `exe` / `comm` name a QEMU system emulator. */
export function looksLikeQemu(exe: string, comm: string): boolean {
  // exe reads "/usr/bin/qemu-system-x86_64" (or "... (deleted)" after a package upgrade); comm is
  // truncated to 15 bytes ("qemu-system-x86") and libvirt's debug-threads may rename it ("CPU 0/TCG").
  const b = basename(exe.replace(/ \(deleted\)$/, ''));
  return /^qemu-(system-|kvm)/.test(b) || b === 'qemu-kvm' || /^qemu-system/.test(comm);
}

/** Checks /proc/<pid>: QEMU binary, and `-uuid <uuid>` on its command line. Throws PID_UNTRUSTED. */
export function verifyQemuPid(pid: number, uuid: string): number {
  let exe = '';
  let comm = '';
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
    comm = readFileSync(`/proc/${pid}/comm`, 'latin1').trim();
    try {
      exe = readlinkSync(`/proc/${pid}/exe`);
    } catch {
      exe = argv[0] ?? '';
    }
  } catch (e) {
    throw new VmtierError('PID_UNTRUSTED', `pid ${pid} is not running: ${(e as Error).message}`, { pid });
  }
  if (!looksLikeQemu(exe, comm)) {
    throw new VmtierError('PID_UNTRUSTED', `pid ${pid} is not a QEMU process (exe ${exe || '?'}, comm ${comm})`, { pid, exe, comm });
  }
  const want = uuid.toLowerCase();
  const i = argv.indexOf('-uuid');
  const have = i >= 0 ? (argv[i + 1] ?? '').toLowerCase() : '';
  if (have !== want) {
    throw new VmtierError('PID_UNTRUSTED', `pid ${pid} is a QEMU for uuid ${have || '(none)'}, not ${want}`, { pid, uuid: want });
  }
  return pid;
}

/** The verified QEMU pid of domain `name`/`uuid`. */
export function qemuPid(runDir: string, name: string, uuid: string): number {
  return verifyQemuPid(readPidFile(runDir, name), uuid);
}
