/** Number formats shared by the dashboard and its tests (the tests check what a page shows against the API). */
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function fmtBytes(n: number): string {
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${UNITS[u]}`;
}

export function fmtCount(n: number): string {
  return String(n);
}

/** 1 h … 30 d: the VM page's ranges, with the history step that gives ~240 points. */
export const RANGES: ReadonlyArray<{ label: string; ms: number }> = [
  { label: '1h', ms: 3600_000 },
  { label: '6h', ms: 6 * 3600_000 },
  { label: '24h', ms: 24 * 3600_000 },
  { label: '7d', ms: 7 * 86_400_000 },
  { label: '30d', ms: 30 * 86_400_000 },
];

/** Heatmap colour of one bucket: hue by placement (DRAM orange, slow blue), brightness by hotness; grey when not resident. */
export function heatColour(hot: number | null, dram: number, resident: number): [number, number, number] {
  if (resident === 0) return [40, 40, 40];
  const d = dram / 255;
  const h = hot === null ? 0.5 : hot / 255;
  const base: [number, number, number] = [Math.round(28 + (255 - 28) * d), Math.round(126 + (146 - 126) * d), Math.round(214 + (43 - 214) * d)];
  const k = 0.18 + 0.82 * h;
  return [Math.round(base[0] * k), Math.round(base[1] * k), Math.round(base[2] * k)];
}
