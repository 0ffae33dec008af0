/**
 * ioctl(2) through koffi, for vmtier's own character device (/dev/vmtier_idle). Kept
 * beside syscalls.ts so native calls stay in src/sys.
 */
import * as koffi from 'koffi';
import { KernelError, VmtierError } from '../errors.js';

type IoctlFn = (fd: number, req: number, ...args: unknown[]) => number;
let ioctlFn: IoctlFn | null = null;

function fn(): IoctlFn {
  if (process.arch !== 'x64') throw new VmtierError('UNSUPPORTED', `ioctl is only wired for x86_64, not ${process.arch}`);
  if (!ioctlFn) ioctlFn = koffi.load('libc.so.6').func('int ioctl(int fd, unsigned long req, ...)') as unknown as IoctlFn;
  return ioctlFn;
}

/** _IOC(dir, type, nr, size) of asm-generic/ioctl.h: dir 1 = write (to the kernel), 2 = read. */
export function ioc(dir: 0 | 1 | 2 | 3, type: number, nr: number, size: number): number {
  return ((dir << 30) >>> 0) + (size << 16) + (type << 8) + nr;
}

/** ioctl(fd, req, buf); throws KernelError with errno on failure. */
export function ioctlBuffer(fd: number, req: number, buf: Uint8Array, name: string): number {
  const rc = fn()(fd, req, 'void *', buf);
  if (rc < 0) throw new KernelError(`ioctl(${name})`, koffi.errno());
  return rc;
}
