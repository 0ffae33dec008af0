/**
 * vmtier's elements in a domain's <metadata>: the VM's tiering policy and the map of its hot
 * memory units. libvirt keeps one element per namespace and carries the live XML (metadata
 * included) to the destination of a live migration, so what lives here travels with the VM and
 * survives a reinstall of vmtier.
 *
 * Two namespaces, not one: the policy belongs to the operator or the control plane, the hot map to
 * vmtier, and virDomainSetMetadata replaces a namespace's element whole. With one shared element,
 * vmtier refreshing its map could overwrite a policy edited a moment before.
 *
 *   <vmtier:policy xmlns:vmtier="urn:x-vmtier:policy:1">{"mode":"tier",...}</vmtier:policy>
 *   <vmtier-hot:hotmap xmlns:vmtier-hot="urn:x-vmtier:hotmap:1" unit-bytes="2097152" pages="98304"
 *       units="48" hot="5" round="12" t="2026-12-03T13:00:00.000Z">BASE64</vmtier-hot:hotmap>
 *
 * The policy is JSON text (the same document `PUT /v1/vms/{uuid}/policy` takes), so an operator can
 * write it with `virsh metadata --set` without learning a second syntax.
 */
import { VmtierError } from '../errors.js';
import { parsePolicy, type TierPolicy } from '../policy/schema.js';

export const POLICY_NS = 'urn:x-vmtier:policy:1';
export const POLICY_KEY = 'vmtier';
export const HOTMAP_NS = 'urn:x-vmtier:hotmap:1';
export const HOTMAP_KEY = 'vmtier-hot';

/** One bit of the hot map covers this much guest memory (a THP-sized unit). */
export const HOT_UNIT_BYTES = 2 * 2 ** 20;

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeText(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|lt|gt|amp|quot|apos);/gi, (_, e: string) => {
    if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    return ENTITIES[e.toLowerCase()]!;
  });
}

function encodeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The root element's local name, attributes and text of a metadata element as libvirt returns it. */
function rootElement(xml: string): { name: string; attrs: Record<string, string>; text: string } | null {
  const m = /^\s*(?:<\?xml[^>]*\?>\s*)?<(?:[\w.-]+:)?([\w.-]+)((?:\s+[\w.:-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(?:\/>|>([\s\S]*?)<\/(?:[\w.-]+:)?\1\s*>)\s*$/.exec(xml);
  // Text only: markup inside (child elements, a second root) is not something vmtier wrote or reads.
  if (!m || (m[3] ?? '').includes('<')) return null;
  const attrs: Record<string, string> = {};
  for (const a of (m[2] ?? '').matchAll(/([\w.:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) attrs[a[1]!] = decodeText(a[2] ?? a[3] ?? '');
  return { name: m[1]!, attrs, text: m[3] ?? '' };
}

/** The policy element for virDomainSetMetadata (libvirt adds the namespace to the root). */
export function policyElement(policy: TierPolicy): string {
  // Unset limits are null inside vmtier and absent in the document (as on the API's wire).
  return `<policy>${encodeText(JSON.stringify(policy, (_k, v: unknown) => (v === null ? undefined : v)))}</policy>`;
}

/**
 * The policy in a metadata element; INVALID_POLICY (details.source = 'metadata') when the element
 * is not a <policy>, its text is not JSON, or the document breaks the policy schema.
 */
export function parsePolicyElement(xml: string): TierPolicy {
  const root = rootElement(xml);
  const bad = (msg: string, extra: Record<string, unknown> = {}) => new VmtierError('INVALID_POLICY', `policy in the domain metadata (${POLICY_NS}): ${msg}`, { source: 'metadata', ...extra });
  if (!root) throw bad('not a single XML element');
  if (root.name !== 'policy') throw bad(`expected a <policy> element, found <${root.name}>`);
  let doc: unknown;
  try {
    doc = JSON.parse(decodeText(root.text));
  } catch (e) {
    throw bad(`the element's text is not JSON: ${(e as Error).message}`);
  }
  try {
    return parsePolicy(doc);
  } catch (e) {
    if (e instanceof VmtierError) throw bad(e.message, e.details ?? {});
    throw e;
  }
}

/** A hot map: bit u set = unit u (HOT_UNIT_BYTES of guest memory in the canonical order) is hot. */
export interface HotMap {
  /** Guest memory the map covers, in 4 KiB pages (the destination checks it maps the same). */
  pages: number;
  unitBytes: number;
  /** ceil(pages * 4096 / unitBytes) bits, least significant bit first. */
  bits: Uint8Array;
  round: number;
  t: number;
}

export function unitCount(pages: number, unitBytes = HOT_UNIT_BYTES): number {
  return Math.ceil((pages * 4096) / unitBytes);
}

export function hotUnitList(bits: Uint8Array, units: number): number[] {
  const out: number[] = [];
  for (let u = 0; u < units; u++) if (bits[u >> 3]! & (1 << (u & 7))) out.push(u);
  return out;
}

export function hotMapElement(map: HotMap): string {
  const units = unitCount(map.pages, map.unitBytes);
  const hot = hotUnitList(map.bits, units).length;
  return (
    `<hotmap unit-bytes="${map.unitBytes}" pages="${map.pages}" units="${units}" hot="${hot}" round="${map.round}" t="${new Date(map.t).toISOString()}">` +
    `${Buffer.from(map.bits).toString('base64')}</hotmap>`
  );
}

/** The hot map in a metadata element; INVALID_XML when it is not one vmtier wrote. */
export function parseHotMapElement(xml: string): HotMap {
  const root = rootElement(xml);
  const bad = (msg: string) => new VmtierError('INVALID_XML', `hot map in the domain metadata (${HOTMAP_NS}): ${msg}`);
  if (!root || root.name !== 'hotmap') throw bad('not a <hotmap> element');
  const pages = Number(root.attrs.pages);
  const unitBytes = Number(root.attrs['unit-bytes']);
  if (!Number.isSafeInteger(pages) || pages <= 0) throw bad(`pages="${root.attrs.pages ?? ''}" is not a positive integer`);
  if (unitBytes !== HOT_UNIT_BYTES) throw bad(`unit-bytes="${root.attrs['unit-bytes'] ?? ''}": only ${HOT_UNIT_BYTES} is understood`);
  const text = root.text.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) throw bad('the element text is not base64');
  const bits = new Uint8Array(Buffer.from(text, 'base64'));
  const units = unitCount(pages, unitBytes);
  if (bits.length !== Math.ceil(units / 8)) throw bad(`${bits.length} bytes for ${units} units`);
  const t = Date.parse(root.attrs.t ?? '');
  return { pages, unitBytes, bits, round: Number(root.attrs.round) || 0, t: Number.isFinite(t) ? t : 0 };
}
