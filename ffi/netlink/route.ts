/**
 * IPv4 routes (RTM_*ROUTE): add, replace, delete, list, and kernel route lookup
 * (`ip route get`).
 *
 * Protocol: new routes are written with RTPROT_BOOT, what upstream flanneld writes (its
 * netlink library's default) and what `ip route add` writes, so our routes are
 * indistinguishable from upstream's (`ip route` prints no `proto`) and either daemon can
 * replace or delete the other's after an upgrade or downgrade.
 *
 * Scope defaults to universe, as upstream (it passes no scope), also for device routes.
 * @module
 */

import { formatIP4, formatNet4, type IP4Net } from "../../lib/core/ip.ts";
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
  /** Destination; `{ip: 0, prefix: 0}` is the default route. */
  dst: IP4Net;
  /** Gateway ("via"), u32. */
  gw?: number;
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
  /** Preferred source address ("src"), u32. */
  src?: number;
  /** RTN_* type; writes default to unicast. */
  type?: number;
  /** Metric. */
  priority?: number;
}

/** A route as listed or looked up. */
export interface Route {
  dst: IP4Net;
  gw?: number;
  dev?: number;
  src?: number;
  onlink: boolean;
  scope: number;
  table: number;
  protocol: number;
  type: number;
  priority?: number;
}

/** `10.5.53.0/24 via 10.5.53.0 dev 5 onlink`, for messages. */
export function formatRoute(r: RouteSpec): string {
  let s = formatNet4(r.dst);
  if (r.gw !== undefined) s += ` via ${formatIP4(r.gw)}`;
  if (r.dev !== undefined) s += ` dev ${r.dev}`;
  if (r.onlink) s += " onlink";
  return s;
}

/** RTM_NEWROUTE / RTM_DELROUTE for `r` (deletes leave unset fields as wildcards). */
export function routeMessage(type: number, flags: number, r: RouteSpec): Uint8Array {
  const del = type === RTM_DELROUTE;
  const table = r.table ?? RT_TABLE_MAIN;
  const fixed = RTMSG.encode({
    family: AF_INET,
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
  if (r.dst.prefix > 0) attrs.push(attr.ip4(RTA_DST, r.dst.ip));
  if (r.gw !== undefined) attrs.push(attr.ip4(RTA_GATEWAY, r.gw));
  if (r.dev !== undefined) attrs.push(attr.u32(RTA_OIF, r.dev));
  if (r.src !== undefined) attrs.push(attr.ip4(RTA_PREFSRC, r.src));
  if (r.priority !== undefined) attrs.push(attr.u32(RTA_PRIORITY, r.priority));
  return requestMessage(type, flags, fixed, attrs);
}

/** Decodes an RTM_NEWROUTE message (IPv4). */
export function decodeRoute(m: NlMessage): Route {
  const { hdr, attrs } = decodeBody(RTMSG, m);
  const r: Route = {
    dst: { ip: attrs.ip4(RTA_DST) ?? 0, prefix: hdr.dstLen },
    onlink: (hdr.flags & RTNH_F_ONLINK) !== 0,
    scope: hdr.scope,
    table: attrs.u32(RTA_TABLE) ?? hdr.table,
    protocol: hdr.protocol,
    type: hdr.type,
  };
  const gw = attrs.ip4(RTA_GATEWAY), dev = attrs.u32(RTA_OIF), src = attrs.ip4(RTA_PREFSRC);
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
  /** Table to list; default main; 0 lists every table. */
  table?: number;
  /** Only routes through this device. */
  dev?: number;
  /** Only routes with exactly this destination. */
  dst?: IP4Net;
}

/** IPv4 routes in the kernel's dump order, filtered. */
export function routeList(nl: Requester, filter: RouteFilter = {}): Route[] {
  const table = filter.table ?? RT_TABLE_MAIN;
  const all = dumpAs(
    nl,
    RTM_GETROUTE,
    RTMSG.encode({ family: AF_INET }),
    decodeRoute,
    "route list",
  );
  return all.filter((r) =>
    (table === 0 || r.table === table) &&
    (filter.dev === undefined || r.dev === filter.dev) &&
    (filter.dst === undefined || (r.dst.ip === filter.dst.ip && r.dst.prefix === filter.dst.prefix))
  );
}

/** RTM_GETROUTE lookup of one destination address. */
export function routeGetMessage(dst: number): Uint8Array {
  return requestMessage(RTM_GETROUTE, 0, RTMSG.encode({ family: AF_INET, dstLen: 32 }), [
    attr.ip4(RTA_DST, dst),
  ]);
}

/**
 * `ip route get <dst>`: the route the kernel would use, with output device, gateway (absent
 * when directly connected) and preferred source. Throws ENETUNREACH when there is none.
 */
export function routeGet(nl: Requester, dst: number): Route {
  const [m] = nl.request(routeGetMessage(dst), `route get ${formatIP4(dst)}`);
  if (!m) throw new Error(`route get ${formatIP4(dst)}: the kernel sent no route`);
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
