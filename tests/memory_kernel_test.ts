/**
 * The in-memory kernel of the unit tests against the real one (root): the same sequence of
 * rtnetlink operations, the project's own, runs in a private namespace and in memory, and
 * each step must end alike (done, or refused with the same errno), as must the links,
 * routes, neighbours and FDB entries afterwards. What the unit tests of the reconciler
 * learn from the memory kernel therefore holds for the kernel.
 */

import { assertEquals } from "./helpers/assert.ts";
import { MemoryKernel } from "./helpers/memory_kernel.ts";
import { createTestNetns, inNetns } from "./helpers/netlink_ns.ts";
import { addVeth, deleteNetnsSync, ip, isRoot, linkUp, setAddr } from "./helpers/netns.ts";
import {
  addrAdd,
  addrDel,
  addrList,
  addrReplace,
  fdbDel,
  fdbList,
  fdbReplace,
  IFA_F_NODAD,
  isNetlinkError,
  linkByName,
  linkDel,
  linkList,
  linkSetDown,
  linkSetMTU,
  linkSetUp,
  neighDel,
  neighList,
  neighReplace,
  type Requester,
  routeAdd,
  routeDel,
  routeGet,
  routeList,
  routeReplace,
  RT_TABLE_MAIN,
  RTN_BLACKHOLE,
  vxlanCreate,
  withNetlinkSocket,
} from "../ffi/netlink/mod.ts";
import { formatIP, formatNet, isLinkLocal6, netInside } from "../lib/core/ip.ts";
import { formatMAC, parseMAC } from "../lib/core/mac.ts";
import { ip4, ip6, net4 as net, net6 } from "./helpers/addr.ts";

const PEER_MAC = parseMAC("0e:aa:bb:cc:dd:ee")!;
const OTHER_MAC = parseMAC("0e:aa:bb:cc:dd:ff")!;

type Step = [what: string, run: (nl: Requester, dev: (name: string) => number) => unknown];

/** Operations as the backends issue them, and the mistakes the kernel refuses. */
const STEPS: Step[] = [
  ["vxlan add", (nl, dev) =>
    vxlanCreate(nl, {
      name: "flannel.7",
      vni: 7,
      underlayIndex: dev("eth0"),
      local: ip4("192.168.7.1"),
      learning: false,
    })],
  ["vxlan add, name taken", (nl) => vxlanCreate(nl, { name: "flannel.7", vni: 8 })],
  ["vxlan add, VNI taken", (nl) => vxlanCreate(nl, { name: "flannel.x", vni: 7 })],
  ["vxlan MTU above the underlay's - 50", (nl, dev) => linkSetMTU(nl, dev("flannel.7"), 1500)],
  ["vxlan MTU", (nl, dev) => linkSetMTU(nl, dev("flannel.7"), 1400)],
  ["onlink route, device down", (nl, dev) =>
    routeReplace(nl, {
      dst: net("10.5.2.0/24"),
      gw: ip4("10.5.2.0"),
      dev: dev("flannel.7"),
      onlink: true,
    })],
  [
    "vxlan address",
    (nl, dev) => addrReplace(nl, dev("flannel.7"), { ip: ip4("10.5.1.0"), prefix: 32 }),
  ],
  [
    "vxlan address again (add)",
    (nl, dev) => addrAdd(nl, dev("flannel.7"), { ip: ip4("10.5.1.0"), prefix: 32 }),
  ],
  ["vxlan up", (nl, dev) => linkSetUp(nl, dev("flannel.7"))],
  ["onlink route", (nl, dev) =>
    routeReplace(nl, {
      dst: net("10.5.2.0/24"),
      gw: ip4("10.5.2.0"),
      dev: dev("flannel.7"),
      onlink: true,
    })],
  ["onlink route again (add)", (nl, dev) =>
    routeAdd(nl, {
      dst: net("10.5.2.0/24"),
      gw: ip4("10.5.2.0"),
      dev: dev("flannel.7"),
      onlink: true,
    })],
  [
    "route via an unreachable gateway",
    (nl, dev) => routeAdd(nl, { dst: net("10.5.3.0/24"), gw: ip4("10.9.9.9"), dev: dev("eth0") }),
  ],
  [
    "route via a gateway on the link",
    (nl, dev) =>
      routeAdd(nl, { dst: net("10.5.3.0/24"), gw: ip4("192.168.7.3"), dev: dev("eth0") }),
  ],
  [
    "route with host bits",
    (nl, dev) =>
      routeAdd(nl, {
        dst: { ip: ip4("10.5.4.1"), prefix: 24 },
        gw: ip4("192.168.7.4"),
        dev: dev("eth0"),
      }),
  ],
  [
    "route replace, new gateway",
    (nl, dev) =>
      routeReplace(nl, { dst: net("10.5.3.0/24"), gw: ip4("192.168.7.33"), dev: dev("eth0") }),
  ],
  [
    "route del, other gateway",
    (nl) => routeDel(nl, { dst: net("10.5.3.0/24"), gw: ip4("192.168.7.3") }),
  ],
  ["route get", (nl, dev) => {
    const r = routeGet(nl, ip4("10.5.3.7"));
    return `${formatIP(r.gw!)} ${r.dev === dev("eth0") ? "eth0" : r.dev}`;
  }],
  ["route get, no route", (nl) => routeGet(nl, ip4("8.8.8.8"))],
  ["route del", (nl) => routeDel(nl, { dst: net("10.5.3.0/24") })],
  ["route del, gone", (nl) => routeDel(nl, { dst: net("10.5.3.0/24") })],
  [
    "neigh replace",
    (nl, dev) => neighReplace(nl, { index: dev("flannel.7"), ip: ip4("10.5.2.0"), mac: PEER_MAC }),
  ],
  [
    "neigh replace, same",
    (nl, dev) => neighReplace(nl, { index: dev("flannel.7"), ip: ip4("10.5.2.0"), mac: PEER_MAC }),
  ],
  [
    "neigh replace, other MAC",
    (nl, dev) => neighReplace(nl, { index: dev("flannel.7"), ip: ip4("10.5.2.0"), mac: OTHER_MAC }),
  ],
  [
    "neigh del, absent",
    (nl, dev) => neighDel(nl, { index: dev("flannel.7"), ip: ip4("10.5.99.0") }),
  ],
  ["neigh del, no such device", (nl) => neighDel(nl, { index: 999, ip: ip4("10.5.2.0") })],
  [
    "fdb replace",
    (nl, dev) =>
      fdbReplace(nl, { index: dev("flannel.7"), mac: PEER_MAC, dst: ip4("192.168.7.2") }),
  ],
  [
    "fdb replace, new destination",
    (nl, dev) =>
      fdbReplace(nl, { index: dev("flannel.7"), mac: PEER_MAC, dst: ip4("192.168.7.22") }),
  ],
  [
    "fdb del, other destination",
    (nl, dev) => fdbDel(nl, { index: dev("flannel.7"), mac: PEER_MAC, dst: ip4("192.168.7.2") }),
  ],
  [
    "fdb replace, second",
    (nl, dev) =>
      fdbReplace(nl, { index: dev("flannel.7"), mac: OTHER_MAC, dst: ip4("192.168.7.3") }),
  ],
  ["fdb del", (nl, dev) => fdbDel(nl, { index: dev("flannel.7"), mac: OTHER_MAC })],
  ["fdb del, gone", (nl, dev) => fdbDel(nl, { index: dev("flannel.7"), mac: OTHER_MAC })],
  [
    "address del, absent",
    (nl, dev) => addrDel(nl, dev("eth0"), { ip: ip4("192.168.8.1"), prefix: 24 }),
  ],
  ["second address", (nl, dev) => addrAdd(nl, dev("eth0"), { ip: ip4("192.168.8.1"), prefix: 24 })],
  [
    "route via the second address's prefix",
    (nl, dev) =>
      routeAdd(nl, { dst: net("10.5.5.0/24"), gw: ip4("192.168.8.5"), dev: dev("eth0") }),
  ],
  ["eth0 down", (nl, dev) => linkSetDown(nl, dev("eth0"))],
  [
    "route via eth0 while down",
    (nl, dev) =>
      routeAdd(nl, { dst: net("10.5.6.0/24"), gw: ip4("192.168.7.6"), dev: dev("eth0") }),
  ],
  ["eth0 up", (nl, dev) => linkSetUp(nl, dev("eth0"))],
  ["link del, no such device", (nl) => linkDel(nl, 999)],
  ["lookup of a missing link", (nl) => linkByName(nl, "nothere") === null],
];

const V6_MAC = parseMAC("0e:aa:bb:cc:dd:06")!;

/** The IPv6 side: an IPv6 VTEP beside the IPv4 one, its address, routes, NDP and FDB entries. */
const STEPS6: Step[] = [
  ["vxlan6 add, same VNI as the IPv4 device", (nl, dev) =>
    vxlanCreate(nl, {
      name: "flannel-v6.7",
      vni: 7,
      underlayIndex: dev("eth0"),
      local: ip6("2001:db8:7::1"),
      learning: false,
    })],
  [
    "vxlan6 add, VNI taken in IPv6",
    (nl, dev) =>
      vxlanCreate(nl, {
        name: "v6.x",
        vni: 7,
        underlayIndex: dev("eth0"),
        local: ip6("2001:db8:7::1"),
      }),
  ],
  ["vxlan6 MTU above the underlay's - 70", (nl, dev) => linkSetMTU(nl, dev("flannel-v6.7"), 1450)],
  ["vxlan6 MTU", (nl, dev) => linkSetMTU(nl, dev("flannel-v6.7"), 1430)],
  [
    "vxlan6 address while down",
    (nl, dev) => addrReplace(nl, dev("flannel-v6.7"), { ip: ip6("fd42:0:0:1::"), prefix: 128 }),
  ],
  ["vxlan6 up", (nl, dev) => linkSetUp(nl, dev("flannel-v6.7"))],
  ["onlink route6", (nl, dev) =>
    routeReplace(nl, {
      dst: net6("fd42:0:0:2::/64"),
      gw: ip6("fd42:0:0:2::"),
      dev: dev("flannel-v6.7"),
      onlink: true,
    })],
  ["route6 via the peer subnet without onlink", (nl, dev) =>
    routeAdd(nl, {
      dst: net6("fd42:0:0:3::/64"),
      gw: ip6("fd42:0:0:3::"),
      dev: dev("flannel-v6.7"),
    })],
  [
    "route6 via a gateway on the link",
    (nl, dev) =>
      routeAdd(nl, { dst: net6("fd42:0:0:3::/64"), gw: ip6("2001:db8:7::3"), dev: dev("eth0") }),
  ],
  [
    "route6 via an unreachable gateway",
    (nl, dev) =>
      routeAdd(nl, { dst: net6("fd42:0:0:4::/64"), gw: ip6("2001:db9::3"), dev: dev("eth0") }),
  ],
  [
    "route6 replace, new gateway",
    (nl, dev) =>
      routeReplace(nl, {
        dst: net6("fd42:0:0:3::/64"),
        gw: ip6("2001:db8:7::33"),
        dev: dev("eth0"),
      }),
  ],
  ["route6 get", (nl, dev) => {
    const r = routeGet(nl, ip6("fd42:0:0:3::7"));
    return `${formatIP(r.gw!)} ${r.dev === dev("eth0") ? "eth0" : r.dev} src ${formatIP(r.src!)}`;
  }],
  [
    "route6 del, other gateway",
    (nl) => routeDel(nl, { dst: net6("fd42:0:0:3::/64"), gw: ip6("2001:db8:7::3") }),
  ],
  ["route6 del", (nl) => routeDel(nl, { dst: net6("fd42:0:0:3::/64") })],
  ["route6 del, gone", (nl) => routeDel(nl, { dst: net6("fd42:0:0:3::/64") })],
  ["blackhole6", (nl) =>
    routeReplace(nl, {
      dst: net6("fd42:0:0:1::/64"),
      type: RTN_BLACKHOLE,
      priority: 65535,
      table: RT_TABLE_MAIN,
    })],
  [
    "neigh6 replace",
    (nl, dev) =>
      neighReplace(nl, { index: dev("flannel-v6.7"), ip: ip6("fd42:0:0:2::"), mac: V6_MAC }),
  ],
  [
    "neigh6 replace, other MAC",
    (nl, dev) =>
      neighReplace(nl, { index: dev("flannel-v6.7"), ip: ip6("fd42:0:0:2::"), mac: OTHER_MAC }),
  ],
  [
    "neigh6 del, absent",
    (nl, dev) => neighDel(nl, { index: dev("flannel-v6.7"), ip: ip6("fd42:0:0:99::") }),
  ],
  [
    "fdb replace, IPv6 destination",
    (nl, dev) =>
      fdbReplace(nl, { index: dev("flannel-v6.7"), mac: V6_MAC, dst: ip6("2001:db8:7::2") }),
  ],
  [
    "fdb replace, second IPv6",
    (nl, dev) =>
      fdbReplace(nl, { index: dev("flannel-v6.7"), mac: PEER_MAC, dst: ip6("2001:db8:7::3") }),
  ],
  [
    "fdb del, other IPv6 destination",
    (nl, dev) =>
      fdbDel(nl, { index: dev("flannel-v6.7"), mac: PEER_MAC, dst: ip6("2001:db8:7::9") }),
  ],
  [
    "fdb del, IPv6",
    (nl, dev) =>
      fdbDel(nl, { index: dev("flannel-v6.7"), mac: PEER_MAC, dst: ip6("2001:db8:7::3") }),
  ],
  ["onlink route6 before the device goes down", (nl, dev) =>
    routeReplace(nl, {
      dst: net6("fd42:0:0:5::/64"),
      gw: ip6("fd42:0:0:5::"),
      dev: dev("flannel-v6.7"),
      onlink: true,
    })],
  ["vxlan6 down: addresses and routes go", (nl, dev) => linkSetDown(nl, dev("flannel-v6.7"))],
  ["vxlan6 up again", (nl, dev) => linkSetUp(nl, dev("flannel-v6.7"))],
];

/** Each step's outcome: its value, "ok", or the errno name it was refused with. */
function runSteps(nl: Requester, steps = STEPS): string[] {
  const dev = (name: string) => linkByName(nl, name)?.index ?? 0;
  return steps.map(([what, run]) => {
    try {
      const v = run(nl, dev);
      return `${what}: ${typeof v === "string" || typeof v === "boolean" ? v : "ok"}`;
    } catch (e) {
      if (!isNetlinkError(e)) throw e;
      return `${what}: ${e.code}`;
    }
  });
}

/**
 * The state the steps leave, by device name (indexes differ), in a stable order; with
 * `family` 6, the IPv6 side (link-local routes left out: the memory kernel has none).
 */
function stateOf(nl: Requester, family: 4 | 6 = 4): Record<string, string[]> {
  const vxName = family === 6 ? "flannel-v6.7" : "flannel.7";
  const ours = new Set(["lo", "eth0", vxName]);
  const links = linkList(nl).filter((l) => ours.has(l.name));
  const name = (i?: number) => links.find((l) => l.index === i)?.name ?? `#${i}`;
  const vx = links.find((l) => l.name === vxName);
  const vxIndex = vx?.index ?? -1;
  const linkLocal = net6("fe80::/10");
  return {
    links: links.map((l) => {
      const v = l.vxlan;
      const info = v
        ? ` vni ${v.vni} port ${v.port} local ${formatIP(v.local)} dev ${
          name(v.underlayIndex)
        } learning ${v.learning}`
        : "";
      return `${l.name} up ${l.up} mtu ${l.mtu}${info}`;
    }).sort(),
    routes: routeList(nl, { family }).filter((r) => !netInside(linkLocal, r.dst)).map((r) =>
      `${formatNet(r.dst)}${r.gw !== undefined ? ` via ${formatIP(r.gw)}` : ""} dev ${
        name(r.dev)
      } proto ${r.protocol} scope ${r.scope} type ${r.type} metric ${r.priority ?? 0}${
        r.onlink ? " onlink" : ""
      }`
    ).sort(),
    addrs: family === 4 ? [] : addrList(nl, { family: 6 })
      .filter((a) => !isLinkLocal6(a.ip as bigint) && ours.has(name(a.index)))
      .map((a) => `${formatNet(a)} dev ${name(a.index)}`).sort(),
    neighs: neighList(nl, { index: vxIndex, family }).map((n) =>
      `${formatIP(n.ip)} ${n.mac ? formatMAC(n.mac) : "-"} state ${n.state}`
    ).sort(),
    fdbs: fdbList(nl, { index: vxIndex }).filter((f) => f.dst !== undefined).map((f) =>
      `${formatMAC(f.mac)} dst ${formatIP(f.dst!)} state ${f.state} flags ${f.flags}`
    ).sort(),
  };
}

Deno.test({
  name: "memory kernel: the same operations end as in the kernel, and leave the same state",
  ignore: !isRoot,
  async fn() {
    const ns = await createTestNetns();
    try {
      await addVeth(ns, "eth0", ns, "eth1");
      await linkUp(ns, "eth1");
      await setAddr(ns, "eth0", "192.168.7.1/24");
      await linkUp(ns, "eth0");
      await ip(ns, "addr", "add", "2001:db8:7::1/64", "dev", "eth0", "nodad");
      const both = (nl: Requester) => ({
        steps: runSteps(nl),
        state: stateOf(nl),
        steps6: runSteps(nl, STEPS6),
        state6: stateOf(nl, 6),
      });
      const real = inNetns(ns, () => withNetlinkSocket(both));

      const k = new MemoryKernel();
      const eth = k.addLink({ name: "eth0" });
      k.addLink({ name: "eth1" });
      addrAdd(k, eth.index, { ip: ip4("192.168.7.1"), prefix: 24 });
      addrAdd(k, eth.index, { ip: ip6("2001:db8:7::1"), prefix: 64, flags: IFA_F_NODAD });
      const memory = both(k);

      assertEquals(memory.steps, real.steps);
      assertEquals(memory.state, real.state);
      assertEquals(memory.steps6, real.steps6);
      assertEquals(memory.state6, real.state6);
    } finally {
      deleteNetnsSync(ns);
    }
  },
});
