/**
 * What the kernel must hold for the remote leases of a routing backend (vxlan, host-gw),
 * and the difference between that and what the kernel holds: the repairs to make and, at
 * startup, the stale entries to remove. IPv4 and IPv6 entries alike: an address is a
 * `number` or a `bigint`, and entries of the two families never match each other. Pure;
 * the kernel is read and written elsewhere.
 * @module
 */

import { equalNet, formatIP, type IP, type IPNet, netInside } from "../core/ip.ts";
import { formatMAC, sameMAC } from "../core/mac.ts";
import {
  type FdbEntry,
  type Neigh,
  NUD_PERMANENT,
  type Route,
  RT_TABLE_MAIN,
} from "../../ffi/netlink/mod.ts";
// Connected routes the kernel derives from addresses carry RTPROT_KERNEL: never ours.
import { RTPROT_KERNEL } from "../../ffi/netlink/message.ts";

/** A route we own: always in the main table, with a gateway and an output device. */
export interface PeerRoute {
  dst: IPNet;
  gw: IP;
  dev: number;
  onlink?: boolean;
}

/** A permanent neighbour entry on device `dev`. */
export interface PeerNeigh {
  dev: number;
  ip: IP;
  mac: Uint8Array;
}

/** A permanent `self` FDB entry on device `dev`: `mac` is reached at VTEP `dst`. */
export interface PeerFdb {
  dev: number;
  mac: Uint8Array;
  dst: IP;
}

/**
 * Everything one remote lease needs in one family (a dual-stack lease has a set per
 * family). Install order: neigh, fdb, route.
 */
export interface PeerEntries {
  route: PeerRoute;
  neigh?: PeerNeigh;
  fdb?: PeerFdb;
}

/** The kernel's current state, as far as it matters here. */
export interface KernelView {
  /** Main-table routes of the families in use. */
  routes: Route[];
  /** Neighbour entries of the devices in {@link Ownership.entryDevs}. */
  neighs: Neigh[];
  /** FDB entries of the devices in {@link Ownership.entryDevs}. */
  fdbs: FdbEntry[];
}

/** Which kernel entries are ours to delete when no lease wants them. */
export interface Ownership {
  /** The flannel networks (`Network`, `IPv6Network`): only routes inside them are touched. */
  networks: IPNet[];
  /** Our own subnets, never removed. */
  own: IPNet[];
  /** Devices whose routes inside the Network we own. */
  routeDevs: number[];
  /** Devices whose permanent neighbours and FDB entries with a destination we own. */
  entryDevs: number[];
}

/** The changes that bring the kernel to the desired state. */
export interface Plan {
  routes: PeerRoute[];
  neighs: PeerNeigh[];
  fdbs: PeerFdb[];
  staleRoutes: Route[];
  staleNeighs: Neigh[];
  staleFdbs: FdbEntry[];
}

/** Whether kernel route `r` is exactly `want` (gateway, device, onlink). */
export function routeMatches(want: PeerRoute, r: Route): boolean {
  return r.table === RT_TABLE_MAIN && equalNet(r.dst, want.dst) && r.gw === want.gw &&
    r.dev === want.dev && r.onlink === (want.onlink ?? false);
}

/** Whether kernel neighbour `n` is `want`, permanent. */
export function neighMatches(want: PeerNeigh, n: Neigh): boolean {
  return n.index === want.dev && n.ip === want.ip && sameMAC(n.mac, want.mac) &&
    (n.state & NUD_PERMANENT) !== 0;
}

/** Whether kernel FDB entry `f` is `want`. */
export function fdbMatches(want: PeerFdb, f: FdbEntry): boolean {
  return f.index === want.dev && f.dst === want.dst && sameMAC(f.mac, want.mac);
}

/** Whether `dst` lies inside one of `networks` (same family, same or longer prefix). */
export function insideNetworks(networks: readonly IPNet[], dst: IPNet): boolean {
  return networks.some((n) => netInside(n, dst));
}

/** Map keys: a prefix, a (device, IP) pair, a (device, MAC) pair; `6:` keeps families apart. */
const ipText = (ip: IP) => typeof ip === "bigint" ? `6:${ip}` : `${ip}`;
const netKey = (n: IPNet) => `${ipText(n.ip)}/${n.prefix}`;
const ipKey = (dev: number, ip: IP) => `${dev}|${ipText(ip)}`;
const macKey = (dev: number, mac: Uint8Array) => `${dev}|${mac.join(":")}`;

/** Groups `xs` by `key`, so that each lookup below costs one bucket, not a scan of the dump. */
function groupBy<T>(xs: readonly T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    const bucket = m.get(k);
    if (bucket) bucket.push(x);
    else m.set(k, [x]);
  }
  return m;
}

/**
 * Compares desired entries with the kernel. Missing or altered entries are always
 * reported; stale ones (ours by {@link Ownership}, wanted by no lease) only when `cleanup`.
 * Linear in peers + kernel entries (indexed by destination): with 1,000 peers a quadratic
 * scan cost tens of ms per reconcile, and reconciles follow every burst of lease events.
 */
export function planRepairs(
  desired: PeerEntries[],
  kernel: KernelView,
  own: Ownership,
  cleanup: boolean,
): Plan {
  const plan: Plan = {
    routes: [],
    neighs: [],
    fdbs: [],
    staleRoutes: [],
    staleNeighs: [],
    staleFdbs: [],
  };
  const routes = groupBy(kernel.routes, (r) => netKey(r.dst));
  const neighs = groupBy(kernel.neighs, (n) => ipKey(n.index, n.ip));
  const fdbs = groupBy(kernel.fdbs, (f) => macKey(f.index, f.mac));
  for (const d of desired) {
    const r = routes.get(netKey(d.route.dst));
    if (!r?.some((r) => routeMatches(d.route, r))) plan.routes.push(d.route);
    const n = d.neigh && neighs.get(ipKey(d.neigh.dev, d.neigh.ip));
    if (d.neigh && !n?.some((n) => neighMatches(d.neigh!, n))) plan.neighs.push(d.neigh);
    const f = d.fdb && fdbs.get(macKey(d.fdb.dev, d.fdb.mac));
    if (d.fdb && !f?.some((f) => fdbMatches(d.fdb!, f))) plan.fdbs.push(d.fdb);
  }
  if (!cleanup) return plan;
  const wantedNets = new Set(desired.map((d) => netKey(d.route.dst)));
  const wantedNeighs = new Set(
    desired.flatMap((d) => d.neigh ? [ipKey(d.neigh.dev, d.neigh.ip)] : []),
  );
  const wantedFdbs = new Set(desired.flatMap((d) => d.fdb ? [macKey(d.fdb.dev, d.fdb.mac)] : []));
  plan.staleRoutes = kernel.routes.filter((r) =>
    r.table === RT_TABLE_MAIN && r.protocol !== RTPROT_KERNEL && r.dev !== undefined &&
    own.routeDevs.includes(r.dev) && insideNetworks(own.networks, r.dst) &&
    !own.own.some((o) => equalNet(o, r.dst)) && !wantedNets.has(netKey(r.dst))
  );
  plan.staleNeighs = kernel.neighs.filter((n) =>
    own.entryDevs.includes(n.index) && (n.state & NUD_PERMANENT) !== 0 &&
    !wantedNeighs.has(ipKey(n.index, n.ip))
  );
  // An entry whose MAC a lease wants but with another destination is fixed by the replace.
  plan.staleFdbs = kernel.fdbs.filter((f) =>
    own.entryDevs.includes(f.index) && f.dst !== undefined &&
    !wantedFdbs.has(macKey(f.index, f.mac))
  );
  return plan;
}

/** Number of changes in a plan. */
export function planSize(p: Plan): number {
  return p.routes.length + p.neighs.length + p.fdbs.length + p.staleRoutes.length +
    p.staleNeighs.length + p.staleFdbs.length;
}

/** `10.5.53.0 lladdr aa:… dev 7`, for log lines. */
export function describeNeigh(
  n: { ip: IP; mac: Uint8Array | null; dev?: number; index?: number },
): string {
  return `${formatIP(n.ip)} lladdr ${n.mac ? formatMAC(n.mac) : "-"} dev ${n.dev ?? n.index}`;
}

/** `aa:… dst 192.168.1.12 dev 7`, for log lines. */
export function describeFdb(
  f: { mac: Uint8Array; dst?: IP; dev?: number; index?: number },
): string {
  return `${formatMAC(f.mac)} dst ${f.dst !== undefined ? formatIP(f.dst) : "-"} dev ${
    f.dev ?? f.index
  }`;
}
