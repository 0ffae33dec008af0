/**
 * The errno table, on the ground floor beside src/units.ts (imports nothing): the Linux x86-64
 * numbers of every errno vmtier names, and their names for messages. Every other file takes
 * them from here (test/unit/errno.test.ts checks the numbers against the platform's and that no
 * other file defines one).
 */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSPC: 28,
  EROFS: 30,
  ENOSYS: 38,
  EOPNOTSUPP: 95,
} as const;

export type ErrnoName = keyof typeof ERRNO;

export const { EPERM, ENOENT, ESRCH, EINTR, EIO, E2BIG, EBADF, EAGAIN, ENOMEM, EACCES, EFAULT, EBUSY, EEXIST, ENODEV, EINVAL, ENOTTY, ENOSPC, EROFS, ENOSYS, EOPNOTSUPP } = ERRNO;

const NAMES = new Map<number, ErrnoName>(Object.entries(ERRNO).map(([name, n]) => [n, name as ErrnoName]));

/** "EBUSY" for 16 (or -16, as move_pages reports it per page); "errno N" for a number vmtier does not name. */
export function errnoName(errno: number): string {
  return NAMES.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

/** The number of an errno named in text (e.g. an environment variable), or undefined. */
export function errnoNumber(name: string): number | undefined {
  return Object.hasOwn(ERRNO, name) ? ERRNO[name as ErrnoName] : undefined;
}
