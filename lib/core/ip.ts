/**
 * IPv4 and IPv6 addresses and networks as plain numbers: IPv4 as an unsigned 32-bit
 * `number`, IPv6 as a 128-bit `bigint`. Pure; no I/O.
 *
 * Text forms follow Go's `net` package, because they end up in etcd keys and subnet.env
 * that upstream flanneld must read back byte for byte (IPv6 in canonical compressed
 * lowercase form).
 * @module
 */

/** An IPv4 network: address (host bits may be set until {@link ip4Net} masks them) and prefix. */
export interface IP4Net {
  readonly ip: number;
  readonly prefix: number;
}

/** An IPv6 network. */
export interface IP6Net {
  readonly ip: bigint;
  readonly prefix: number;
}

const V4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses dotted IPv4; returns null when invalid (leading zeros are rejected, as in Go ≥1.17). */
export function parseIP4(s: string): number | null {
  const m = V4_RE.exec(s);
  if (!m) return null;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i];
    if (part.length > 1 && part[0] === "0") return null;
    const n = Number(part);
    if (n > 255) return null;
    v = v * 256 + n;
  }
  return v;
}

/** Formats a u32 as dotted IPv4. */
export function formatIP4(ip: number): string {
  return `${(ip >>> 24) & 255}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

/** Netmask of a prefix length as u32. */
export function mask4(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Network with host bits cleared. */
export function ip4Net(ip: number, prefix: number): IP4Net {
  return { ip: (ip & mask4(prefix)) >>> 0, prefix };
}

/** Parses `a.b.c.d/n` and masks host bits off (Go's `ParseCIDR` network); null when invalid. */
export function parseCIDR4(s: string): IP4Net | null {
  const slash = s.indexOf("/");
  if (slash < 0) return null;
  const ip = parseIP4(s.slice(0, slash));
  const pstr = s.slice(slash + 1);
  if (ip === null || !/^\d{1,2}$/.test(pstr)) return null;
  const prefix = Number(pstr);
  if (prefix > 32) return null;
  return ip4Net(ip, prefix);
}

/** Parses `a.b.c.d/n` keeping host bits (for `10.5.52.1/24` in subnet.env); null when invalid. */
export function parseIfaceCIDR4(s: string): { ip: number; prefix: number } | null {
  const n = parseCIDR4(s);
  if (!n) return null;
  return { ip: parseIP4(s.slice(0, s.indexOf("/")))!, prefix: n.prefix };
}

/** `10.5.0.0/16` */
export function formatNet4(n: IP4Net): string {
  return `${formatIP4(n.ip)}/${n.prefix}`;
}

/** Number of addresses in a prefix (as a float-safe number: at most 2^32). */
export function size4(prefix: number): number {
  return 2 ** (32 - prefix);
}

/** Whether network `n` contains address `ip`. */
export function contains4(n: IP4Net, ip: number): boolean {
  return ((ip & mask4(n.prefix)) >>> 0) === n.ip;
}

/** Whether two networks share any address. */
export function overlaps4(a: IP4Net, b: IP4Net): boolean {
  return a.prefix <= b.prefix ? contains4(a, b.ip) : contains4(b, a.ip);
}

/** Whether two networks are identical. */
export function equal4(a: IP4Net, b: IP4Net): boolean {
  return a.ip === b.ip && a.prefix === b.prefix;
}

// ---------------------------------------------------------------- IPv6

const MAX128 = (1n << 128n) - 1n;

/** Parses IPv6 text (with `::` and an optional dotted IPv4 tail); null when invalid. */
export function parseIP6(s: string): bigint | null {
  if (!s || /[^0-9a-fA-F:.]/.test(s)) return null;
  let groups: number[] = [];
  let tail = s;
  // Dotted IPv4 tail takes two groups.
  const lastColon = s.lastIndexOf(":");
  if (s.includes(".")) {
    const v4 = parseIP4(s.slice(lastColon + 1));
    if (v4 === null) return null;
    tail = s.slice(0, lastColon + 1) + `${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const dbl = tail.indexOf("::");
  if (dbl !== tail.lastIndexOf("::")) return null;
  const parse = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    for (const g of part.split(":")) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  if (dbl >= 0) {
    const head = parse(tail.slice(0, dbl));
    const rest = parse(tail.slice(dbl + 2));
    if (!head || !rest || head.length + rest.length > 7) return null;
    groups = [...head, ...new Array(8 - head.length - rest.length).fill(0), ...rest];
  } else {
    const all = parse(tail);
    if (!all || all.length !== 8) return null;
    groups = all;
  }
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(g);
  return v;
}

/** Formats IPv6 in Go's canonical form: lowercase, longest run (≥2) of zero groups as `::`. */
export function formatIP6(ip: bigint): string {
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((ip >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  if (bestLen < 2) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/** Netmask of a v6 prefix. */
export function mask6(prefix: number): bigint {
  return prefix === 0 ? 0n : (MAX128 << BigInt(128 - prefix)) & MAX128;
}

/** Network with host bits cleared. */
export function ip6Net(ip: bigint, prefix: number): IP6Net {
  return { ip: ip & mask6(prefix), prefix };
}

/** Parses `x::/n`, masking host bits; null when invalid. */
export function parseCIDR6(s: string): IP6Net | null {
  const slash = s.indexOf("/");
  if (slash < 0) return null;
  const ip = parseIP6(s.slice(0, slash));
  const pstr = s.slice(slash + 1);
  if (ip === null || !/^\d{1,3}$/.test(pstr)) return null;
  const prefix = Number(pstr);
  if (prefix > 128) return null;
  return ip6Net(ip, prefix);
}

/** `2001:cafe::/64` */
export function formatNet6(n: IP6Net): string {
  return `${formatIP6(n.ip)}/${n.prefix}`;
}

/** Number of addresses in a v6 prefix. */
export function size6(prefix: number): bigint {
  return 1n << BigInt(128 - prefix);
}

/** Whether `n` contains `ip`. */
export function contains6(n: IP6Net, ip: bigint): boolean {
  return (ip & mask6(n.prefix)) === n.ip;
}

/** Whether two v6 networks share any address. */
export function overlaps6(a: IP6Net, b: IP6Net): boolean {
  return a.prefix <= b.prefix ? contains6(a, b.ip) : contains6(b, a.ip);
}

// ------------------------------------------------------------ either family

/** An address of either family: IPv4 as a u32 `number`, IPv6 as a `bigint`. */
export type IP = number | bigint;

/** A network of either family. */
export type IPNet = IP4Net | IP6Net;

/** Whether `n` is an IPv6 network. */
export function isNet6(n: IPNet): n is IP6Net {
  return typeof n.ip === "bigint";
}

/** 4 or 6, by the type of the address. */
export function familyOf(ip: IP): 4 | 6 {
  return typeof ip === "bigint" ? 6 : 4;
}

/** Dotted IPv4 or canonical IPv6 text. */
export function formatIP(ip: IP): string {
  return typeof ip === "bigint" ? formatIP6(ip) : formatIP4(ip);
}

/** `10.5.0.0/16` or `fd42::/56`. */
export function formatNet(n: { ip: IP; prefix: number }): string {
  return `${formatIP(n.ip)}/${n.prefix}`;
}

/** Whether two networks are identical (never across families). */
export function equalNet(a: { ip: IP; prefix: number }, b: { ip: IP; prefix: number }): boolean {
  return a.ip === b.ip && a.prefix === b.prefix;
}

/** Whether network `n` contains address `ip` (never across families). */
export function containsIP(n: { ip: IP; prefix: number }, ip: IP): boolean {
  if (typeof n.ip === "bigint") {
    return typeof ip === "bigint" && contains6({ ip: n.ip, prefix: n.prefix }, ip);
  }
  return typeof ip === "number" && contains4({ ip: n.ip, prefix: n.prefix }, ip);
}

/** Whether `inner` lies inside `outer` (same family, same or longer prefix). */
export function netInside(
  outer: { ip: IP; prefix: number },
  inner: { ip: IP; prefix: number },
): boolean {
  return inner.prefix >= outer.prefix && containsIP(outer, inner.ip);
}

/** Go's `IsLinkLocalUnicast` for IPv6: fe80::/10. */
export function isLinkLocal6(ip: bigint): boolean {
  return ip >> 118n === 0x3fan;
}
