/**
 * Routes (RTM_*ROUTE), IPv4 and IPv6: add, replace, delete, list, and kernel route lookup
 * (`ip route get`). The family follows the destination's address type: a `number` is
 * IPv4, a `bigint` IPv6 (gateway and source must be of the same family).
 *
 * Protocol: new routes are written with RTPROT_BOOT, what upstream flanneld writes (its
 * netlink library's default) and what `ip route add` writes, so our routes are
 * indistinguishable from upstream's (`ip route` prints no `proto`) and either daemon can
 * replace or delete the other's after an upgrade or downgrade.
 *
 * Scope defaults to universe, as upstream (it passes no scope), also for device routes.
 * @module
 */

import { equalNet, familyOf, formatIP, formatNet, type IP, type IPNet } from "../../lib/core/ip.ts";
import {
  ADD,
  AF_INET,
  AF_INET6,
  type Attr,
  attr,
  decodeBody,
  dumpAs,
  type NlMessage,
  REPLACE,
  type Requester,
  requestMessage,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RT_TABLE_UNSPEC,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_TABLE,
  RTM_DELROUTE,
  RTM_GETROUTE,
  RTM_NEWROUTE,
  RTMSG,
  RTN_UNICAST,
  RTN_UNSPEC,
  RTNH_F_ONLINK,
  RTPROT_BOOT,
  RTPROT_UNSPEC,
} from "./message.ts";

/** A route to write or delete. */
export interface RouteSpec {
  /** Destination; `{ip: 0, prefix: 0}` (`0n` for IPv6) is the default route. */
  dst: IPNet;
  /** Gateway ("via"), of the destination's family. */
  gw?: IP;
  /** Output device index ("dev"). */
  dev?: number;
  /** Gateway is on the link even if no address says so (RTNH_F_ONLINK). */
  onlink?: boolean;
  /** RT_SCOPE_*; writes default to universe, deletes match any scope. */
  scope?: number;
  /** Routing table; default main. */
  table?: number;
  /** RTPROT_*; writes default to boot, deletes match any protocol. */
  protocol?: number;
  /** Preferred source address ("src"). */
  src?: IP;
  /** RTN_* type; writes default to unicast. */
  type?: number;
  /** Metric. */
  priority?: number;
}

/** A route as listed or looked up. */
export interface Route {
  dst: IPNet;
  gw?: IP;
  dev?: number;
  src?: IP;
  onlink: boolean;
  scope: number;
  table: number;
  protocol: number;
  type: number;
  priority?: number;
}

/** `10.5.53.0/24 via 10.5.53.0 dev 5 onlink`, for messages. */
export function formatRoute(r: RouteSpec): string {
  let s = formatNet(r.dst);
  if (r.gw !== undefined) s += ` via ${formatIP(r.gw)}`;
  if (r.dev !== undefined) s += ` dev ${r.dev}`;
  if (r.onlink) s += " onlink";
  return s;
}

/** RTM_NEWROUTE / RTM_DELROUTE for `r` (deletes leave unset fields as wildcards). */
export function routeMessage(type: number, flags: number, r: RouteSpec): Uint8Array {
  const del = type === RTM_DELROUTE;
  const table = r.table ?? RT_TABLE_MAIN;
  const family = familyOf(r.dst.ip);
  for (const ip of [r.gw, r.src]) {
    if (ip !== undefined && familyOf(ip) !== family) {
      throw new TypeError(`route ${formatRoute(r)}: addresses of two families`);
    }
  }
  const fixed = RTMSG.encode({
    family: family === 6 ? AF_INET6 : AF_INET,
    dstLen: r.dst.prefix,
    // Tables above 255 only fit in RTA_TABLE (as iproute2 does).
    table: table < 256 ? table : RT_TABLE_UNSPEC,
    protocol: r.protocol ?? (del ? RTPROT_UNSPEC : RTPROT_BOOT),
    scope: r.scope ?? (del ? RT_SCOPE_NOWHERE : RT_SCOPE_UNIVERSE),
    type: r.type ?? (del ? RTN_UNSPEC : RTN_UNICAST),
    flags: r.onlink ? RTNH_F_ONLINK : 0,
  });
  const attrs: Attr[] = [];
  if (table >= 256) attrs.push(attr.u32(RTA_TABLE, table));
  if (r.dst.prefix > 0) attrs.push(attr.ip(RTA_DST, r.dst.ip));
  if (r.gw !== undefined) attrs.push(attr.ip(RTA_GATEWAY, r.gw));
  if (r.dev !== undefined) attrs.push(attr.u32(RTA_OIF, r.dev));
  if (r.src !== undefined) attrs.push(attr.ip(RTA_PREFSRC, r.src));
  if (r.priority !== undefined) attrs.push(attr.u32(RTA_PRIORITY, r.priority));
  return requestMessage(type, flags, fixed, attrs);
}

/** Decodes an RTM_NEWROUTE message, IPv4 or IPv6. */
export function decodeRoute(m: NlMessage): Route {
  const { hdr, attrs } = decodeBody(RTMSG, m);
  const v6 = hdr.family === AF_INET6;
  const ip = (type: number) => v6 ? attrs.ip6(type) : attrs.ip4(type);
  const r: Route = {
    dst: v6
      ? { ip: attrs.ip6(RTA_DST) ?? 0n, prefix: hdr.dstLen }
      : { ip: attrs.ip4(RTA_DST) ?? 0, prefix: hdr.dstLen },
    onlink: (hdr.flags & RTNH_F_ONLINK) !== 0,
    scope: hdr.scope,
    table: attrs.u32(RTA_TABLE) ?? hdr.table,
    protocol: hdr.protocol,
    type: hdr.type,
  };
  const gw = ip(RTA_GATEWAY), dev = attrs.u32(RTA_OIF), src = ip(RTA_PREFSRC);
  const priority = attrs.u32(RTA_PRIORITY);
  if (gw !== undefined) r.gw = gw;
  if (dev !== undefined) r.dev = dev;
  if (src !== undefined) r.src = src;
  if (priority !== undefined) r.priority = priority;
  return r;
}

/** `ip route add`: EEXIST when the route exists. */
export function routeAdd(nl: Requester, r: RouteSpec): void {
  nl.request(routeMessage(RTM_NEWROUTE, ADD, r), `route add ${formatRoute(r)}`);
}

/** `ip route replace`: creates, or overwrites the route with the same destination. */
export function routeReplace(nl: Requester, r: RouteSpec): void {
  nl.request(routeMessage(RTM_NEWROUTE, REPLACE, r), `route replace ${formatRoute(r)}`);
}

/** `ip route del`: ESRCH when no route matches. */
export function routeDel(nl: Requester, r: RouteSpec): void {
  nl.request(routeMessage(RTM_DELROUTE, 0, r), `route del ${formatRoute(r)}`);
}

/** Filter for {@link routeList}. */
export interface RouteFilter {
  /** 4 or 6; default 4, or the family of `dst` when given. */
  family?: 4 | 6;
  /** Table to list; default main; 0 lists every table. */
  table?: number;
  /** Only routes through this device. */
  dev?: number;
  /** Only routes with exactly this destination. */
  dst?: IPNet;
}

/** Routes of one family in the kernel's dump order, filtered. */
export function routeList(nl: Requester, filter: RouteFilter = {}): Route[] {
  const table = filter.table ?? RT_TABLE_MAIN;
  const family = filter.family ?? (filter.dst ? familyOf(filter.dst.ip) : 4);
  const all = dumpAs(
    nl,
    RTM_GETROUTE,
    RTMSG.encode({ family: family === 6 ? AF_INET6 : AF_INET }),
    decodeRoute,
    family === 6 ? "route list (IPv6)" : "route list",
  );
  return all.filter((r) =>
    (table === 0 || r.table === table) &&
    (filter.dev === undefined || r.dev === filter.dev) &&
    (filter.dst === undefined || equalNet(r.dst, filter.dst))
  );
}

/** RTM_GETROUTE lookup of one destination address. */
export function routeGetMessage(dst: IP): Uint8Array {
  const v6 = familyOf(dst) === 6;
  const fixed = RTMSG.encode({ family: v6 ? AF_INET6 : AF_INET, dstLen: v6 ? 128 : 32 });
  return requestMessage(RTM_GETROUTE, 0, fixed, [attr.ip(RTA_DST, dst)]);
}

/**
 * `ip route get <dst>`: the route the kernel would use, with output device, gateway (absent
 * when directly connected) and preferred source. Throws ENETUNREACH when there is none.
 */
export function routeGet(nl: Requester, dst: IP): Route {
  const [m] = nl.request(routeGetMessage(dst), `route get ${formatIP(dst)}`);
  if (!m) throw new Error(`route get ${formatIP(dst)}: the kernel sent no route`);
  return decodeRoute(m);
}

/**
 * Output device indexes of the default routes (no destination) in the main table, in the
 * kernel's order; 0 for a default route without a device (blackhole, multipath).
 * Works for IPv4 and IPv6 alike: only the header and RTA_OIF are read.
 */
export function defaultRouteDevs(nl: Requester, family: 4 | 6): number[] {
  const fixed = RTMSG.encode({ family: family === 6 ? AF_INET6 : AF_INET });
  // Read while decoding: the attributes are views of the receive buffer (see dumpAs).
  const decode = (m: NlMessage) => {
    const { hdr, attrs } = decodeBody(RTMSG, m);
    const isDefault = hdr.dstLen === 0 && (attrs.u32(RTA_TABLE) ?? hdr.table) === RT_TABLE_MAIN;
    return isDefault ? attrs.u32(RTA_OIF) ?? 0 : null;
  };
  return dumpAs(nl, RTM_GETROUTE, fixed, decode, `route list (IPv${family})`)
    .filter((dev) => dev !== null);
}
