/**
 * rtnetlink wire format, pure (no FFI): netlink headers, attributes (rtattr/nlattr, nested),
 * the fixed per-family headers (ifinfomsg, ifaddrmsg, rtmsg, ndmsg) and the control
 * messages (NLMSG_ERROR / ACK, NLMSG_DONE). Layouts and numbers follow the kernel uapi
 * headers linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h and neighbour.h.
 *
 * Netlink is host byte order; addresses and ports inside attributes are network order.
 * @module
 */

// ------------------------------------------------------------------ constants

/** Message types (netlink.h, rtnetlink.h). */
export const NLMSG_NOOP = 1, NLMSG_ERROR = 2, NLMSG_DONE = 3, NLMSG_OVERRUN = 4;
export const RTM_NEWLINK = 16, RTM_DELLINK = 17, RTM_GETLINK = 18;
export const RTM_NEWADDR = 20, RTM_DELADDR = 21, RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24, RTM_DELROUTE = 25, RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28, RTM_DELNEIGH = 29, RTM_GETNEIGH = 30;

/** nlmsg_flags. */
export const NLM_F_REQUEST = 0x1, NLM_F_MULTI = 0x2, NLM_F_ACK = 0x4, NLM_F_DUMP_INTR = 0x10;
export const NLM_F_ROOT = 0x100, NLM_F_MATCH = 0x200, NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100, NLM_F_EXCL = 0x200, NLM_F_CREATE = 0x400;
/** Flags on an NLMSG_ERROR: request echo capped, extended-ack TLVs follow. */
export const NLM_F_CAPPED = 0x100, NLM_F_ACK_TLVS = 0x200;

/** Socket options (SOL_NETLINK level). */
export const SOL_NETLINK = 270;
export const NETLINK_ROUTE = 0;
export const NETLINK_ADD_MEMBERSHIP = 1, NETLINK_DROP_MEMBERSHIP = 2;
export const NETLINK_CAP_ACK = 10, NETLINK_EXT_ACK = 11;
/** Extended ack attributes. */
export const NLMSGERR_ATTR_MSG = 1, NLMSGERR_ATTR_OFFS = 2;

/** Multicast groups for NETLINK_ADD_MEMBERSHIP (enum rtnetlink_groups). */
export const RTNLGRP_LINK = 1, RTNLGRP_NEIGH = 3, RTNLGRP_IPV4_IFADDR = 5, RTNLGRP_IPV4_ROUTE = 7;
export const RTNLGRP_IPV6_IFADDR = 9, RTNLGRP_IPV6_ROUTE = 11;

/** Attribute type flag bits (netlink.h). */
export const NLA_F_NESTED = 0x8000, NLA_F_NET_BYTEORDER = 0x4000;
const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

/** Address families carried in the family byte. */
export const AF_UNSPEC = 0, AF_INET = 2, AF_BRIDGE = 7, AF_INET6 = 10;

/** Interface flags (linux/if.h). */
export const IFF_UP = 0x1, IFF_LOOPBACK = 0x8, IFF_RUNNING = 0x40, IFF_LOWER_UP = 0x10000;

/** Link attributes (if_link.h). */
export const IFLA_ADDRESS = 1, IFLA_IFNAME = 3, IFLA_MTU = 4, IFLA_LINK = 5, IFLA_MASTER = 10;
export const IFLA_OPERSTATE = 16, IFLA_LINKINFO = 18;
export const IFLA_INFO_KIND = 1, IFLA_INFO_DATA = 2;
export const IFLA_VXLAN_ID = 1, IFLA_VXLAN_GROUP = 2, IFLA_VXLAN_LINK = 3, IFLA_VXLAN_LOCAL = 4;
export const IFLA_VXLAN_LEARNING = 7, IFLA_VXLAN_L2MISS = 13, IFLA_VXLAN_L3MISS = 14;
export const IFLA_VXLAN_PORT = 15, IFLA_VXLAN_LOCAL6 = 17, IFLA_VXLAN_GBP = 23;

/** Address attributes and flags (if_addr.h). */
export const IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_LABEL = 3, IFA_BROADCAST = 4, IFA_FLAGS = 8;
export const IFA_F_SECONDARY = 0x01, IFA_F_TEMPORARY = 0x01, IFA_F_NODAD = 0x02;
export const IFA_F_DEPRECATED = 0x20, IFA_F_TENTATIVE = 0x40, IFA_F_PERMANENT = 0x80;

/** Route attributes and values (rtnetlink.h). */
export const RTA_DST = 1, RTA_SRC = 2, RTA_IIF = 3, RTA_OIF = 4, RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6, RTA_PREFSRC = 7, RTA_MULTIPATH = 9, RTA_TABLE = 15;
export const RT_TABLE_UNSPEC = 0, RT_TABLE_MAIN = 254, RT_TABLE_LOCAL = 255;
export const RTPROT_UNSPEC = 0, RTPROT_KERNEL = 2, RTPROT_BOOT = 3, RTPROT_STATIC = 4;
export const RT_SCOPE_UNIVERSE = 0, RT_SCOPE_SITE = 200, RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254, RT_SCOPE_NOWHERE = 255;
export const RTN_UNSPEC = 0, RTN_UNICAST = 1, RTN_LOCAL = 2, RTN_BLACKHOLE = 6;
export const RTNH_F_ONLINK = 0x4;
export const RTM_F_CLONED = 0x200;

/** Neighbour attributes, states and flags (neighbour.h). */
export const NDA_DST = 1, NDA_LLADDR = 2, NDA_PORT = 6, NDA_VNI = 7, NDA_IFINDEX = 8;
export const NUD_INCOMPLETE = 0x01, NUD_REACHABLE = 0x02, NUD_STALE = 0x04, NUD_FAILED = 0x20;
export const NUD_NOARP = 0x40, NUD_PERMANENT = 0x80;
export const NTF_SELF = 0x02, NTF_MASTER = 0x04;

/** Size of struct nlmsghdr; also the alignment unit of messages and attributes is 4. */
export const NLMSG_HDRLEN = 16;
const ALIGN = 4;

/** Rounds up to the 4-byte netlink alignment (NLMSG_ALIGN / NLA_ALIGN). */
export function align(n: number): number {
  return (n + ALIGN - 1) & ~(ALIGN - 1);
}

// Netlink carries host byte order; every platform we run on is little-endian, but say so once.
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Malformed input from the kernel (or a test): never silently skipped, never looped on. */
export class NetlinkParseError extends Error {
  constructor(msg: string) {
    super(`netlink: ${msg}`);
    this.name = "NetlinkParseError";
  }
}

/**
 * A failed netlink request: names the operation and the errno, e.g.
 * `route replace 10.5.53.0/24: EEXIST: File exists`. The socket layer fills in the errno's
 * name and text (this module has no libc access).
 */
export class NetlinkError extends Error {
  constructor(
    /** What was being done, e.g. `route replace 10.5.53.0/24`. */
    readonly op: string,
    /** Positive errno. */
    readonly errno: number,
    /** Symbolic errno name, e.g. `EEXIST`. */
    readonly code: string,
    text: string,
    /** The kernel's extended-ack message, when it sent one. */
    readonly extAck?: string,
  ) {
    super(`${op}: ${code}: ${text}${extAck ? ` (${extAck})` : ""}`);
    this.name = "NetlinkError";
  }
}

/** Whether `e` is a {@link NetlinkError} with the given errno name. */
export function isNetlinkError(e: unknown, code?: string): e is NetlinkError {
  return e instanceof NetlinkError && (code === undefined || e.code === code);
}

// ------------------------------------------------------------- fixed structs

type FieldType = "u8" | "u16" | "u32" | "i32";
const FIELD_SIZE: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, i32: 4 };

/** A fixed C struct of integer fields in host byte order, described once, encoded and decoded. */
export class Struct<K extends string> {
  readonly size: number;
  readonly #fields: { name: K | null; type: FieldType; offset: number }[] = [];

  /** `fields` in declaration order; `null` names are padding (always written as 0). */
  constructor(readonly name: string, fields: [K | null, FieldType][]) {
    let off = 0;
    for (const [n, t] of fields) {
      this.#fields.push({ name: n, type: t, offset: off });
      off += FIELD_SIZE[t];
    }
    this.size = off;
  }

  /** Encodes; missing fields are 0. */
  encode(values: Partial<Record<K, number>>): Uint8Array {
    const b = new Uint8Array(this.size);
    const v = new DataView(b.buffer);
    for (const f of this.#fields) {
      const x = f.name === null ? 0 : values[f.name] ?? 0;
      if (f.type === "u8") v.setUint8(f.offset, x);
      else if (f.type === "u16") v.setUint16(f.offset, x, HOST_LE);
      else if (f.type === "u32") v.setUint32(f.offset, x >>> 0, HOST_LE);
      else v.setInt32(f.offset, x, HOST_LE);
    }
    return b;
  }

  /** Decodes the struct at the start of `b`; throws when `b` is too short. */
  decode(b: Uint8Array): Record<K, number> {
    if (b.byteLength < this.size) {
      throw new NetlinkParseError(`${this.name} truncated: ${b.byteLength} < ${this.size} bytes`);
    }
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const out = {} as Record<K, number>;
    for (const f of this.#fields) {
      if (f.name === null) continue;
      out[f.name] = f.type === "u8"
        ? v.getUint8(f.offset)
        : f.type === "u16"
        ? v.getUint16(f.offset, HOST_LE)
        : f.type === "u32"
        ? v.getUint32(f.offset, HOST_LE)
        : v.getInt32(f.offset, HOST_LE);
    }
    return out;
  }
}

/** struct nlmsghdr. */
export const NLMSGHDR = new Struct("nlmsghdr", [
  ["len", "u32"],
  ["type", "u16"],
  ["flags", "u16"],
  ["seq", "u32"],
  ["pid", "u32"],
]);
/** struct ifinfomsg (16 bytes). */
export const IFINFOMSG = new Struct("ifinfomsg", [
  ["family", "u8"],
  [null, "u8"],
  ["type", "u16"],
  ["index", "i32"],
  ["flags", "u32"],
  ["change", "u32"],
]);
/** struct ifaddrmsg (8 bytes). */
export const IFADDRMSG = new Struct("ifaddrmsg", [
  ["family", "u8"],
  ["prefixlen", "u8"],
  ["flags", "u8"],
  ["scope", "u8"],
  ["index", "u32"],
]);
/** struct rtmsg (12 bytes). */
export const RTMSG = new Struct("rtmsg", [
  ["family", "u8"],
  ["dstLen", "u8"],
  ["srcLen", "u8"],
  ["tos", "u8"],
  ["table", "u8"],
  ["protocol", "u8"],
  ["scope", "u8"],
  ["type", "u8"],
  ["flags", "u32"],
]);
/** struct ndmsg (12 bytes). */
export const NDMSG = new Struct("ndmsg", [
  ["family", "u8"],
  [null, "u8"],
  [null, "u16"],
  ["index", "i32"],
  ["state", "u16"],
  ["flags", "u8"],
  ["type", "u8"],
]);

// ---------------------------------------------------------------- attributes

/** An attribute to encode: raw bytes, or a list of children (sent with NLA_F_NESTED). */
export type Attr = { type: number; data: Uint8Array } | { type: number; nested: Attr[] };

function intBytes(size: 1 | 2 | 4, v: number, littleEndian: boolean): Uint8Array {
  const b = new Uint8Array(size);
  const d = new DataView(b.buffer);
  if (size === 1) d.setUint8(0, v);
  else if (size === 2) d.setUint16(0, v, littleEndian);
  else d.setUint32(0, v >>> 0, littleEndian);
  return b;
}

/** Attribute constructors for the value encodings rtnetlink uses. */
export const attr = {
  bytes: (type: number, data: Uint8Array): Attr => ({ type, data }),
  u8: (type: number, v: number): Attr => ({ type, data: intBytes(1, v, HOST_LE) }),
  u16: (type: number, v: number): Attr => ({ type, data: intBytes(2, v, HOST_LE) }),
  u32: (type: number, v: number): Attr => ({ type, data: intBytes(4, v, HOST_LE) }),
  /** Big-endian 16-bit (UDP ports, e.g. IFLA_VXLAN_PORT). */
  be16: (type: number, v: number): Attr => ({ type, data: intBytes(2, v, false) }),
  /** IPv4 address (u32) in network order. */
  ip4: (type: number, ip: number): Attr => ({ type, data: intBytes(4, ip, false) }),
  /** IPv6 address (bigint) in network order. */
  ip6: (type: number, ip: bigint): Attr => ({ type, data: ip6Bytes(ip) }),
  /** An address of either family: 4 bytes for a `number`, 16 for a `bigint`. */
  ip: (type: number, ip: number | bigint): Attr => ({
    type,
    data: typeof ip === "bigint" ? ip6Bytes(ip) : intBytes(4, ip, false),
  }),
  /** NUL-terminated string. */
  str: (type: number, s: string): Attr => {
    const enc = new TextEncoder().encode(s);
    const b = new Uint8Array(enc.length + 1);
    b.set(enc);
    return { type, data: b };
  },
  /** Zero-length flag attribute (present = true). */
  flag: (type: number): Attr => ({ type, data: new Uint8Array(0) }),
  nest: (type: number, nested: Attr[]): Attr => ({ type, nested }),
};

function ip6Bytes(ip: bigint): Uint8Array {
  const b = new Uint8Array(16);
  const d = new DataView(b.buffer);
  d.setBigUint64(0, ip >> 64n, false);
  d.setBigUint64(8, ip & 0xffff_ffff_ffff_ffffn, false);
  return b;
}

function attrLength(a: Attr): number {
  return 4 +
    ("nested" in a ? a.nested.reduce((n, c) => n + align(attrLength(c)), 0) : a.data.byteLength);
}

/** Writes `attrs` at `off` of `b` (zeroed beforehand); returns the end offset (aligned). */
function writeAttrs(b: Uint8Array, v: DataView, off: number, attrs: Attr[]): number {
  for (const a of attrs) {
    const len = attrLength(a);
    if (len > 0xffff) throw new RangeError(`netlink attribute ${a.type} too long (${len} bytes)`);
    v.setUint16(off, len, HOST_LE);
    if ("nested" in a) {
      v.setUint16(off + 2, a.type | NLA_F_NESTED, HOST_LE);
      writeAttrs(b, v, off + 4, a.nested);
    } else {
      v.setUint16(off + 2, a.type, HOST_LE);
      b.set(a.data, off + 4);
    }
    off += align(len);
  }
  return off;
}

/** Encodes attributes back to back, each padded to 4 bytes. */
export function encodeAttrs(attrs: Attr[]): Uint8Array {
  const b = new Uint8Array(attrs.reduce((n, a) => n + align(attrLength(a)), 0));
  writeAttrs(b, new DataView(b.buffer), 0, attrs);
  return b;
}

/** Parsed attributes of one level; nested levels are parsed on demand with {@link Attrs.nested}. */
export class Attrs {
  readonly #map = new Map<number, Uint8Array>();

  /** Parses a run of attributes; trailing bytes shorter than an attribute header are padding. */
  constructor(b: Uint8Array) {
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    let off = 0;
    while (b.byteLength - off >= 4) {
      const len = v.getUint16(off, HOST_LE);
      const type = v.getUint16(off + 2, HOST_LE) & NLA_TYPE_MASK;
      if (len < 4) throw new NetlinkParseError(`attribute ${type} has invalid length ${len}`);
      if (off + len > b.byteLength) {
        throw new NetlinkParseError(
          `attribute ${type} truncated: needs ${len} bytes, ${b.byteLength - off} left`,
        );
      }
      // First occurrence wins: the objects we read never repeat a type at one level.
      if (!this.#map.has(type)) this.#map.set(type, b.subarray(off + 4, off + len));
      off += align(len);
    }
  }

  /** Attribute types present, in order of first occurrence. */
  types(): number[] {
    return [...this.#map.keys()];
  }
  has(type: number): boolean {
    return this.#map.has(type);
  }
  /** Raw payload, undefined when absent. */
  get(type: number): Uint8Array | undefined {
    return this.#map.get(type);
  }
  u8(type: number): number | undefined {
    return this.#int(type, 1);
  }
  u16(type: number): number | undefined {
    return this.#int(type, 2);
  }
  u32(type: number): number | undefined {
    return this.#int(type, 4);
  }
  /** Big-endian u16 (ports). */
  be16(type: number): number | undefined {
    const b = this.#sized(type, 2);
    return b && new DataView(b.buffer, b.byteOffset, 2).getUint16(0, false);
  }
  /** IPv4 address as u32 (host order). */
  ip4(type: number): number | undefined {
    const b = this.#sized(type, 4);
    return b && new DataView(b.buffer, b.byteOffset, 4).getUint32(0, false);
  }
  /** IPv6 address as bigint. */
  ip6(type: number): bigint | undefined {
    const b = this.#sized(type, 16);
    if (!b) return undefined;
    const d = new DataView(b.buffer, b.byteOffset, 16);
    return (d.getBigUint64(0, false) << 64n) | d.getBigUint64(8, false);
  }
  /**
   * An address of either family by its length: 4 bytes as a u32 `number`, 16 as a
   * `bigint`; undefined when absent or of another length.
   */
  ip(type: number): number | bigint | undefined {
    const len = this.#map.get(type)?.byteLength;
    return len === 4 ? this.ip4(type) : len === 16 ? this.ip6(type) : undefined;
  }
  /** String without its NUL terminator. */
  str(type: number): string | undefined {
    const b = this.#map.get(type);
    if (!b) return undefined;
    const nul = b.indexOf(0);
    return new TextDecoder().decode(nul < 0 ? b : b.subarray(0, nul));
  }
  /** Children of a nested attribute; undefined when absent. */
  nested(type: number): Attrs | undefined {
    const b = this.#map.get(type);
    return b && new Attrs(b);
  }

  #sized(type: number, size: number): Uint8Array | undefined {
    const b = this.#map.get(type);
    if (b && b.byteLength < size) {
      throw new NetlinkParseError(`attribute ${type} too short: ${b.byteLength} < ${size} bytes`);
    }
    return b;
  }
  #int(type: number, size: 1 | 2 | 4): number | undefined {
    const b = this.#sized(type, size);
    if (!b) return undefined;
    const d = new DataView(b.buffer, b.byteOffset, size);
    return size === 1
      ? d.getUint8(0)
      : size === 2
      ? d.getUint16(0, HOST_LE)
      : d.getUint32(0, HOST_LE);
  }
}

// ------------------------------------------------------------------ messages

/** Header fields of a message to send; seq and pid are usually left to the socket. */
export interface MessageHeader {
  type: number;
  flags: number;
  seq?: number;
  pid?: number;
}

/** Builds one netlink message: nlmsghdr + fixed family header + attributes. */
export function encodeMessage(h: MessageHeader, fixed: Uint8Array, attrs: Attr[] = []): Uint8Array {
  const body = align(fixed.byteLength);
  const tail = encodeAttrs(attrs);
  const len = NLMSG_HDRLEN + body + tail.byteLength;
  const b = new Uint8Array(len);
  b.set(NLMSGHDR.encode({ len, type: h.type, flags: h.flags, seq: h.seq ?? 0, pid: h.pid ?? 0 }));
  b.set(fixed, NLMSG_HDRLEN);
  b.set(tail, NLMSG_HDRLEN + body);
  return b;
}

/** Overwrites the sequence number of an encoded message (the socket numbers requests). */
export function setSeq(msg: Uint8Array, seq: number): void {
  new DataView(msg.buffer, msg.byteOffset, msg.byteLength).setUint32(8, seq >>> 0, HOST_LE);
}

/** ORs flags into an encoded message's header. */
export function addFlags(msg: Uint8Array, flags: number): void {
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  v.setUint16(6, v.getUint16(6, HOST_LE) | flags, HOST_LE);
}

/** One received message; `payload` is everything after the nlmsghdr. */
export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  payload: Uint8Array;
}

/**
 * Splits a datagram into messages (a dump packs several into one datagram).
 * Throws {@link NetlinkParseError} on a header that is truncated or whose length is
 * impossible, so that garbage can never make a reader loop.
 */
export function parseMessages(b: Uint8Array): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off < b.byteLength) {
    if (b.byteLength - off < NLMSG_HDRLEN) {
      throw new NetlinkParseError(`truncated message header: ${b.byteLength - off} bytes`);
    }
    const h = NLMSGHDR.decode(b.subarray(off));
    if (h.len < NLMSG_HDRLEN) {
      throw new NetlinkParseError(`message length ${h.len} shorter than its header`);
    }
    if (off + h.len > b.byteLength) {
      throw new NetlinkParseError(
        `message truncated: length ${h.len}, ${b.byteLength - off} bytes received`,
      );
    }
    out.push({
      type: h.type,
      flags: h.flags,
      seq: h.seq,
      pid: h.pid,
      payload: b.subarray(off + NLMSG_HDRLEN, off + h.len),
    });
    off += align(h.len);
  }
  return out;
}

/** A decoded NLMSG_ERROR: `errno` 0 is an ACK. */
export interface ErrorInfo {
  /** Positive errno (the kernel sends -errno), 0 for an ACK. */
  errno: number;
  /** Extended ack text (NETLINK_EXT_ACK), if any. */
  extAck?: string;
}

/** Decodes the payload of an NLMSG_ERROR message (struct nlmsgerr + optional ext-ack TLVs). */
export function decodeError(m: NlMessage): ErrorInfo {
  const p = m.payload;
  if (p.byteLength < 4) throw new NetlinkParseError(`NLMSG_ERROR truncated: ${p.byteLength} bytes`);
  const err = new DataView(p.buffer, p.byteOffset, 4).getInt32(0, HOST_LE);
  const info: ErrorInfo = { errno: -err | 0 }; // `| 0`: no -0 for an ACK
  if (m.flags & NLM_F_ACK_TLVS && p.byteLength >= 4 + NLMSG_HDRLEN) {
    // The echoed request is only its header when capped, else the whole request.
    const echoed = m.flags & NLM_F_CAPPED
      ? NLMSG_HDRLEN
      : align(NLMSGHDR.decode(p.subarray(4)).len);
    if (4 + echoed <= p.byteLength) {
      info.extAck = new Attrs(p.subarray(4 + echoed)).str(NLMSGERR_ATTR_MSG);
    }
  }
  return info;
}

/** Decodes the payload of NLMSG_DONE: a dump's final status (0 or -errno; absent on old kernels). */
export function decodeDone(m: NlMessage): number {
  if (m.payload.byteLength < 4) return 0;
  return -new DataView(m.payload.buffer, m.payload.byteOffset, 4).getInt32(0, HOST_LE) | 0;
}

/** Splits the payload of an rtnetlink message into its fixed header and attributes. */
export function decodeBody<K extends string>(
  s: Struct<K>,
  m: NlMessage,
): { hdr: Record<K, number>; attrs: Attrs } {
  const hdr = s.decode(m.payload);
  return { hdr, attrs: new Attrs(m.payload.subarray(align(s.size))) };
}

// ------------------------------------------------------ request conveniences

/** Modifiers of a NEW request: `replace` (create or overwrite) and `add` (create, EEXIST if present). */
export const REPLACE = NLM_F_CREATE | NLM_F_REPLACE, ADD = NLM_F_CREATE | NLM_F_EXCL;

/** A request expecting an ACK: NLM_F_REQUEST | NLM_F_ACK | `flags`. */
export function requestMessage(
  type: number,
  flags: number,
  fixed: Uint8Array,
  attrs: Attr[] = [],
): Uint8Array {
  return encodeMessage({ type, flags: NLM_F_REQUEST | NLM_F_ACK | flags }, fixed, attrs);
}

/**
 * The handle every rtnetlink operation (links, addresses, routes, neighbours) takes: the
 * request side of a socket. The object modules import no FFI, and a test passes an
 * in-memory kernel instead of a `NetlinkSocket` (socket.ts).
 */
export interface Requester {
  /** Sends `msg` with NLM_F_ACK; returns the answers before the ACK, throws NetlinkError. */
  request(msg: Uint8Array, op: string): NlMessage[];
  /** Sends `msg` with NLM_F_DUMP; returns every part before NLMSG_DONE. */
  dump(msg: Uint8Array, op: string): NlMessage[];
  /** {@link dump}, decoding the parts of message type `type` as they arrive (see dumpAs). */
  dumpDecoded<T>(msg: Uint8Array, op: string, type: number, decode: (m: NlMessage) => T): T[];
}

/**
 * Notifications of the multicast groups subscribed to, a batch per wake-up (what one wake-up
 * drained), until {@link close}. A batch may hold a synthetic NLMSG_OVERRUN: notifications
 * were lost and the reader must resynchronise with a dump.
 */
export interface Subscription {
  eventBatches(): AsyncIterable<NlMessage[]>;
  /** Ends the subscription; a waiting reader ends at once. Idempotent. */
  close(): void;
}

/** Where rtnetlink notifications come from: the kernel, or a test's in-memory kernel. */
export interface NotificationSource {
  /** Subscribes to multicast `groups` (RTNLGRP_*). */
  subscribe(groups: number[]): Subscription;
}

/**
 * Dumps with a GET of `type` and decodes each answer of type `type - 2` (the NEW type) as it
 * arrives: `decode` must copy what it keeps (no views of the payload, e.g. attribute bytes),
 * since the payload is the socket's receive buffer.
 */
export function dumpAs<T>(
  nl: Requester,
  type: number,
  fixed: Uint8Array,
  decode: (m: NlMessage) => T,
  op: string,
): T[] {
  const msg = encodeMessage({ type, flags: NLM_F_REQUEST | NLM_F_DUMP }, fixed);
  return nl.dumpDecoded(msg, op, type - 2, decode);
}
