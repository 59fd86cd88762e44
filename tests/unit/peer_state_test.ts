import { assertEquals } from "../helpers/assert.ts";
import type { FdbEntry, Neigh, Route } from "../../ffi/netlink/mod.ts";
import {
  type KernelView,
  type Ownership,
  type PeerEntries,
  planRepairs,
  planSize,
} from "../../lib/backend/peer_state.ts";
import { type IP4Net, parseCIDR4, parseIP4, parseIP6 } from "../../lib/core/ip.ts";
import { parseMAC } from "../../lib/core/mac.ts";
import { net6 } from "../helpers/addr.ts";

const net = (s: string): IP4Net => parseCIDR4(s)!;
const ip = (s: string): number => parseIP4(s)!;
const mac = (s: string): Uint8Array => parseMAC(s)!;
const DEV = 7, ETH = 2;
const PERMANENT = 0x80, STALE = 0x04, NTF_SELF = 0x02;

/** The vxlan entries for a peer subnet `sn` at `peer` with `m`. */
function vxlanPeer(sn: string, peer: string, m: string): PeerEntries {
  const dst = net(sn);
  return {
    neigh: { dev: DEV, ip: dst.ip, mac: mac(m) },
    fdb: { dev: DEV, mac: mac(m), dst: ip(peer) },
    route: { dst, gw: dst.ip, dev: DEV, onlink: true },
  };
}

/** The kernel objects that correspond exactly to `e`. */
function kernelOf(...es: PeerEntries[]): KernelView {
  return {
    routes: es.map((e): Route => ({
      ...e.route,
      onlink: e.route.onlink ?? false,
      scope: 0,
      table: 254,
      protocol: 3,
      type: 1,
    })),
    neighs: es.flatMap((e): Neigh[] =>
      e.neigh
        ? [{ index: e.neigh.dev, ip: e.neigh.ip, mac: e.neigh.mac, state: PERMANENT, flags: 0 }]
        : []
    ),
    fdbs: es.flatMap((e): FdbEntry[] =>
      e.fdb
        ? [{ index: e.fdb.dev, mac: e.fdb.mac, dst: e.fdb.dst, state: PERMANENT, flags: NTF_SELF }]
        : []
    ),
  };
}

const own: Ownership = {
  networks: [net("10.5.0.0/16")],
  own: [net("10.5.1.0/24")],
  routeDevs: [DEV],
  entryDevs: [DEV],
};
const p2 = vxlanPeer("10.5.2.0/24", "192.168.1.2", "02:00:00:00:00:02");
const p3 = vxlanPeer("10.5.3.0/24", "192.168.1.3", "02:00:00:00:00:03");

Deno.test("planRepairs: kernel equal to the leases needs nothing", () => {
  const plan = planRepairs([p2, p3], kernelOf(p2, p3), own, true);
  assertEquals(planSize(plan), 0);
});

Deno.test("planRepairs: missing entries are re-added, each kind separately", () => {
  const k = kernelOf(p2, p3);
  k.routes.splice(0, 1);
  k.neighs.splice(1, 1);
  k.fdbs = [];
  const plan = planRepairs([p2, p3], k, own, false);
  assertEquals(plan.routes, [p2.route]);
  assertEquals(plan.neighs, [p3.neigh]);
  assertEquals(plan.fdbs, [p2.fdb, p3.fdb]);
  assertEquals(planSize(plan), 4);
});

Deno.test("planRepairs: altered entries count as missing", () => {
  const k = kernelOf(p2);
  k.routes[0].onlink = false; // route without onlink
  k.neighs[0].mac = mac("02:99:99:99:99:99");
  k.fdbs[0].dst = ip("192.168.1.99");
  const plan = planRepairs([p2], k, own, true);
  assertEquals([plan.routes.length, plan.neighs.length, plan.fdbs.length], [1, 1, 1]);
  // The FDB entry with the wanted MAC is fixed by the replace, not deleted as stale.
  assertEquals(plan.staleFdbs, []);
  const notPermanent = kernelOf(p2);
  notPermanent.neighs[0].state = STALE;
  assertEquals(planRepairs([p2], notPermanent, own, false).neighs, [p2.neigh]);
});

Deno.test("planRepairs: stale entries are removed only when cleanup is asked for", () => {
  const k = kernelOf(p2, p3);
  assertEquals(planSize(planRepairs([p2], k, own, false)), 0);
  const plan = planRepairs([p2], k, own, true);
  assertEquals(plan.staleRoutes.map((r) => r.dst), [p3.route.dst]);
  assertEquals(plan.staleNeighs.map((n) => n.ip), [p3.neigh!.ip]);
  assertEquals(plan.staleFdbs.map((f) => f.mac), [p3.fdb!.mac]);
});

Deno.test("planRepairs: cleanup never touches what is not ours", () => {
  const k = kernelOf(p2);
  const base = k.routes[0];
  k.routes.push(
    { ...base, dst: net("10.6.0.0/24") }, // outside the Network
    { ...base, dst: net("10.5.9.0/24"), dev: ETH }, // another device
    { ...base, dst: net("10.5.1.0/24") }, // our own subnet
    { ...base, dst: net("10.5.8.0/24"), protocol: 2 }, // a kernel connected route
    { ...base, dst: net("10.5.7.0/24"), table: 100 }, // another table
    { ...base, dst: net("10.0.0.0/8") }, // wider than the Network
  );
  k.neighs.push({ index: DEV, ip: ip("10.5.5.0"), mac: null, state: STALE, flags: 0 }); // not permanent
  k.neighs.push({
    index: ETH,
    ip: ip("10.5.5.0"),
    mac: mac("02:00:00:00:00:05"),
    state: PERMANENT,
    flags: 0,
  });
  k.fdbs.push({ index: DEV, mac: mac("33:33:00:00:00:01"), state: PERMANENT, flags: NTF_SELF }); // no dst
  assertEquals(planSize(planRepairs([p2], k, own, true)), 0);
});

Deno.test("planRepairs: host-gw routes via the external interface", () => {
  const hg: PeerEntries = { route: { dst: net("10.5.2.0/24"), gw: ip("192.168.1.2"), dev: ETH } };
  const mine: Ownership = { ...own, routeDevs: [ETH], entryDevs: [] };
  assertEquals(planSize(planRepairs([hg], kernelOf(hg), mine, true)), 0);
  const moved = kernelOf({ route: { ...hg.route, gw: ip("192.168.1.9") } });
  assertEquals(planRepairs([hg], moved, mine, true).routes, [hg.route]);
  const stale = kernelOf({ route: { ...hg.route, dst: net("10.5.4.0/24") } });
  assertEquals(planRepairs([hg], stale, mine, true).staleRoutes.length, 1);
});

// ------------------------------------------------------------------------- IPv6

const DEV6 = 8;

/** The IPv6 vxlan entries for a peer subnet `sn` at `peer` with `m`, on `DEV6`. */
function vxlanPeer6(sn: string, peer: string, m: string): PeerEntries {
  const dst = net6(sn);
  return {
    neigh: { dev: DEV6, ip: dst.ip, mac: mac(m) },
    fdb: { dev: DEV6, mac: mac(m), dst: parseIP6(peer)! },
    route: { dst, gw: dst.ip, dev: DEV6, onlink: true },
  };
}

const dual: Ownership = {
  networks: [net("10.5.0.0/16"), net6("fd42::/56")],
  own: [net("10.5.1.0/24"), net6("fd42:0:0:1::/64")],
  routeDevs: [DEV, DEV6],
  entryDevs: [DEV, DEV6],
};
const q2 = vxlanPeer6("fd42:0:0:2::/64", "2001:db8::2", "02:00:00:00:06:02");
const q3 = vxlanPeer6("fd42:0:0:3::/64", "2001:db8::3", "02:00:00:00:06:03");

Deno.test("planRepairs, dual stack: both families compared; equal needs nothing", () => {
  assertEquals(planSize(planRepairs([p2, q2, p3, q3], kernelOf(p2, q2, p3, q3), dual, true)), 0);
  const k = kernelOf(p2, q2, p3);
  k.routes = k.routes.filter((r) => typeof r.dst.ip === "number"); // IPv6 route gone
  const plan = planRepairs([p2, q2, p3], k, dual, false);
  assertEquals(plan.routes, [q2.route]);
  assertEquals([plan.neighs, plan.fdbs], [[], []]);
});

Deno.test("planRepairs, dual stack: an IPv4 and an IPv6 entry never stand in for each other", () => {
  // ::a05:200 is 10.5.2.0 as a number: the same digits in the other family.
  const twin = vxlanPeer6("::a05:200/120", "::c0a8:102", "02:00:00:00:00:02");
  const plan = planRepairs([twin], kernelOf(p2), { ...dual, networks: [net6("::/64")] }, false);
  assertEquals([plan.routes.length, plan.neighs.length], [1, 1]);
});

Deno.test("planRepairs, dual stack: stale IPv6 entries are ours inside IPv6Network only", () => {
  const k = kernelOf(p2, q2, q3);
  const base = k.routes[1];
  k.routes.push(
    { ...base, dst: net6("fd43::/64") }, // outside IPv6Network
    { ...base, dst: net6("fd42:0:0:1::/64") }, // our own subnet
    { ...base, dst: net6("fd42:0:0:1::/128"), protocol: 2 }, // the kernel's route of our address
  );
  const plan = planRepairs([p2, q2], k, dual, true);
  assertEquals(plan.staleRoutes.map((r) => r.dst), [q3.route.dst]);
  assertEquals(plan.staleNeighs.map((n) => n.ip), [q3.neigh!.ip]);
  assertEquals(plan.staleFdbs.map((f) => f.dst), [q3.fdb!.dst]);
  // IPv6-only ownership does not claim IPv4 routes, and the other way round.
  const v6only = { ...dual, networks: [net6("fd42::/56")] };
  assertEquals(planRepairs([q2], kernelOf(p2, q2), v6only, true).staleRoutes, []);
});
