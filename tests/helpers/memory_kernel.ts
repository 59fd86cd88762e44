/**
 * An in-memory Linux kernel as rtnetlink shows it, for unit tests of the code that programs
 * links, addresses, routes, neighbours and FDB entries: no root, no namespace, milliseconds.
 *
 * It is a {@link Requester}: requests are the project's own encoded messages, decoded here
 * with the project's own decoders (`ffi/netlink/`), and answered with the bytes the kernel
 * sends (the answer, then an ACK or `-errno` in NLMSG_ERROR with the kernel's extended-ack
 * text; dumps in NLM_F_MULTI parts and NLMSG_DONE), which the same {@link RequestChannel} as
 * the real socket's reads back. It is also a {@link NotificationSource}: every change is
 * multicast to the subscribers of its group, as the kernel does, and only real changes are
 * (a neighbour replaced by an identical one announces nothing).
 *
 * The kernel's rules it keeps, those the project meets (tests/memory_kernel_test.ts runs the
 * same operations against the real kernel and compares):
 * - links: a new link needs NLM_F_CREATE (else ENODEV) and a free name (EEXIST with
 *   NLM_F_EXCL); only kind `vxlan` can be created (EOPNOTSUPP otherwise), one per VNI,
 *   port, GBP setting and family of the local address (EEXIST), its MTU at most the
 *   underlay's minus 50, or 70 with an IPv6 local address (EINVAL); a link goes up or down
 *   by `ifi_flags` under the `ifi_change` mask; an unknown index is ENODEV. A link going
 *   down loses its IPv4 routes, silently (IPv4 sends no RTM_DELROUTE for them), and its
 *   global IPv6 addresses and IPv6 routes, announced (`keep_addr_on_down` 0), and its
 *   neighbours of both families, permanent ones too, announced; going up
 *   brings back the routes of its remaining addresses; deleting it removes its addresses,
 *   routes, neighbours and FDB entries.
 * - addresses: EEXIST for a duplicate (NLM_F_EXCL, or neither NLM_F_REPLACE), deleting an
 *   absent one is EADDRNOTAVAIL; an IPv4 address adds its local route (table local) and,
 *   below /32, its prefix route (proto kernel, scope link), announced like the kernel's; an
 *   IPv6 address adds its prefix route (proto kernel, metric 256) once the link is up. No
 *   link-local IPv6 addresses are made up (the kernel adds fe80::/64 on every link).
 * - routes: keyed by table, destination and metric (IPv6 without a metric: 1024);
 *   NLM_F_EXCL gives EEXIST, NLM_F_REPLACE overwrites, without NLM_F_CREATE a new one is
 *   ENOENT; a destination with host bits is EINVAL; the output device must exist (ENODEV)
 *   and be up (ENETDOWN); a gateway without `onlink` must be reachable through a connected
 *   route of that device (ENETUNREACH; IPv6: EHOSTUNREACH); a delete matches the fields it
 *   gives and is ESRCH when none does; `route get` is a longest-prefix lookup, table local
 *   before main (ENETUNREACH); an IPv6 blackhole route is reported on `lo`, as the kernel's.
 * - neighbours (AF_INET, AF_INET6) and FDB entries (AF_BRIDGE, on vxlan devices only, else
 *   EOPNOTSUPP, where the kernel would put the address on the device's unicast list;
 *   permanent or reachable, else EINVAL): NLM_F_EXCL gives EEXIST, without NLM_F_CREATE a
 *   new one is ENOENT, deleting an absent one is ENOENT (an FDB delete naming a destination
 *   the entry does not have succeeds and deletes nothing, as the vxlan driver's); the
 *   device must exist (ENODEV).
 * @module
 */

import { ERRNO, errnoName, strerror } from "../../ffi/libc.ts";
import {
  AF_BRIDGE,
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  type Attr,
  attr,
  type Attrs,
  decodeBody,
  encodeMessage,
  IFF_LOOPBACK,
  IFF_LOWER_UP,
  IFF_RUNNING,
  IFF_UP,
  IFINFOMSG,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_VXLAN_GBP,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_L2MISS,
  IFLA_VXLAN_L3MISS,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_LOCAL6,
  IFLA_VXLAN_PORT,
  NDA_DST,
  NDA_LLADDR,
  NDMSG,
  NetlinkError,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_MULTI,
  NLM_F_REPLACE,
  type NlMessage,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSG_OVERRUN,
  NLMSGERR_ATTR_MSG,
  NLMSGHDR,
  type NotificationSource,
  NTF_SELF,
  NUD_PERMANENT,
  NUD_REACHABLE,
  parseMessages,
  type Requester,
  RT_SCOPE_HOST,
  RT_SCOPE_LINK,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_LOCAL,
  RT_TABLE_MAIN,
  RT_TABLE_UNSPEC,
  RTA_DST,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_DELROUTE,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETNEIGH,
  RTM_GETROUTE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTMSG,
  RTN_BLACKHOLE,
  RTN_LOCAL,
  RTN_UNICAST,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV6_IFADDR,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_LINK,
  RTNLGRP_NEIGH,
  RTPROT_KERNEL,
  type Subscription,
} from "../../ffi/netlink/message.ts";
import { RequestChannel } from "../../ffi/netlink/socket.ts";
import { decodeLink, type Link, type VxlanInfo } from "../../ffi/netlink/link.ts";
import { type Addr, addrMessage, decodeAddr } from "../../ffi/netlink/addr.ts";
import { decodeRoute, type Route, routeMessage } from "../../ffi/netlink/route.ts";
import { decodeFdb, decodeNeigh, type FdbEntry, type Neigh } from "../../ffi/netlink/neigh.ts";
import {
  containsIP,
  equalNet,
  familyOf,
  type IP,
  ip4Net,
  ip6Net,
  type IPNet,
} from "../../lib/core/ip.ts";
import { randomMAC } from "../../lib/backend/vxlan/device.ts";

/** ARPHRD_ETHER / ARPHRD_LOOPBACK. */
const ARPHRD_ETHER = 1, ARPHRD_LOOPBACK = 772;
/** The kernel's VXLAN port when none is given (the pre-IANA one Linux kept). */
const VXLAN_DEFAULT_PORT = 8472;
/** IPv4 + UDP + VXLAN + inner Ethernet headers: what a vxlan device's MTU is below its underlay's. */
const VXLAN_HEADROOM = 50;
/** The same with an outer IPv6 header, for a vxlan device with an IPv6 local address. */
const VXLAN6_HEADROOM = 70;
/** Metric of an IPv6 route written without one, and of an IPv6 address's prefix route. */
const IP6_ROUTE_METRIC = 1024, IP6_ADDR_METRIC = 256;
/** Dump parts are packed into datagrams of at most this size, as the kernel's. */
const DUMP_DATAGRAM = 32 * 1024;
/** Port id of the memory kernel's request side. */
const PORT_ID = 4242;
/** Flags of a link that is up and has carrier. */
const UP_FLAGS = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;

/** A refused request: answered with `-errno` (and the kernel's text) in NLMSG_ERROR. */
class Refusal extends Error {
  constructor(readonly errno: number, readonly extAck?: string) {
    super(extAck ?? `errno ${errno}`);
  }
}

function refuse(code: keyof typeof ERRNO_CODES, extAck?: string): never {
  throw new Refusal(ERRNO_CODES[code], extAck);
}

const ERRNO_CODES = {
  EADDRNOTAVAIL: ERRNO.EADDRNOTAVAIL,
  EAFNOSUPPORT: ERRNO.EAFNOSUPPORT,
  EEXIST: ERRNO.EEXIST,
  EHOSTUNREACH: ERRNO.EHOSTUNREACH,
  EINVAL: ERRNO.EINVAL,
  ENETDOWN: ERRNO.ENETDOWN,
  ENETUNREACH: ERRNO.ENETUNREACH,
  ENODEV: ERRNO.ENODEV,
  ENOENT: ERRNO.ENOENT,
  EOPNOTSUPP: ERRNO.EOPNOTSUPP,
  ESRCH: ERRNO.ESRCH,
};

/** A device to add as a test's fixture, like `ip link add <name> type dummy`. */
export interface LinkFixture {
  name: string;
  mtu?: number;
  /** Default true. */
  up?: boolean;
  mac?: Uint8Array;
}

/** Overwrites the flags, sequence number and port id of an encoded message. */
function reheader(msg: Uint8Array, flags: number, seq = 0, pid = 0): Uint8Array {
  const { type } = NLMSGHDR.decode(msg);
  msg.set(NLMSGHDR.encode({ len: msg.byteLength, type, flags, seq, pid }));
  return msg;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

/** NLMSG_ERROR for `req` (errno 0: the ACK), as a socket with NETLINK_CAP_ACK and EXT_ACK gets it. */
function errorMessage(req: NlMessage, errno: number, pid: number, extAck?: string): Uint8Array {
  const body = new Uint8Array(4 + NLMSG_HDRLEN);
  body.set(new Uint8Array(Int32Array.of(-errno).buffer));
  const len = NLMSG_HDRLEN + req.payload.byteLength;
  body.set(NLMSGHDR.encode({ len, type: req.type, flags: req.flags, seq: req.seq, pid }), 4);
  const flags = NLM_F_CAPPED | (extAck ? NLM_F_ACK_TLVS : 0);
  const tlvs = extAck ? [attr.str(NLMSGERR_ATTR_MSG, extAck)] : [];
  return encodeMessage({ type: NLMSG_ERROR, flags, seq: req.seq, pid }, body, tlvs);
}

function vxlanAttrs(v: VxlanInfo): Attr[] {
  const a: Attr[] = [attr.u32(IFLA_VXLAN_ID, v.vni)];
  if (v.underlayIndex) a.push(attr.u32(IFLA_VXLAN_LINK, v.underlayIndex));
  if (typeof v.local === "bigint" && v.local) a.push(attr.ip6(IFLA_VXLAN_LOCAL6, v.local));
  else if (v.local) a.push(attr.ip(IFLA_VXLAN_LOCAL, v.local));
  a.push(
    attr.u8(IFLA_VXLAN_LEARNING, v.learning ? 1 : 0),
    attr.u8(IFLA_VXLAN_L2MISS, v.l2miss ? 1 : 0),
    attr.u8(IFLA_VXLAN_L3MISS, v.l3miss ? 1 : 0),
    attr.be16(IFLA_VXLAN_PORT, v.port),
  );
  if (v.gbp) a.push(attr.flag(IFLA_VXLAN_GBP));
  return a;
}

function linkMessage(type: number, l: Link): Uint8Array {
  const attrs: Attr[] = [attr.str(IFLA_IFNAME, l.name), attr.u32(IFLA_MTU, l.mtu)];
  if (l.mac) attrs.push(attr.bytes(IFLA_ADDRESS, l.mac));
  if (l.master) attrs.push(attr.u32(IFLA_MASTER, l.master));
  if (l.kind) {
    const info = [attr.str(IFLA_INFO_KIND, l.kind)];
    if (l.vxlan) info.push(attr.nest(IFLA_INFO_DATA, vxlanAttrs(l.vxlan)));
    attrs.push(attr.nest(IFLA_LINKINFO, info));
  }
  const fixed = IFINFOMSG.encode({
    family: AF_UNSPEC,
    type: l.type,
    index: l.index,
    flags: l.flags,
  });
  return encodeMessage({ type, flags: 0 }, fixed, attrs);
}

function addrReply(type: number, a: Addr): Uint8Array {
  const msg = addrMessage(type, 0, a.index, {
    ip: a.ip,
    prefix: a.prefix,
    scope: a.scope,
    flags: a.flags,
  });
  return reheader(msg, 0);
}

function routeReply(type: number, r: Route): Uint8Array {
  return reheader(routeMessage(type, 0, r), 0);
}

function neighReply(type: number, n: Neigh): Uint8Array {
  const attrs = [attr.ip(NDA_DST, n.ip)];
  if (n.mac) attrs.push(attr.bytes(NDA_LLADDR, n.mac));
  const family = familyOf(n.ip) === 6 ? AF_INET6 : AF_INET;
  const fixed = NDMSG.encode({ family, index: n.index, state: n.state, flags: n.flags });
  return encodeMessage({ type, flags: 0 }, fixed, attrs);
}

function fdbReply(type: number, f: FdbEntry): Uint8Array {
  const attrs = [attr.bytes(NDA_LLADDR, f.mac)];
  if (f.dst !== undefined) attrs.push(attr.ip(NDA_DST, f.dst));
  const fixed = NDMSG.encode({ family: AF_BRIDGE, index: f.index, state: f.state, flags: f.flags });
  return encodeMessage({ type, flags: 0 }, fixed, attrs);
}

const sameBytes = (a: Uint8Array | null, b: Uint8Array | null) =>
  a === b || (a !== null && b !== null && a.length === b.length && a.every((x, i) => x === b[i]));
const neighKey = (index: number, ip: IP) => `${index}|${familyOf(ip)}|${ip}`;
/** The multicast group a route change is announced to. */
const routeGroup = (r: { dst: IPNet }) =>
  familyOf(r.dst.ip) === 6 ? RTNLGRP_IPV6_ROUTE : RTNLGRP_IPV4_ROUTE;
/** Orders routes as a dump lists them: by table, then destination (IPv4 before IPv6). */
const byDestination = (a: Route, b: Route) =>
  b.table - a.table || familyOf(a.dst.ip) - familyOf(b.dst.ip) ||
  (a.dst.ip < b.dst.ip ? -1 : a.dst.ip > b.dst.ip ? 1 : 0) || a.dst.prefix - b.dst.prefix;
const fdbKey = (index: number, mac: Uint8Array) => `${index}|${mac.join(":")}`;

/** Notifications for one subscriber, batched per wake-up like the socket's. */
class MemorySubscription implements Subscription {
  #queue: NlMessage[] = [];
  #wake: (() => void) | null = null;
  #closed = false;

  constructor(readonly groups: ReadonlySet<number>, private readonly onClose: () => void) {}

  deliver(m: NlMessage): void {
    if (this.#closed) return;
    this.#queue.push(m);
    this.#wake?.();
  }

  /** Everything delivered since the previous batch: one synchronous burst is one batch. */
  async *eventBatches(): AsyncGenerator<NlMessage[]> {
    while (!this.#closed) {
      if (this.#queue.length === 0) {
        await new Promise<void>((resolve) => this.#wake = resolve);
        this.#wake = null;
        continue;
      }
      yield this.#queue.splice(0);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#wake?.();
    this.onClose();
  }
}

/** See the module comment. */
export class MemoryKernel extends RequestChannel implements Requester, NotificationSource {
  #links = new Map<number, Link>();
  #nextIndex = 1;
  #addrs: Addr[] = [];
  #routes: Route[] = [];
  #neighs = new Map<string, Neigh>();
  #fdbs = new Map<string, FdbEntry>();
  #answers: Uint8Array[] = [];
  #subs = new Set<MemorySubscription>();
  #faults: { type: number; errno: number; times: number }[] = [];
  #requests = new Map<number, number>();

  /** A kernel with only `lo` (index 1, up, 127.0.0.1/8 and ::1/128). */
  constructor() {
    super(0);
    const lo = this.#addLink({
      index: 0,
      name: "lo",
      mtu: 65536,
      flags: IFF_LOOPBACK,
      up: false,
      mac: new Uint8Array(6),
      type: ARPHRD_LOOPBACK,
    });
    this.#setUp(lo, true);
    this.#insertAddr({
      index: lo.index,
      ip: 0x7f000001,
      v6: false,
      prefix: 8,
      scope: RT_SCOPE_HOST,
      flags: 0x80,
    });
    this.#addrs.push({
      index: lo.index,
      ip: 1n,
      v6: true,
      prefix: 128,
      scope: RT_SCOPE_HOST,
      flags: 0x80,
    });
  }

  // ------------------------------------------------------------- test-facing API

  /** Adds a plain Ethernet device (as `ip link add … type dummy`); announced; returns it. */
  addLink(f: LinkFixture): Link {
    const link = this.#addLink({
      index: 0,
      name: f.name,
      mtu: f.mtu ?? 1500,
      flags: 0,
      up: false,
      mac: f.mac ?? randomMAC(),
      type: ARPHRD_ETHER,
    });
    if (f.up ?? true) this.#setUp(link, true);
    this.#notify(RTNLGRP_LINK, linkMessage(RTM_NEWLINK, link));
    return structuredClone(link);
  }

  /** Tells every subscriber that notifications were lost (the socket's ENOBUFS). */
  overrun(): void {
    const m: NlMessage = {
      type: NLMSG_OVERRUN,
      flags: 0,
      seq: 0,
      pid: 0,
      payload: new Uint8Array(0),
    };
    for (const s of this.#subs) s.deliver(m);
  }

  /** Refuses the next `times` requests of message type `type` (RTM_*) with errno `code`. */
  failNext(type: number, code: keyof typeof ERRNO_CODES, times = 1): void {
    this.#faults.push({ type, errno: ERRNO_CODES[code], times });
  }

  /** How many requests of message type `type` (RTM_*) arrived, dumps included. */
  requestCount(type: number): number {
    return this.#requests.get(type) ?? 0;
  }

  /** Open subscriptions. */
  get subscriptions(): number {
    return this.#subs.size;
  }

  // --------------------------------------------------------- NotificationSource

  subscribe(groups: number[]): Subscription {
    const sub: MemorySubscription = new MemorySubscription(
      new Set(groups),
      () => this.#subs.delete(sub),
    );
    this.#subs.add(sub);
    return sub;
  }

  // ------------------------------------------------------------- RequestChannel

  get portId(): number {
    return PORT_ID;
  }

  protected sendRequest(msg: Uint8Array): void {
    for (const m of parseMessages(msg.slice())) this.#answers.push(...this.#answer(m));
  }

  protected receiveAnswers(op: string): Uint8Array {
    const d = this.#answers.shift();
    if (d) return d;
    const e = ERRNO.ETIMEDOUT;
    throw new NetlinkError(`${op} (no answer from the kernel)`, e, errnoName(e), strerror(e));
  }

  // ------------------------------------------------------------------ dispatch

  #answer(req: NlMessage): Uint8Array[] {
    this.#requests.set(req.type, (this.#requests.get(req.type) ?? 0) + 1);
    try {
      const fault = this.#faults.find((f) => f.type === req.type);
      if (fault) {
        if (--fault.times <= 0) this.#faults.splice(this.#faults.indexOf(fault), 1);
        throw new Refusal(fault.errno);
      }
      const isGet = req.type === RTM_GETLINK || req.type === RTM_GETADDR ||
        req.type === RTM_GETROUTE || req.type === RTM_GETNEIGH;
      if (isGet && req.flags & NLM_F_DUMP) return this.#dumpAnswer(req, this.#dump(req));
      const parts = this.#handle(req).map((p) => reheader(p, 0, req.seq, PORT_ID));
      if (req.flags & NLM_F_ACK) parts.push(errorMessage(req, 0, PORT_ID));
      return parts.length ? [concat(parts)] : [];
    } catch (e) {
      if (!(e instanceof Refusal)) throw e;
      return [errorMessage(req, e.errno, PORT_ID, e.extAck)];
    }
  }

  #dumpAnswer(req: NlMessage, parts: Uint8Array[]): Uint8Array[] {
    const done = new Uint8Array(4); // NLMSG_DONE carries the dump's status, 0
    parts.push(encodeMessage({ type: NLMSG_DONE, flags: NLM_F_MULTI }, done));
    const datagrams: Uint8Array[] = [];
    let cur: Uint8Array[] = [], size = 0;
    for (const p of parts) {
      reheader(p, NLM_F_MULTI, req.seq, PORT_ID);
      if (size + p.byteLength > DUMP_DATAGRAM && cur.length) {
        datagrams.push(concat(cur));
        cur = [];
        size = 0;
      }
      cur.push(p);
      size += p.byteLength;
    }
    datagrams.push(concat(cur));
    return datagrams;
  }

  /** A non-dump request: the messages to answer before the ACK. */
  #handle(m: NlMessage): Uint8Array[] {
    switch (m.type) {
      case RTM_NEWLINK:
        return this.#newLink(m);
      case RTM_DELLINK:
        return this.#delLink(m);
      case RTM_GETLINK:
        return [linkMessage(RTM_NEWLINK, this.#findLink(m))];
      case RTM_NEWADDR:
        return this.#newAddr(m);
      case RTM_DELADDR:
        return this.#delAddr(m);
      case RTM_NEWROUTE:
        return this.#newRoute(m);
      case RTM_DELROUTE:
        return this.#delRoute(m);
      case RTM_GETROUTE:
        return [routeReply(RTM_NEWROUTE, this.#lookup(m))];
      case RTM_NEWNEIGH:
        return this.#newNeigh(m);
      case RTM_DELNEIGH:
        return this.#delNeigh(m);
    }
    return refuse("EOPNOTSUPP", `message type ${m.type} not supported`);
  }

  #dump(m: NlMessage): Uint8Array[] {
    const family = m.payload.byteLength > 0 ? m.payload[0] : AF_UNSPEC;
    switch (m.type) {
      case RTM_GETLINK:
        return [...this.#links.values()].map((l) => linkMessage(RTM_NEWLINK, l));
      case RTM_GETADDR:
        return this.#addrs
          .filter((a) => family === AF_UNSPEC || family === (a.v6 ? AF_INET6 : AF_INET))
          .map((a) => addrReply(RTM_NEWADDR, a));
      case RTM_GETROUTE:
        return this.#routes
          .filter((r) =>
            family === AF_UNSPEC || family === (familyOf(r.dst.ip) === 6 ? AF_INET6 : AF_INET)
          )
          .sort(byDestination)
          .map((r) => routeReply(RTM_NEWROUTE, r));
      default: { // RTM_GETNEIGH
        const out: Uint8Array[] = [];
        for (const n of this.#neighs.values()) {
          const f = familyOf(n.ip) === 6 ? AF_INET6 : AF_INET;
          if (family === f || family === AF_UNSPEC) out.push(neighReply(RTM_NEWNEIGH, n));
        }
        if (family === AF_BRIDGE || family === AF_UNSPEC) {
          for (const f of this.#fdbs.values()) out.push(fdbReply(RTM_NEWNEIGH, f));
        }
        return out;
      }
    }
  }

  #notify(group: number, msg: Uint8Array): void {
    for (const s of this.#subs) {
      if (s.groups.has(group)) s.deliver(parseMessages(msg.slice())[0]);
    }
  }

  // ---------------------------------------------------------------------- links

  #addLink(l: Link): Link {
    const link = { ...l, index: this.#nextIndex++ };
    this.#links.set(link.index, link);
    return link;
  }

  #byName(name: string): Link | undefined {
    for (const l of this.#links.values()) if (l.name === name) return l;
    return undefined;
  }

  #findLink(m: NlMessage): Link {
    const { hdr, attrs } = decodeBody(IFINFOMSG, m);
    const name = attrs.str(IFLA_IFNAME);
    const link = hdr.index ? this.#links.get(hdr.index) : name ? this.#byName(name) : undefined;
    return link ?? refuse("ENODEV");
  }

  #setUp(link: Link, up: boolean): void {
    if (link.up === up) return;
    link.up = up;
    link.flags = up ? link.flags | UP_FLAGS : link.flags & ~UP_FLAGS;
    if (up) {
      for (const a of this.#addrs) if (a.index === link.index) this.#addAddrRoutes(a);
      return;
    }
    // IPv6 removes the link's global addresses (keep_addr_on_down is 0) and its routes, and
    // says so; IPv4 drops the routes through the device without telling anyone. Neighbours
    // of both families go, permanent ones too (FDB entries stay).
    for (const a of this.#addrs.filter((a) => a.index === link.index && a.v6)) this.#removeAddr(a);
    for (const [k, n] of this.#neighs) {
      if (n.index !== link.index) continue;
      this.#neighs.delete(k);
      this.#notify(RTNLGRP_NEIGH, neighReply(RTM_DELNEIGH, n));
    }
    for (const r of this.#routes.filter((r) => r.dev === link.index)) {
      this.#routes.splice(this.#routes.indexOf(r), 1);
      if (familyOf(r.dst.ip) === 6) this.#notify(RTNLGRP_IPV6_ROUTE, routeReply(RTM_DELROUTE, r));
    }
  }

  /** Largest MTU a link may have: a vxlan device stays 50 (IPv6 VTEP: 70) below its underlay. */
  #maxMTU(link: { vxlan?: VxlanInfo }): number {
    const lower = link.vxlan?.underlayIndex && this.#links.get(link.vxlan.underlayIndex);
    const headroom = typeof link.vxlan?.local === "bigint" ? VXLAN6_HEADROOM : VXLAN_HEADROOM;
    return lower ? lower.mtu - headroom : 65535;
  }

  #newLink(m: NlMessage): Uint8Array[] {
    const { hdr, attrs } = decodeBody(IFINFOMSG, m);
    const req = decodeLink(m);
    const existing = hdr.index
      ? this.#links.get(hdr.index) ?? refuse("ENODEV")
      : req.name
      ? this.#byName(req.name)
      : undefined;
    if (existing) {
      if (m.flags & NLM_F_CREATE && m.flags & NLM_F_EXCL) refuse("EEXIST");
      this.#changeLink(existing, hdr, attrs, req);
      return [];
    }
    if (!(m.flags & NLM_F_CREATE)) refuse("ENODEV");
    if (req.kind !== "vxlan") refuse("EOPNOTSUPP", "Unknown device type");
    const data = attrs.nested(IFLA_LINKINFO)?.nested(IFLA_INFO_DATA);
    if (!req.vxlan || !data?.has(IFLA_VXLAN_ID)) refuse("EINVAL", "Missing VNI");
    if (!req.name) refuse("EINVAL", "Missing interface name");
    const v: VxlanInfo = {
      ...req.vxlan,
      port: req.vxlan.port || VXLAN_DEFAULT_PORT,
      learning: data.has(IFLA_VXLAN_LEARNING) ? req.vxlan.learning : true,
    };
    if (v.underlayIndex && !this.#links.has(v.underlayIndex)) refuse("ENODEV");
    // IPv4 and IPv6 VTEPs listen on sockets of their own: the same VNI and port can serve both.
    const v6 = typeof v.local === "bigint";
    for (const l of this.#links.values()) {
      const w = l.vxlan;
      if (
        w && w.vni === v.vni && w.port === v.port && w.gbp === v.gbp &&
        (typeof w.local === "bigint") === v6
      ) {
        refuse("EEXIST", "A VXLAN device with the specified VNI already exists");
      }
    }
    const max = this.#maxMTU({ vxlan: v });
    if (req.mtu > max) refuse("EINVAL", `MTU must be at most ${max}`);
    const link = this.#addLink({
      index: 0,
      name: req.name,
      mtu: req.mtu || Math.min(max, 1500 - (v6 ? VXLAN6_HEADROOM : VXLAN_HEADROOM)),
      flags: 0,
      up: false,
      mac: req.mac ?? randomMAC(),
      type: ARPHRD_ETHER,
      kind: "vxlan",
      vxlan: v,
    });
    if (hdr.flags & IFF_UP) this.#setUp(link, true);
    this.#notify(RTNLGRP_LINK, linkMessage(RTM_NEWLINK, link));
    return [];
  }

  /** Applies a change request; announces the link only when something changed. */
  #changeLink(link: Link, hdr: Record<string, number>, attrs: Attrs, req: Link): void {
    const before = linkMessage(RTM_NEWLINK, link);
    if (req.name && req.name !== link.name) {
      if (this.#byName(req.name)) refuse("EEXIST");
      link.name = req.name;
    }
    if (attrs.has(IFLA_MTU)) {
      if (req.mtu < 68 || req.mtu > this.#maxMTU(link)) refuse("EINVAL", "Invalid MTU");
      link.mtu = req.mtu;
    }
    if (req.mac) {
      if (req.mac.length !== 6) refuse("EINVAL", "Invalid link address");
      link.mac = req.mac;
    }
    // ifi_change 0 means "every flag" (the kernel's compatibility rule).
    if (hdr.flags || hdr.change) {
      const flags = hdr.change ? (hdr.flags & hdr.change) | (link.flags & ~hdr.change) : hdr.flags;
      this.#setUp(link, (flags & IFF_UP) !== 0);
    }
    const after = linkMessage(RTM_NEWLINK, link);
    if (!sameBytes(before, after)) this.#notify(RTNLGRP_LINK, after);
  }

  #delLink(m: NlMessage): Uint8Array[] {
    const link = this.#findLink(m);
    for (const a of this.#addrs.filter((a) => a.index === link.index)) this.#removeAddr(a);
    this.#routes = this.#routes.filter((r) => r.dev !== link.index);
    for (const [k, n] of this.#neighs) if (n.index === link.index) this.#neighs.delete(k);
    for (const [k, f] of this.#fdbs) if (f.index === link.index) this.#fdbs.delete(k);
    this.#links.delete(link.index);
    this.#notify(RTNLGRP_LINK, linkMessage(RTM_DELLINK, link));
    return [];
  }

  // ------------------------------------------------------------------ addresses

  #newAddr(m: NlMessage): Uint8Array[] {
    const a = decodeAddr(m);
    if (!this.#links.has(a.index)) refuse("ENODEV");
    if (a.prefix > (a.v6 ? 128 : 32)) refuse("EINVAL", "Invalid prefix length");
    const existing = this.#addrs.find((x) =>
      x.index === a.index && x.ip === a.ip && x.prefix === a.prefix
    );
    if (existing) {
      if (m.flags & NLM_F_EXCL || !(m.flags & NLM_F_REPLACE)) refuse("EEXIST");
      existing.scope = a.scope;
      existing.flags = a.flags;
      this.#notify(a.v6 ? RTNLGRP_IPV6_IFADDR : RTNLGRP_IPV4_IFADDR, addrReply(RTM_NEWADDR, a));
      return [];
    }
    if (!(m.flags & NLM_F_CREATE)) refuse("ENOENT");
    this.#insertAddr(a);
    return [];
  }

  #insertAddr(a: Addr): void {
    this.#addrs.push(a);
    this.#notify(a.v6 ? RTNLGRP_IPV6_IFADDR : RTNLGRP_IPV4_IFADDR, addrReply(RTM_NEWADDR, a));
    if (this.#links.get(a.index)!.up) this.#addAddrRoutes(a);
  }

  /**
   * The local route of an IPv4 address and, below /32, its prefix route: in table main, or
   * as a local route of the whole prefix on a loopback device (`local 127.0.0.0/8 dev lo`).
   * An IPv6 address: its prefix route in main (its local route, added after duplicate
   * address detection, is left out).
   */
  #addrRoutes(a: Addr): Route[] {
    if (typeof a.ip === "bigint") {
      return [{
        dst: ip6Net(a.ip, a.prefix),
        dev: a.index,
        protocol: RTPROT_KERNEL,
        onlink: false,
        table: RT_TABLE_MAIN,
        scope: RT_SCOPE_UNIVERSE,
        type: RTN_UNICAST,
        priority: IP6_ADDR_METRIC,
      }];
    }
    const ip = a.ip;
    const kernel = { dev: a.index, src: ip, protocol: RTPROT_KERNEL, onlink: false };
    const local = { table: RT_TABLE_LOCAL, scope: RT_SCOPE_HOST, type: RTN_LOCAL };
    const out: Route[] = [{ ...kernel, ...local, dst: { ip, prefix: 32 } }];
    if (a.prefix === 32) return out;
    const dst = ip4Net(ip, a.prefix);
    if (this.#links.get(a.index)?.type === ARPHRD_LOOPBACK) out.push({ ...kernel, ...local, dst });
    else {
      const main = { table: RT_TABLE_MAIN, scope: RT_SCOPE_LINK, type: RTN_UNICAST };
      out.push({ ...kernel, ...main, dst });
    }
    return out;
  }

  #addAddrRoutes(a: Addr): void {
    for (const r of this.#addrRoutes(a)) {
      const dup = this.#routes.some((x) =>
        x.table === r.table && equalNet(x.dst, r.dst) && x.dev === r.dev
      );
      if (dup) continue;
      this.#routes.push(r);
      this.#notify(routeGroup(r), routeReply(RTM_NEWROUTE, r));
    }
  }

  #delAddr(m: NlMessage): Uint8Array[] {
    const a = decodeAddr(m);
    const existing = this.#addrs.find((x) =>
      x.index === a.index && x.ip === a.ip && x.prefix === a.prefix
    );
    this.#removeAddr(existing ?? refuse("EADDRNOTAVAIL"));
    return [];
  }

  #removeAddr(a: Addr): void {
    this.#addrs.splice(this.#addrs.indexOf(a), 1);
    for (const r of this.#addrRoutes(a)) {
      const i = this.#routes.findIndex((x) =>
        x.table === r.table && equalNet(x.dst, r.dst) && x.dev === r.dev &&
        x.protocol === RTPROT_KERNEL
      );
      if (i < 0) continue;
      const [gone] = this.#routes.splice(i, 1);
      this.#notify(routeGroup(gone), routeReply(RTM_DELROUTE, gone));
    }
    this.#notify(a.v6 ? RTNLGRP_IPV6_IFADDR : RTNLGRP_IPV4_IFADDR, addrReply(RTM_DELADDR, a));
  }

  // --------------------------------------------------------------------- routes

  /**
   * The connected route (no gateway; IPv4: scope link) through which `gw` is reached. IPv6
   * connected routes have scope universe: any device route will do.
   */
  #connected(gw: IP, dev: number | undefined): Route | undefined {
    let best: Route | undefined;
    const v6 = familyOf(gw) === 6;
    for (const r of this.#routes) {
      if (r.table !== RT_TABLE_MAIN || r.gw !== undefined || r.dev === undefined) continue;
      if (!v6 && r.scope < RT_SCOPE_LINK) continue;
      if (r.type !== RTN_UNICAST || !containsIP(r.dst, gw)) continue;
      if (dev !== undefined && r.dev !== dev) continue;
      if (!best || r.dst.prefix > best.dst.prefix) best = r;
    }
    return best;
  }

  #newRoute(m: NlMessage): Uint8Array[] {
    const { hdr } = decodeBody(RTMSG, m);
    if (hdr.family !== AF_INET && hdr.family !== AF_INET6) refuse("EAFNOSUPPORT");
    const r = decodeRoute(m);
    const v6 = hdr.family === AF_INET6;
    if (r.table === RT_TABLE_UNSPEC) r.table = RT_TABLE_MAIN;
    if (v6) r.priority ??= IP6_ROUTE_METRIC;
    const masked = typeof r.dst.ip === "bigint"
      ? ip6Net(r.dst.ip, r.dst.prefix)
      : ip4Net(r.dst.ip, r.dst.prefix);
    if (!equalNet(masked, r.dst)) refuse("EINVAL", "Invalid prefix for given prefix length");
    if (r.type === RTN_UNICAST) {
      const link = r.dev === undefined ? undefined : this.#links.get(r.dev) ?? refuse("ENODEV");
      if (r.onlink && !link) refuse("EINVAL", "Nexthop device required for onlink");
      if (r.gw !== undefined && !r.onlink) {
        const via = this.#connected(r.gw, r.dev);
        if (!via) refuse(v6 ? "EHOSTUNREACH" : "ENETUNREACH", "Nexthop has invalid gateway");
        r.dev = via.dev;
      } else if (!link) refuse("EINVAL", "Nexthop device required");
      else if (!link.up) refuse("ENETDOWN", "Nexthop device is not up");
    } else if (v6 && r.type === RTN_BLACKHOLE) r.dev = 1; // reported on lo
    const same = this.#routes.filter((x) =>
      x.table === r.table && equalNet(x.dst, r.dst) && (x.priority ?? 0) === (r.priority ?? 0)
    );
    if (same.length > 0 && m.flags & NLM_F_EXCL) refuse("EEXIST");
    if (same.length > 0 && m.flags & NLM_F_REPLACE) {
      this.#routes[this.#routes.indexOf(same[0])] = r;
    } else {
      if (!(m.flags & NLM_F_CREATE)) refuse("ENOENT");
      if (same.some((x) => x.gw === r.gw && x.dev === r.dev)) refuse("EEXIST");
      this.#routes.push(r);
    }
    this.#notify(routeGroup(r), routeReply(RTM_NEWROUTE, r));
    return [];
  }

  #delRoute(m: NlMessage): Uint8Array[] {
    const { hdr } = decodeBody(RTMSG, m);
    const want = decodeRoute(m);
    const table = want.table || RT_TABLE_MAIN;
    const i = this.#routes.findIndex((r) =>
      r.table === table && equalNet(r.dst, want.dst) &&
      (want.gw === undefined || r.gw === want.gw) &&
      (want.dev === undefined || r.dev === want.dev) &&
      (want.priority === undefined || r.priority === want.priority) &&
      (hdr.protocol === 0 || r.protocol === hdr.protocol) &&
      (hdr.scope === RT_SCOPE_NOWHERE || r.scope === hdr.scope) &&
      (hdr.type === 0 || r.type === hdr.type)
    );
    if (i < 0) refuse("ESRCH");
    const [gone] = this.#routes.splice(i, 1);
    this.#notify(routeGroup(gone), routeReply(RTM_DELROUTE, gone));
    return [];
  }

  /** `ip route get`: longest prefix match, table local before main. */
  #lookup(m: NlMessage): Route {
    const { hdr, attrs } = decodeBody(RTMSG, m);
    const v6 = hdr.family === AF_INET6;
    const dst: IP = v6 ? attrs.ip6(RTA_DST) ?? 0n : attrs.ip4(RTA_DST) ?? 0;
    for (const table of [RT_TABLE_LOCAL, RT_TABLE_MAIN]) {
      let best: Route | undefined;
      for (const r of this.#routes) {
        if (r.table !== table || !containsIP(r.dst, dst)) continue;
        if (r.type !== RTN_UNICAST && r.type !== RTN_LOCAL) continue;
        if (!best || r.dst.prefix > best.dst.prefix) best = r;
      }
      if (!best) continue;
      const dev = best.type === RTN_LOCAL ? 1 : best.dev;
      const src = best.src ?? this.#addrs.find((a) => a.index === dev && a.v6 === v6)?.ip;
      const found: Route = {
        dst: v6 ? { ip: dst as bigint, prefix: 128 } : { ip: dst as number, prefix: 32 },
        onlink: best.onlink,
        scope: RT_SCOPE_UNIVERSE,
        table,
        protocol: 0,
        type: best.type,
      };
      if (best.gw !== undefined) found.gw = best.gw;
      if (dev !== undefined) found.dev = dev;
      if (src !== undefined) found.src = src;
      return found;
    }
    return refuse("ENETUNREACH");
  }

  // ------------------------------------------------------------ neighbours, FDB

  #newNeigh(m: NlMessage): Uint8Array[] {
    const { hdr, attrs } = decodeBody(NDMSG, m);
    const link = this.#links.get(hdr.index) ?? refuse("ENODEV");
    if (hdr.family === AF_BRIDGE) return this.#newFdb(m, link, attrs);
    if (hdr.family !== AF_INET && hdr.family !== AF_INET6) refuse("EAFNOSUPPORT");
    if (!attrs.has(NDA_DST)) refuse("EINVAL", "Network address not specified");
    const n = decodeNeigh(m);
    if (n.mac && n.mac.length < 6) refuse("EINVAL", "Invalid link address");
    const key = neighKey(n.index, n.ip);
    const old = this.#neighs.get(key);
    if (old && m.flags & NLM_F_EXCL) refuse("EEXIST");
    if (!old && !(m.flags & NLM_F_CREATE)) refuse("ENOENT");
    if (old && sameBytes(old.mac, n.mac) && old.state === n.state) return [];
    this.#neighs.set(key, n);
    this.#notify(RTNLGRP_NEIGH, neighReply(RTM_NEWNEIGH, n));
    return [];
  }

  #newFdb(m: NlMessage, link: Link, attrs: Attrs): Uint8Array[] {
    if (link.kind !== "vxlan") refuse("EOPNOTSUPP");
    if (!attrs.has(NDA_LLADDR) || !attrs.has(NDA_DST)) refuse("EINVAL");
    const f = decodeFdb(m);
    if (!(f.state & (NUD_PERMANENT | NUD_REACHABLE))) {
      refuse("EINVAL", "FDB entry must be permanent or reachable");
    }
    const key = fdbKey(f.index, f.mac);
    const old = this.#fdbs.get(key);
    if (old && m.flags & NLM_F_EXCL) refuse("EEXIST");
    if (!old && !(m.flags & NLM_F_CREATE)) refuse("ENOENT");
    if (old && (!(m.flags & NLM_F_REPLACE) || (old.dst === f.dst && old.state === f.state))) {
      return [];
    }
    this.#fdbs.set(key, { ...f, flags: f.flags | NTF_SELF });
    this.#notify(RTNLGRP_NEIGH, fdbReply(RTM_NEWNEIGH, this.#fdbs.get(key)!));
    return [];
  }

  #delNeigh(m: NlMessage): Uint8Array[] {
    const { hdr, attrs } = decodeBody(NDMSG, m);
    if (!this.#links.has(hdr.index)) refuse("ENODEV");
    if (hdr.family === AF_BRIDGE) {
      const f = decodeFdb(m);
      const key = fdbKey(f.index, f.mac);
      const old = this.#fdbs.get(key) ?? refuse("ENOENT");
      // The vxlan driver answers a destination the entry does not have with success, and
      // keeps the entry.
      if (attrs.has(NDA_DST) && old.dst !== f.dst) return [];
      this.#fdbs.delete(key);
      this.#notify(RTNLGRP_NEIGH, fdbReply(RTM_DELNEIGH, old));
      return [];
    }
    const n = decodeNeigh(m);
    const key = neighKey(n.index, n.ip);
    const old = this.#neighs.get(key) ?? refuse("ENOENT");
    this.#neighs.delete(key);
    this.#notify(RTNLGRP_NEIGH, neighReply(RTM_DELNEIGH, old));
    return [];
  }
}
