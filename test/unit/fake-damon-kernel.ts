/**
 * FakeDamonKernel: a model of the DAMON sysfs interface (Linux 6.12 layout) over a real
 * temporary directory tree, plus a fixture /proc. It exists because the real writable
 * DAMON sysfs cannot be used on this machine (a platform kdamond runs; writing there is
 * forbidden) and page-level ground truth is not available from a real kernel in a unit
 * test. The real DAMON is exercised in the lab (test/lab/damon-*.test.ts).
 *
 * Modelled kernel behaviour: nr_kdamonds rewrites all kdamond dirs and fails EBUSY while
 * one runs; nr_contexts/nr_targets/nr_regions/nr_schemes create their subdirectories;
 * 'on' validates operations and the target pid; 'update_schemes_tried_regions' fills
 * tried_regions from a scripted access model, filtered by the scheme's access pattern
 * (whose maxima start at 0 and then match nothing, as in 6.12); the kdamond stops by
 * itself when its target is gone; commands other than on/off can be made to fail EBUSY
 * (`busyCommands`), as 6.12's single command slot does while another kdamond's command runs.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SysfsIo } from '../../src/scan/damon-sysfs.js';

export interface FakeRegionVerdict {
  start: number;
  end: number;
  nrAccesses: number;
}

function fsError(code: string, errno: number, path: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: ${path}`) as NodeJS.ErrnoException;
  e.code = code;
  e.errno = -errno;
  return e;
}

export interface FakeDamonOptions {
  availOperations?: string[];
  /** Cuts the configured regions at multiples of this many bytes for the model (default 64 KiB). */
  regionBytes?: number;
}

export class FakeDamonKernel {
  readonly dir: string;
  readonly root: string;
  readonly procRoot: string;
  readonly writes: { path: string; value: string }[] = [];
  /** nr_accesses the kernel reports for each piece of a target's regions, per update. */
  accessModel: (region: { start: number; end: number }, update: number) => number = () => 0;
  private updates = 0;
  /** Commands (not on/off) still to refuse with EBUSY, as 6.12 does while another kdamond's command is in flight. */
  busyCommands = 0;
  private nextPid = 9000;
  private readonly avail: string[];
  private readonly regionBytes: number;

  constructor(opts: FakeDamonOptions = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'vmtier-fake-damon-'));
    this.root = join(this.dir, 'sys/kernel/mm/damon/admin');
    this.procRoot = join(this.dir, 'proc');
    this.avail = opts.availOperations ?? ['vaddr', 'fvaddr', 'paddr'];
    this.regionBytes = opts.regionBytes ?? 64 * 1024;
    mkdirSync(join(this.root, 'kdamonds'), { recursive: true });
    this.put('kdamonds/nr_kdamonds', '0');
    mkdirSync(this.procRoot, { recursive: true });
    this.addProcess(process.pid, 'node');
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- fixture /proc ----------------------------------------------------------------

  addProcess(pid: number, comm: string, startTime = 1000 + pid): void {
    const d = join(this.procRoot, String(pid));
    mkdirSync(d, { recursive: true });
    // Field 22 (start time) is the 20th after "(comm) ".
    const after = ['S', ...Array.from({ length: 18 }, () => '0'), String(startTime), '0'].join(' ');
    writeFileSync(join(d, 'stat'), `${pid} (${comm}) ${after}\n`);
    writeFileSync(join(d, 'comm'), `${comm}\n`);
    writeFileSync(join(d, 'pagemap'), '');
  }

  removeProcess(pid: number): void {
    rmSync(join(this.procRoot, String(pid)), { recursive: true, force: true });
  }

  /** Marks pages [start, end) of pid present in its fixture pagemap. */
  setPresent(pid: number, start: number, end: number): void {
    const fd = openSync(join(this.procRoot, String(pid), 'pagemap'), 'r+');
    try {
      const entry = Buffer.alloc(8);
      entry.writeUInt32LE(0x80000000, 4);
      for (let a = start; a < end; a += 4096) writeSync(fd, entry, 0, 8, (a / 4096) * 8);
    } finally {
      closeSync(fd);
    }
  }

  // ---- state inspection ------------------------------------------------------------------

  private abs(rel: string): string {
    return join(this.root, rel);
  }

  private put(rel: string, value: string): void {
    writeFileSync(this.abs(rel), value.endsWith('\n') ? value : `${value}\n`);
  }

  get(rel: string): string {
    return readFileSync(this.abs(rel), 'utf8').trim();
  }

  exists(rel: string): boolean {
    return existsSync(this.abs(rel));
  }

  /** A kdamond someone else created and turned on (like this machine's platform kdamond). */
  addForeignKdamond(state: 'on' | 'off', ops = 'paddr'): number {
    const n = Number(this.get('kdamonds/nr_kdamonds'));
    this.mkKdamond(n);
    this.put('kdamonds/nr_kdamonds', String(n + 1));
    this.mkContexts(n, 1);
    this.put(`kdamonds/${n}/contexts/0/operations`, ops);
    if (state === 'on') {
      const pid = this.nextPid++;
      this.put(`kdamonds/${n}/state`, 'on');
      this.put(`kdamonds/${n}/pid`, String(pid));
      this.addProcess(pid, `kdamond.${n}`);
    }
    return n;
  }

  private mkKdamond(k: number): void {
    const d = `kdamonds/${k}`;
    mkdirSync(this.abs(`${d}/contexts`), { recursive: true });
    this.put(`${d}/state`, 'off');
    this.put(`${d}/pid`, '-1');
    this.put(`${d}/contexts/nr_contexts`, '0');
  }

  private mkContexts(k: number, n: number): void {
    const c = `kdamonds/${k}/contexts`;
    for (const e of readdirSync(this.abs(c))) if (/^\d+$/.test(e)) rmSync(this.abs(`${c}/${e}`), { recursive: true });
    for (let i = 0; i < n; i++) {
      const x = `${c}/${i}`;
      for (const sub of ['monitoring_attrs/intervals', 'monitoring_attrs/nr_regions', 'targets', 'schemes']) {
        mkdirSync(this.abs(`${x}/${sub}`), { recursive: true });
      }
      this.put(`${x}/avail_operations`, this.avail.join('\n'));
      this.put(`${x}/operations`, 'vaddr');
      this.put(`${x}/monitoring_attrs/intervals/sample_us`, '5000');
      this.put(`${x}/monitoring_attrs/intervals/aggr_us`, '100000');
      this.put(`${x}/monitoring_attrs/intervals/update_us`, '1000000');
      this.put(`${x}/monitoring_attrs/nr_regions/min`, '10');
      this.put(`${x}/monitoring_attrs/nr_regions/max`, '1000');
      this.put(`${x}/targets/nr_targets`, '0');
      this.put(`${x}/schemes/nr_schemes`, '0');
    }
    this.put(`${c}/nr_contexts`, String(n));
  }

  private numbered(dirRel: string, n: number, mk: (rel: string) => void): void {
    for (const e of readdirSync(this.abs(dirRel))) if (/^\d+$/.test(e)) rmSync(this.abs(`${dirRel}/${e}`), { recursive: true });
    for (let i = 0; i < n; i++) {
      mkdirSync(this.abs(`${dirRel}/${i}`), { recursive: true });
      mk(`${dirRel}/${i}`);
    }
  }

  private anyOn(): boolean {
    const n = Number(this.get('kdamonds/nr_kdamonds'));
    for (let k = 0; k < n; k++) if (this.get(`kdamonds/${k}/state`) === 'on') return true;
    return false;
  }

  private pidAlive(pid: number): boolean {
    return existsSync(join(this.procRoot, String(pid)));
  }

  private stop(k: number): void {
    const pid = Number(this.get(`kdamonds/${k}/pid`));
    this.put(`kdamonds/${k}/state`, 'off');
    this.put(`kdamonds/${k}/pid`, '-1');
    if (pid > 0) this.removeProcess(pid);
  }

  private handleState(k: number, cmd: string, path: string): void {
    const kd = `kdamonds/${k}`;
    const on = this.get(`${kd}/state`) === 'on';
    const ctx = `${kd}/contexts/0`;
    const targetPid = () => Number(this.get(`${ctx}/targets/0/pid_target`));
    if (on && !this.pidAlive(targetPid())) this.stop(k);
    if (cmd !== 'on' && cmd !== 'off' && this.busyCommands > 0) {
      this.busyCommands--;
      throw fsError('EBUSY', 16, path);
    }
    const running = this.get(`${kd}/state`) === 'on';
    switch (cmd) {
      case 'on': {
        if (running) throw fsError('EBUSY', 16, path);
        if (!this.exists(`${ctx}/operations`)) throw fsError('EINVAL', 22, path);
        if (!this.avail.includes(this.get(`${ctx}/operations`))) throw fsError('EINVAL', 22, path);
        if (!this.exists(`${ctx}/targets/0/pid_target`) || !this.pidAlive(targetPid())) throw fsError('EINVAL', 22, path);
        const pid = this.nextPid++;
        this.put(`${kd}/state`, 'on');
        this.put(`${kd}/pid`, String(pid));
        this.addProcess(pid, `kdamond.${k}`);
        return;
      }
      case 'off':
        if (!running) throw fsError('EINVAL', 22, path);
        this.stop(k);
        return;
      case 'commit':
        if (!running) throw fsError('EINVAL', 22, path);
        return;
      case 'update_schemes_tried_regions': {
        if (!running) throw fsError('EINVAL', 22, path);
        this.fillTriedRegions(ctx);
        return;
      }
      default:
        throw fsError('EINVAL', 22, path);
    }
  }

  private fillTriedRegions(ctx: string): void {
    const update = this.updates++;
    const s = `${ctx}/schemes/0`;
    const lim = (what: string) => [BigInt(this.get(`${s}/access_pattern/${what}/min`)), BigInt(this.get(`${s}/access_pattern/${what}/max`))];
    const [szMin, szMax] = lim('sz');
    const [naMin, naMax] = lim('nr_accesses');
    const [ageMin, ageMax] = lim('age');
    const t = `${ctx}/targets/0/regions`;
    const nr = Number(this.get(`${t}/nr_regions`));
    const out: FakeRegionVerdict[] = [];
    for (let i = 0; i < nr; i++) {
      const start = Number(this.get(`${t}/${i}/start`));
      const end = Number(this.get(`${t}/${i}/end`));
      // Pieces end on absolute multiples of regionBytes, so a model can speak in aligned blocks.
      for (let a = start; a < end; a = Math.min(end, (Math.floor(a / this.regionBytes) + 1) * this.regionBytes)) {
        const r = { start: a, end: Math.min(end, (Math.floor(a / this.regionBytes) + 1) * this.regionBytes) };
        out.push({ ...r, nrAccesses: this.accessModel(r, update) });
      }
    }
    const tried = `${s}/tried_regions`;
    const kept = out.filter((r) => {
      const sz = BigInt(r.end - r.start);
      const na = BigInt(r.nrAccesses);
      return sz >= szMin! && sz <= szMax! && na >= naMin! && na <= naMax! && 0n >= ageMin! && 0n <= ageMax!;
    });
    this.numbered(tried, kept.length, (rel) => {
      const r = kept[Number(rel.slice(rel.lastIndexOf('/') + 1))]!;
      this.put(`${rel}/start`, String(r.start));
      this.put(`${rel}/end`, String(r.end));
      this.put(`${rel}/nr_accesses`, String(r.nrAccesses));
      this.put(`${rel}/age`, '0');
    });
    this.put(`${tried}/total_bytes`, String(kept.reduce((a, r) => a + r.end - r.start, 0)));
  }

  /** Applies a write as the kernel would. */
  private apply(path: string, value: string): void {
    if (!path.startsWith(this.root + '/')) throw fsError('ENOENT', 2, path);
    const rel = path.slice(this.root.length + 1);
    if (!existsSync(path)) throw fsError('ENOENT', 2, path);
    const v = value.trim();
    let m: RegExpExecArray | null;
    if (rel === 'kdamonds/nr_kdamonds') {
      if (this.anyOn()) throw fsError('EBUSY', 16, path);
      this.numbered('kdamonds', Number(v), (d) => this.mkKdamond(Number(d.slice('kdamonds/'.length))));
      this.put(rel, v);
    } else if ((m = /^kdamonds\/(\d+)\/state$/.exec(rel))) {
      this.handleState(Number(m[1]), v, path);
    } else if ((m = /^kdamonds\/(\d+)\/pid$/.exec(rel)) || rel.endsWith('/avail_operations')) {
      throw fsError('EACCES', 13, path);
    } else if ((m = /^kdamonds\/(\d+)\/contexts\/nr_contexts$/.exec(rel))) {
      this.mkContexts(Number(m[1]), Number(v));
    } else if (rel.endsWith('/targets/nr_targets')) {
      const d = rel.slice(0, -'/nr_targets'.length);
      this.numbered(d, Number(v), (t) => {
        mkdirSync(this.abs(`${t}/regions`), { recursive: true });
        this.put(`${t}/pid_target`, '0');
        this.put(`${t}/regions/nr_regions`, '0');
      });
      this.put(rel, v);
    } else if (rel.endsWith('/regions/nr_regions')) {
      const d = rel.slice(0, -'/nr_regions'.length);
      this.numbered(d, Number(v), (r) => {
        this.put(`${r}/start`, '0');
        this.put(`${r}/end`, '0');
      });
      this.put(rel, v);
    } else if (rel.endsWith('/schemes/nr_schemes')) {
      const d = rel.slice(0, -'/nr_schemes'.length);
      this.numbered(d, Number(v), (s) => {
        for (const w of ['sz', 'nr_accesses', 'age']) {
          mkdirSync(this.abs(`${s}/access_pattern/${w}`), { recursive: true });
          this.put(`${s}/access_pattern/${w}/min`, '0');
          // 6.12: the maxima start at 0, so an untouched pattern matches nothing.
          this.put(`${s}/access_pattern/${w}/max`, '0');
        }
        mkdirSync(this.abs(`${s}/tried_regions`), { recursive: true });
        this.put(`${s}/tried_regions/total_bytes`, '0');
        this.put(`${s}/action`, 'stat');
      });
      this.put(rel, v);
    } else {
      this.put(rel, v);
    }
  }

  /**
   * The SysfsIo to hand to DamonSysfs / DamonTracker. Records every write. With `sync`,
   * it also offers the synchronous bulk read/write the real io has.
   */
  io(opts: { sync?: boolean } = {}): SysfsIo {
    const syncPart: Pick<SysfsIo, 'readSync' | 'writeSync'> = opts.sync ? {
      readSync: (p) => readFileSync(p, 'utf8'),
      writeSync: (p, v) => {
        this.writes.push({ path: p.slice(this.root.length + 1), value: v });
        this.apply(p, v);
      },
    } : {};
    return {
      ...syncPart,
      read: async (p) => {
        try {
          return readFileSync(p, 'utf8');
        } catch {
          throw fsError('ENOENT', 2, p);
        }
      },
      write: async (p, v) => {
        this.writes.push({ path: p.slice(this.root.length + 1), value: v });
        this.apply(p, v);
      },
      list: async (d) => readdirSync(d),
      exists: async (p) => existsSync(p),
    };
  }
}
