/**
 * External interface selection, as upstream flanneld does it:
 * `--iface` values in order (an IP selects the interface carrying it, anything else is a
 * name), then `--iface-regex` (over addresses, then names), then `--iface-can-reach`
 * (kernel route lookup); with none of these, `--public-ip` (quirk: used as the selector)
 * or the interface of the first default route.
 *
 * {@link chooseExtIface} is pure: it decides from a {@link NetState} snapshot, so it is
 * tested without root. {@link selectExtIface} takes that snapshot through netlink.
 * @module
 */

import { formatIP4, formatIP6, isLinkLocal6, parseIP4, parseIP6 } from "../core/ip.ts";
import { logger } from "../core/log.ts";
import { type Addr, addrList } from "../../ffi/netlink/addr.ts";
import { type Link, linkList } from "../../ffi/netlink/link.ts";
import {
  IFA_F_DEPRECATED,
  IFA_F_PERMANENT,
  IFA_F_TEMPORARY,
  type Requester,
} from "../../ffi/netlink/message.ts";
import { defaultRouteDevs, routeGet } from "../../ffi/netlink/route.ts";
import { withNetlinkSocket } from "../../ffi/netlink/socket.ts";

const log = logger("iface");

/** The external (underlay) interface chosen by interface selection. */
export interface ExternalInterface {
  /** Interface name, e.g. `eth0`. */
  name: string;
  /** Interface index. */
  index: number;
  /** MTU of the interface. */
  mtu: number;
  /** IPv4 address on the interface (u32), 0 when none. */
  ifaceAddr: number;
  /** Address advertised in the lease (`--public-ip`, else the interface address). */
  extAddr: number;
  /** IPv6 counterparts (dual-stack), null when unused. */
  ifaceAddr6: bigint | null;
  extAddr6: bigint | null;
}

/** Command-line options that take part in the choice. */
export interface IfaceOptions {
  /** `--iface`, repeatable: names or IPs, tried in order. */
  iface?: string[];
  /** `--iface-regex`, repeatable. */
  ifaceRegex?: string[];
  /** `--iface-can-reach`. */
  ifaceCanReach?: string;
  /** `--public-ip`. */
  publicIP?: string;
  /** `--public-ipv6`. */
  publicIPv6?: string;
  /** Network config EnableIPv4 (default true). */
  enableIPv4?: boolean;
  /** Network config EnableIPv6 (default false). */
  enableIPv6?: boolean;
}

/** What the kernel says, as needed by the choice. */
export interface NetState {
  /** All links in index order (the order Go's `net.Interfaces` returns). */
  links: Link[];
  /** All addresses, both families, in the kernel's order. */
  addrs: Addr[];
  /** Devices of the main table's IPv4 default routes, in order (0 = no device). */
  defaultDevs4: number[];
  /** Same for IPv6. */
  defaultDevs6: number[];
  /** Kernel route lookup, for `--iface-can-reach` (an IPv4 or IPv6 target). */
  routeGet?: (dst: number | bigint) => { dev?: number; src?: number | bigint };
}

type Stack = "v4" | "v6" | "dual";

// ------------------------------------------------------------- address order

function isLinkLocal4(ip: number): boolean {
  return ip >>> 16 === 0xa9fe; // 169.254/16
}
/** Go's `IsGlobalUnicast` for IPv4: not unspecified, loopback, multicast, broadcast or link-local. */
function isGlobal4(ip: number): boolean {
  const top = ip >>> 24;
  return ip !== 0 && top !== 127 && (top & 0xf0) !== 0xe0 && ip !== 0xffffffff && !isLinkLocal4(ip);
}
function isGlobal6(ip: bigint): boolean {
  return ip !== 0n && ip !== 1n && ip >> 120n !== 0xffn && !isLinkLocal6(ip);
}
function isGlobal(a: Addr): boolean {
  return a.v6 ? isGlobal6(a.ip as bigint) : isGlobal4(a.ip as number);
}
function isLinkLocal(a: Addr): boolean {
  return a.v6 ? isLinkLocal6(a.ip as bigint) : isLinkLocal4(a.ip as number);
}

/** Upstream's preference: global before link-local, permanent before dynamic, non-temporary first. */
export function compareAddrs(a: Addr, b: Addr): number {
  if (isGlobal(a) !== isGlobal(b) && (isLinkLocal(a) || isLinkLocal(b))) {
    return isGlobal(a) ? -1 : 1;
  }
  const perm = (x: Addr) => (x.flags & IFA_F_PERMANENT ? 0 : 1);
  const temp = (x: Addr) => (x.flags & IFA_F_TEMPORARY ? 1 : 0);
  return perm(a) - perm(b) || temp(a) - temp(b);
}

/** Usable addresses of one link and family, best first (deprecated, loopback, multicast dropped). */
export function usableAddrs(state: NetState, index: number, v6: boolean): Addr[] {
  return state.addrs
    .filter((a) => a.index === index && a.v6 === v6)
    .sort(compareAddrs) // stable: ties keep the kernel's order
    .filter((a) => (isGlobal(a) || isLinkLocal(a)) && !(a.flags & IFA_F_DEPRECATED));
}

function fmt(ip: number | bigint): string {
  return typeof ip === "bigint" ? formatIP6(ip) : formatIP4(ip);
}

// ------------------------------------------------------------------- lookups

function byIndex(state: NetState, index: number, what: string): Link {
  const l = state.links.find((x) => x.index === index);
  if (!l) throw new Error(`${what}: no interface with index ${index}`);
  return l;
}

/** The first link carrying exactly `ip` (any address, as upstream's GetInterfaceByIP). */
function byIP(state: NetState, ip: number | bigint): Link {
  const v6 = typeof ip === "bigint";
  for (const l of state.links) {
    if (state.addrs.some((a) => a.index === l.index && a.v6 === v6 && a.ip === ip)) return l;
  }
  throw new Error(`no interface with given IP${v6 ? "v6" : ""} found`);
}

function defaultLink(state: NetState, v6: boolean): Link {
  const devs = v6 ? state.defaultDevs6 : state.defaultDevs4;
  const v = v6 ? " v6" : "";
  if (devs.length === 0) {
    throw new Error(`failed to get default${v} interface: unable to find default${v} route`);
  }
  if (devs[0] <= 0) {
    throw new Error(
      `failed to get default${v} interface: found default${v} route but could not determine interface`,
    );
  }
  return byIndex(state, devs[0], `failed to get default${v} interface`);
}

/** A parsed IP of either family, or null. */
function parseAnyIP(s: string): number | bigint | null {
  return parseIP4(s) ?? parseIP6(s);
}

interface Found {
  link: Link;
  addr4: number | null;
  addr6: bigint | null;
}

function matchIP(re: RegExp, addrs: Addr[]): Addr | undefined {
  return addrs.find((a) => re.test(fmt(a.ip)));
}

function byRegex(state: NetState, pattern: string, stack: Stack): Found {
  let re: RegExp;
  try {
    re = new RegExp(pattern);
  } catch (e) {
    throw new Error(`could not compile the IP address regex '${pattern}': ${(e as Error).message}`);
  }
  for (const link of state.links) {
    const m4 = stack !== "v6" ? matchIP(re, usableAddrs(state, link.index, false)) : undefined;
    const m6 = stack !== "v4" ? matchIP(re, usableAddrs(state, link.index, true)) : undefined;
    if (stack === "v4" && m4) return { link, addr4: m4.ip as number, addr6: null };
    if (stack === "v6" && m6) return { link, addr4: null, addr6: m6.ip as bigint };
    if (stack === "dual" && m4 && m6) {
      return { link, addr4: m4.ip as number, addr6: m6.ip as bigint };
    }
  }
  const link = state.links.find((l) => re.test(l.name));
  if (link) return { link, addr4: null, addr6: null };
  const avail = state.links.map((l) => {
    const ips = usableAddrs(state, l.index, stack === "v6").map((a) => fmt(a.ip));
    return `${l.name}:[${ips.join(" ")}]`;
  });
  throw new Error(
    `Could not match pattern ${pattern} to any of the available network interfaces (${
      avail.join(", ")
    })`,
  );
}

function byCanReach(state: NetState, target: string): Found {
  const dst = parseAnyIP(target);
  if (dst === null) {
    throw new Error(
      `failed to get ifcanreach based interface: invalid IP address ${JSON.stringify(target)}`,
    );
  }
  if (!state.routeGet) {
    throw new Error("failed to get ifcanreach based interface: no route lookup available");
  }
  let r;
  try {
    r = state.routeGet(dst);
  } catch (e) {
    throw new Error(
      `failed to get ifcanreach based interface: couldn't lookup route to ${target}: ${
        (e as Error).message
      }`,
    );
  }
  if (!r.dev) {
    throw new Error(
      `failed to get ifcanreach based interface: route to ${target} has no interface`,
    );
  }
  // The route's preferred source is the address of the target's family; the other
  // family's address (dual stack) comes from the interface.
  return {
    link: byIndex(state, r.dev, "failed to get ifcanreach based interface"),
    addr4: typeof r.src === "number" ? r.src : null,
    addr6: typeof r.src === "bigint" ? r.src : null,
  };
}

/** Selection by `--iface` text: an IP selects the interface carrying it, else a name. */
function byIfaceValue(state: NetState, value: string, stack: Stack, opts: IfaceOptions): Found {
  const ip = parseAnyIP(value);
  if (ip === null) {
    const link = state.links.find((l) => l.name === value);
    if (!link) throw new Error(`error looking up interface ${value}: no such network interface`);
    return { link, addr4: null, addr6: null };
  }
  const wrap = (v6: boolean, f: () => Link) => {
    try {
      return f();
    } catch (e) {
      throw new Error(
        `error looking up${v6 ? " v6" : ""} interface ${value}: ${(e as Error).message}`,
      );
    }
  };
  if (stack === "v4") {
    return { link: wrap(false, () => byIP(state, ip)), addr4: ip as number, addr6: null };
  }
  if (stack === "v6") {
    return { link: wrap(true, () => byIP(state, ip)), addr4: null, addr6: ip as bigint };
  }
  // Dual stack (upstream's logic): the v4 value selects; --public-ipv6 must be on the same link.
  let found: Found | null = typeof ip === "number"
    ? { link: wrap(false, () => byIP(state, ip)), addr4: ip, addr6: null }
    : null;
  const pub6 = opts.publicIPv6 ? parseIP6(opts.publicIPv6) : null;
  if (pub6 !== null) {
    const l6 = wrap(true, () => byIP(state, pub6));
    if (!found) found = { link: l6, addr4: null, addr6: pub6 };
    else if (found.link.name !== l6.name) {
      throw new Error(
        `v6 interface ${l6.name} must be the same with v4 interface ${found.link.name}`,
      );
    }
  }
  if (!found) {
    throw new Error(`error looking up interface ${value}: no interface with given IP found`);
  }
  return found;
}

function byDefaultRoute(state: NetState, stack: Stack): Found {
  if (stack === "v6") return { link: defaultLink(state, true), addr4: null, addr6: null };
  const link = defaultLink(state, false);
  if (stack === "dual") {
    const l6 = defaultLink(state, true);
    if (l6.name !== link.name) {
      throw new Error(
        `v6 default route interface ${l6.name} must be the same with v4 default route interface ${link.name}`,
      );
    }
  }
  return { link, addr4: null, addr6: null };
}

/** One selector → the external interface, with addresses completed (upstream's LookupExtIface). */
function lookupExtIface(
  state: NetState,
  sel: () => Found,
  stack: Stack,
  opts: IfaceOptions,
): ExternalInterface {
  const f = sel();
  const name = f.link.name;
  const first = (v6: boolean) => {
    const all = usableAddrs(state, f.link.index, v6);
    // Other hosts cannot reach a link-local IPv6 address (it needs a zone): not a VTEP or gateway.
    const a = v6 ? all.find((x) => !isLinkLocal6(x.ip as bigint)) : all[0];
    if (!a) {
      const only = v6 && all.length ? ` (only link-local ${fmt(all[0].ip)})` : "";
      throw new Error(`failed to find IPv${v6 ? 6 : 4} address for interface ${name}${only}`);
    }
    return a.ip;
  };
  // Each family the selector did not fix comes from the interface. Upstream fills in a
  // dual stack only when neither is fixed, so `--iface=<IPv4>` there leases an IPv6 subnet
  // without a PublicIPv6, which its own peers then refuse.
  if (stack !== "v6" && f.addr4 === null) f.addr4 = first(false) as number;
  if (stack !== "v4" && f.addr6 === null) f.addr6 = first(true) as bigint;
  if (!f.link.mtu) throw new Error(`failed to determine MTU for ${name} interface`);
  let ext4 = f.addr4;
  if (opts.publicIP) {
    ext4 = parseIP4(opts.publicIP);
    if (ext4 === null) throw new Error(`invalid public IP address: ${opts.publicIP}`);
  }
  let ext6 = f.addr6;
  if (opts.publicIPv6) {
    ext6 = parseIP6(opts.publicIPv6);
    if (ext6 === null) throw new Error(`invalid public IPv6 address: ${opts.publicIPv6}`);
  }
  return {
    name,
    index: f.link.index,
    mtu: f.link.mtu,
    ifaceAddr: f.addr4 ?? 0,
    extAddr: ext4 ?? 0,
    ifaceAddr6: f.addr6,
    extAddr6: ext6,
  };
}

/**
 * Chooses the external interface from a snapshot, as upstream's main.go and
 * LookupExtIface do. Throws with upstream's messages ("Failed to find any valid interface
 * to use: …" or "Failed to find interface to use that matches the interfaces and/or
 * regexes provided"); selectors that do not match are logged at info level, as upstream.
 */
export function chooseExtIface(opts: IfaceOptions, state: NetState): ExternalInterface {
  const v4 = opts.enableIPv4 ?? true, v6 = opts.enableIPv6 ?? false;
  if (!v4 && !v6) throw new Error("Failed to find any valid interface to use: none defined stack");
  const stack: Stack = v4 && v6 ? "dual" : v6 ? "v6" : "v4";
  const ifaces = opts.iface ?? [],
    regexes = opts.ifaceRegex ?? [],
    canReach = opts.ifaceCanReach ?? "";

  if (ifaces.length === 0 && regexes.length === 0 && !canReach) {
    // Quirk: --public-ip (else --public-ipv6) doubles as the interface selector.
    const selector = opts.publicIP || opts.publicIPv6 || "";
    try {
      const sel = selector
        ? () => byIfaceValue(state, selector, stack, opts)
        : () => byDefaultRoute(state, stack);
      return lookupExtIface(state, sel, stack, opts);
    } catch (e) {
      throw new Error(`Failed to find any valid interface to use: ${(e as Error).message}`);
    }
  }
  const attempts: [string, () => Found][] = [
    ...ifaces.map((v): [string, () => Found] => [v, () => byIfaceValue(state, v, stack, opts)]),
    ...regexes.map((r): [string, () => Found] => [r, () => byRegex(state, r, stack)]),
  ];
  if (canReach) attempts.push([`ifaceCanReach: ${canReach}`, () => byCanReach(state, canReach)]);
  const reasons: string[] = [];
  for (const [what, sel] of attempts) {
    try {
      return lookupExtIface(state, sel, stack, opts);
    } catch (e) {
      log.info(`Could not find valid interface matching ${what}: ${(e as Error).message}`);
      reasons.push(`${what}: ${(e as Error).message}`);
    }
  }
  // Upstream's message, then why each selector failed (upstream logs those separately).
  throw new Error(
    "Failed to find interface to use that matches the interfaces and/or regexes provided (" +
      reasons.join("; ") + ")",
  );
}

/** Reads the snapshot the choice needs (IPv6 routes only when IPv6 is enabled). */
export function readNetState(nl: Requester, ipv6 = false): NetState {
  return {
    links: linkList(nl),
    addrs: addrList(nl),
    defaultDevs4: defaultRouteDevs(nl, 4),
    defaultDevs6: ipv6 ? defaultRouteDevs(nl, 6) : [],
    routeGet: (dst) => routeGet(nl, dst),
  };
}

/** Chooses the external interface from the kernel's current state; see {@link chooseExtIface}. */
export function selectExtIface(nl: Requester, opts: IfaceOptions): ExternalInterface {
  const ext = chooseExtIface(opts, readNetState(nl, opts.enableIPv6 ?? false));
  if (ext.ifaceAddr) {
    log.info(`Using interface with name ${ext.name} and address ${formatIP4(ext.ifaceAddr)}`);
  }
  if (ext.ifaceAddr6 !== null) {
    log.info(`Using interface with name ${ext.name} and v6 address ${formatIP6(ext.ifaceAddr6)}`);
  }
  return ext;
}

/** {@link selectExtIface} on a socket of its own, for the daemon's start-up. */
export function selectExternalInterface(opts: IfaceOptions): Promise<ExternalInterface> {
  return Promise.resolve(withNetlinkSocket((nl) => selectExtIface(nl, opts)));
}
