/**
 * The kernel's list format for CPUs and nodes ("0-3,8,10-11", empty for none), as used
 * by /sys/devices/system/node/nodeN/cpulist and memory_tierN/nodelist.
 */
import { VmtierError } from '../errors.js';

export function parseList(text: string): number[] {
  const s = text.trim();
  if (s === '') return [];
  const out: number[] = [];
  for (const part of s.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new VmtierError('INVALID_INPUT', `not a kernel list: ${JSON.stringify(text)}`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new VmtierError('INVALID_INPUT', `descending range in kernel list: ${part}`);
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

/** The compact form of a sorted, de-duplicated list: [0,1,2,5] -> "0-2,5". */
export function formatList(values: readonly number[]): string {
  const v = [...new Set(values)].sort((x, y) => x - y);
  const parts: string[] = [];
  for (let i = 0; i < v.length; ) {
    let j = i;
    while (j + 1 < v.length && v[j + 1] === v[j] + 1) j++;
    parts.push(i === j ? `${v[i]}` : `${v[i]}-${v[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
