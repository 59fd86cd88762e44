/**
 * Subnet leases as upstream flanneld stores them in etcd: the key
 * (`10.5.52.0-24`, `10.42.1.0-24&2001:cafe:42:1::-64`) and the value JSON
 * (`LeaseAttrs`), byte for byte. Pure; no I/O.
 * @module
 */

import { field, marshalGo } from "../core/json.ts";
import {
  formatIP4,
  formatIP6,
  formatNet4,
  formatNet6,
  type IP4Net,
  ip4Net,
  type IP6Net,
  ip6Net,
  parseIP4,
  parseIP6,
} from "../core/ip.ts";

/** What a host advertises in its lease. */
export interface LeaseAttrs {
  /** IPv4 public address; 0 ("0.0.0.0") when unset. */
  publicIP: number;
  /** IPv6 public address, or null (serialized as `null`). */
  publicIPv6: bigint | null;
  /** Omitted when empty (udp and alloc leave it empty). */
  backendType?: string;
  /** Backend JSON object, serialized compactly in its own key order. */
  backendData?: unknown;
  backendV6Data?: unknown;
}

/** A lease: subnet(s), attributes, and etcd bookkeeping. */
export interface Lease {
  subnet: IP4Net;
  ipv6Subnet?: IP6Net;
  attrs: LeaseAttrs;
  /** etcd lease ID ("0" for a lease-less reservation). */
  leaseId?: string;
  /** Expiry time in ms since epoch; 0 for a reservation. */
  expiration?: number;
  /** etcd mod_revision of the key. */
  modRevision?: bigint;
}

/** A change in the set of remote leases. */
export interface LeaseEvent {
  type: "added" | "removed";
  lease: Lease;
}

/** `10.5.52.0-24` or `10.5.52.0-24&fd00::-64`. */
export function subnetKey(subnet: IP4Net, ipv6?: IP6Net): string {
  const v4 = `${formatIP4(subnet.ip)}-${subnet.prefix}`;
  return ipv6 ? `${v4}&${formatIP6(ipv6.ip)}-${ipv6.prefix}` : v4;
}

// Upstream matches at the end of the full key, not anchored at the start.
const KEY_RE = /(\d+\.\d+\.\d+\.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;

/** The subnets a key names, masked, and whether it names them exactly. */
export interface KeySubnets {
  subnet: IP4Net;
  ipv6Subnet?: IP6Net;
  /** False when an address in the key has host bits set (`10.5.2.3-24`). */
  exact: boolean;
}

/**
 * Reads the subnets out of a key (full etcd path or bare), as upstream's parser does;
 * null when it is not a subnet key at all. A key with host bits set still names (and
 * occupies) the masked subnet: upstream reads such a key as that subnet.
 */
export function keySubnets(key: string): KeySubnets | null {
  const m = KEY_RE.exec(key);
  if (!m) return null;
  const ip = parseIP4(m[1]);
  const prefix = Number(m[2]);
  // Upstream: strconv.ParseUint(prefix, 10, 5), so /32 (6 bits) is rejected; leading zeros are fine.
  if (ip === null || prefix > 31) return null;
  const out: KeySubnets = { subnet: ip4Net(ip, prefix), exact: true };
  if (out.subnet.ip !== ip) out.exact = false;
  if (m[3] !== undefined) {
    const ip6 = parseIP6(m[3]);
    const p6 = Number(m[4]);
    if (ip6 === null || p6 > 127) return null; // ParseUint(prefix, 10, 7)
    out.ipv6Subnet = ip6Net(ip6, p6);
    if (out.ipv6Subnet.ip !== ip6) out.exact = false;
  }
  return out;
}

/**
 * Parses a key that names its subnets exactly (what every flanneld writes); null when it is
 * not a subnet key or has host bits set. Such keys are never routed to: a route to
 * `10.5.2.3/24` is refused by the kernel, and no flanneld wrote the key.
 */
export function parseSubnetKey(key: string): { subnet: IP4Net; ipv6Subnet?: IP6Net } | null {
  const k = keySubnets(key);
  if (!k?.exact) return null;
  return k.ipv6Subnet ? { subnet: k.subnet, ipv6Subnet: k.ipv6Subnet } : { subnet: k.subnet };
}

/** Encodes attrs exactly as Go's `json.Marshal(LeaseAttrs)` does. */
export function encodeLeaseAttrs(a: LeaseAttrs): string {
  let s = `{"PublicIP":"${formatIP4(a.publicIP)}","PublicIPv6":${
    a.publicIPv6 === null ? "null" : `"${formatIP6(a.publicIPv6)}"`
  }`;
  if (a.backendType) s += `,"BackendType":${marshalGo(a.backendType)}`;
  if (a.backendData !== undefined && a.backendData !== null) {
    s += `,"BackendData":${marshalGo(a.backendData)}`;
  }
  if (a.backendV6Data !== undefined && a.backendV6Data !== null) {
    s += `,"BackendV6Data":${marshalGo(a.backendV6Data)}`;
  }
  return s + "}";
}

/** Error for a lease value that cannot be used; names the key and the reason. */
export class LeaseParseError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = "LeaseParseError";
  }
}

/** Decodes a lease value; throws {@link LeaseParseError} for anything upstream would reject. */
export function decodeLeaseAttrs(text: string): LeaseAttrs {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new LeaseParseError(`lease value is not JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new LeaseParseError("lease value is not a JSON object");
  }
  const o = raw as Record<string, unknown>;
  const pub = field(o, "PublicIP");
  let publicIP = 0;
  // Absent is 0.0.0.0 (IPv6-only hosts write that); null is refused, as upstream does.
  if (pub === null) throw new LeaseParseError("PublicIP is null");
  if (pub !== undefined) {
    const ip = typeof pub === "string" ? parseIP4(pub) : null;
    if (ip === null) {
      throw new LeaseParseError(`PublicIP ${JSON.stringify(pub)} is not an IPv4 address`);
    }
    publicIP = ip;
  }
  const pub6 = field(o, "PublicIPv6");
  let publicIPv6: bigint | null = null;
  if (pub6 !== undefined && pub6 !== null) {
    const ip = typeof pub6 === "string" ? parseIP6(pub6) : null;
    if (ip === null) {
      throw new LeaseParseError(`PublicIPv6 ${JSON.stringify(pub6)} is not an IPv6 address`);
    }
    publicIPv6 = ip;
  }
  const bt = field(o, "BackendType");
  if (bt !== undefined && bt !== null && typeof bt !== "string") {
    throw new LeaseParseError("BackendType is not a string");
  }
  const attrs: LeaseAttrs = { publicIP, publicIPv6 };
  if (bt) attrs.backendType = bt as string;
  const bd = field(o, "BackendData");
  if (bd !== undefined && bd !== null) attrs.backendData = bd;
  const bd6 = field(o, "BackendV6Data");
  if (bd6 !== undefined && bd6 !== null) attrs.backendV6Data = bd6;
  return attrs;
}

/**
 * `10.5.52.0/24` (and `,fd00::/64`) for log lines; an IPv6-only lease (IPv4 part
 * 0.0.0.0/0) shows its IPv6 subnet alone.
 */
export function describeLease(l: { subnet: IP4Net; ipv6Subnet?: IP6Net }): string {
  if (!l.ipv6Subnet) return formatNet4(l.subnet);
  const v6 = formatNet6(l.ipv6Subnet);
  return l.subnet.prefix === 0 ? v6 : `${formatNet4(l.subnet)},${v6}`;
}

/**
 * Whether `l` names the host with attrs `me`: the same PublicIP or, in an IPv6-only network
 * (PublicIP 0.0.0.0), the same PublicIPv6. False when `me` has neither.
 */
export function samePublicAddress(l: LeaseAttrs, me: LeaseAttrs): boolean {
  if (me.publicIP !== 0) return l.publicIP === me.publicIP;
  return me.publicIPv6 !== null && l.publicIPv6 === me.publicIPv6;
}

/** Whether two leases name the same subnets (the same key). */
export function sameSubnets(
  a: { subnet: IP4Net; ipv6Subnet?: IP6Net },
  b: { subnet: IP4Net; ipv6Subnet?: IP6Net },
): boolean {
  return subnetKey(a.subnet, a.ipv6Subnet) === subnetKey(b.subnet, b.ipv6Subnet);
}
